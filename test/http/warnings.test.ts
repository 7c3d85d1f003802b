/**
 * What cachet says without onError: one process warning when the store starts failing and one when
 * it recovers, and under DEBUG=cachet every reason the stores give, each naming its key.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { expect } from 'chai'
import createDebug from 'debug'
import { memcachedStore, redisStore, responseCache, type ResponseCache } from '../../src/index.js'
import type { Store } from '../../src/types.js'
import { fakeClock, serve, type Served } from '../support/app.js'

/** A store that fails what `mode` says, or nothing. */
function brokenStore() {
  const state = { reads: false, writes: false, calls: 0 }
  const data = new Map<string, Uint8Array>()
  const store: Store = {
    name: 'broken',
    async get(key) {
      state.calls++
      if (state.reads) throw new Error('connection refused')
      return data.get(key)
    },
    async set(key, value) {
      state.calls++
      if (state.writes) throw new Error('OOM command not allowed')
      data.set(key, value)
    },
    async delete(key) {
      return data.delete(key)
    },
    async deleteMatching() {
      return 0
    },
  }
  return { store, state }
}

/** Collects the warnings cachet emits while a test runs. */
function collectWarnings() {
  const seen: Array<{ code: string | undefined; message: string }> = []
  const listener = (warning: Error & { code?: string }) => {
    if (warning.code?.startsWith('CACHET_')) seen.push({ code: warning.code, message: warning.message })
  }
  process.on('warning', listener)
  return {
    seen,
    /** Warnings are delivered on the next tick: wait until `count` have arrived. */
    async settle(count: number) {
      for (let i = 0; i < 100 && seen.length < count; i++) await new Promise((r) => setImmediate(r))
      // One more turn, so that a warning too many would have arrived as well.
      await new Promise((r) => setImmediate(r))
    },
    stop: () => process.off('warning', listener),
  }
}

describe('store warnings', () => {
  let served: Served | undefined
  let cache: ResponseCache | undefined
  let warnings: ReturnType<typeof collectWarnings>

  beforeEach(() => {
    warnings = collectWarnings()
  })
  afterEach(async () => {
    warnings.stop()
    await served?.close()
    await cache?.close()
    served = undefined
    cache = undefined
  })

  async function start(store: Store, clock = fakeClock()) {
    cache = responseCache({ store, ttl: 60, now: clock.now })
    let calls = 0
    served = await serve((req, res) =>
      cache!(req, res, () => {
        calls++
        res.setHeader('Content-Type', 'text/plain')
        res.end(`v${calls}`)
      }),
    )
    return { clock, origin: () => calls }
  }

  describe('when the store is down and no onError is given', () => {
    it('should emit exactly one CACHET_STORE_FAILING warning for 200 failing requests, and one CACHET_STORE_RECOVERED once it works again', async () => {
      const { store, state } = brokenStore()
      state.reads = true
      state.writes = true
      const { clock, origin } = await start(store)
      for (let i = 0; i < 200; i++) await served!.agent.get(`/posts/${i % 7}`).expect(200)
      expect(origin()).to.equal(200)
      await warnings.settle(1)
      expect(warnings.seen.map((w) => w.code)).to.deep.equal(['CACHET_STORE_FAILING'])
      expect(warnings.seen[0].message).to.include('"broken"').and.include('connection refused').and.include('onError')

      state.reads = false
      state.writes = false
      clock.advance(60_000)
      for (let i = 0; i < 20; i++) await served!.agent.get('/recovered').expect(200)
      await warnings.settle(2)
      expect(warnings.seen.map((w) => w.code)).to.deep.equal(['CACHET_STORE_FAILING', 'CACHET_STORE_RECOVERED'])
      expect(origin()).to.equal(201, 'cached again after recovery')
    })
  })

  describe('when the store answers reads but refuses every write', () => {
    it('should emit one CACHET_STORE_FAILING warning, not one per request', async () => {
      const { store, state } = brokenStore()
      state.writes = true
      await start(store)
      for (let i = 0; i < 200; i++) await served!.agent.get(`/items/${i % 3}`).expect(200)
      await warnings.settle(1)
      expect(warnings.seen.map((w) => w.code)).to.deep.equal(['CACHET_STORE_FAILING'])
      expect(warnings.seen[0].message).to.include('OOM command not allowed')
    })
  })

  describe('when a single call fails now and then', () => {
    it('should not warn', async () => {
      const { store, state } = brokenStore()
      const { clock } = await start(store)
      for (let i = 0; i < 50; i++) {
        state.reads = i % 10 === 0
        await served!.agent.get(`/flaky/${i}`).expect(200)
        clock.advance(1_000)
      }
      await warnings.settle(0)
      expect(warnings.seen).to.deep.equal([])
    })
  })
})

describe('errors reported to onError', () => {
  it('should not keep alive the requests they were raised in, for an app that keeps them', async () => {
    // global.gc without changing how mocha is started: V8 exposes it to a new context once the flag is set.
    setFlagsFromString('--expose-gc')
    const gc = runInNewContext('gc') as () => void
    const data = new Map<string, Uint8Array>()
    // Refuses every compare-and-set at once, inside the call that asked: the error is raised while
    // the request that invalidates (a POST) is being handled.
    const store: Store = {
      name: 'refusing',
      get: (key) => data.get(key),
      set: (key, value) => void data.set(key, value),
      setIf() {
        throw new Error('refused')
      },
      delete: (key) => data.delete(key),
      deleteMatching: () => 0,
    }
    const kept: Error[] = []
    const cache = responseCache({ store, onError: (error) => void kept.push(error) })
    const responses: WeakRef<object>[] = []
    const served = await serve((req, res) => {
      responses.push(new WeakRef(res))
      cache(req, res, () => res.end('ok'))
    })
    try {
      for (let i = 0; i < 20; i++) await served.agent.post(`/items/${i}`).expect(200)
      expect(kept.length, 'errors reported').to.be.greaterThan(0)
      for (let i = 0; i < 5; i++) {
        gc()
        await new Promise((resolve) => setImmediate(resolve))
      }
      expect(responses.filter((ref) => ref.deref() !== undefined).length, 'responses still alive').to.be.below(3)
    } finally {
      await served.close()
      await cache.close()
    }
  })
})

describe('DEBUG=cachet', () => {
  let lines: string[]
  let previous: string
  const log = createDebug.log

  beforeEach(() => {
    lines = []
    previous = createDebug.disable()
    createDebug.enable('cachet')
    createDebug.log = (...args: unknown[]) => void lines.push(args.map(String).join(' '))
  })
  afterEach(() => {
    createDebug.log = log
    createDebug.enable(previous)
  })

  describe('when memcachedStore skips a value over maxItemSize', () => {
    it('should log the reason with the key', async () => {
      const store = memcachedStore({ servers: '127.0.0.1:1', maxItemSize: 10 })
      try {
        expect(await store.set('posts:42:GET#h', Buffer.alloc(100), 1000)).to.equal(false)
      } finally {
        await store.close()
      }
      expect(lines.filter((line) => /not stored/.test(line))).to.have.length(1)
      expect(lines.find((line) => /not stored/.test(line)))
        .to.include('posts:42:GET#h')
        .and.include('memcached')
    })
  })

  describe('when redisStore cannot reach its server', () => {
    it('should log the connection error with the server it tried', async () => {
      const store = redisStore({ url: 'redis://127.0.0.1:1', clientOptions: { retryStrategy: () => null } })
      try {
        await Promise.resolve(store.get('posts:GET')).catch(() => undefined)
        for (let i = 0; i < 200 && !lines.some((line) => /connection error/.test(line)); i++) await new Promise((r) => setTimeout(r, 10))
      } finally {
        await store.close()
      }
      const line = lines.find((l) => /connection error/.test(l))
      expect(line).to.be.a('string')
      expect(line).to.include('redis').and.include('127.0.0.1:1')
    })
  })
})
