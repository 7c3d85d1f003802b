/** createCache(): values on the response cache's stores, fail-open, coalesced, invalidated with responses. */
import { expect } from 'chai'
import { createHash } from 'node:crypto'
import express from 'express'
import {
  createCache,
  invalidate,
  jsonCoder,
  memoryStore,
  msgpackCoder,
  responseCache,
  StoreTimeoutError,
  type Coder,
  type Store,
  type ValueCache,
  type ValueEntry,
} from '../../src/index.js'
import { primaryKey, storageKey } from '../../src/key.js'
import { serve } from '../support/app.js'
import { storeFactories, type CreatedStore } from '../support/stores.js'

/** A store timeout no loaded test machine reaches, where a test is not about timeouts. */
const SLOW_MACHINE = '2s'
const factories = storeFactories.filter((f) => f.name === 'memory' || f.name === 'redis' || f.name === 'memcached')

/** Resolves once `check()` is true; rejects after `ms` (a bound a correct run misses by far). */
async function waitFor(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** A promise with its resolve function, to hold a computation open. */
function gate<T = void>() {
  let open!: (value: T) => void
  const promise = new Promise<T>((resolve) => (open = resolve))
  return { promise, open }
}

/** A store whose every call hangs: the store timeout must answer for it. */
function stalledStore(): Store {
  const never = () => new Promise<never>(() => {})
  return { name: 'stalled', get: never, set: never, delete: never, deleteMatching: never }
}

/** Every type the coders must keep. */
function richValue() {
  return {
    date: new Date(1_700_000_000_123),
    buffer: Buffer.from([0, 1, 2, 255]),
    bytes: new Uint8Array([9, 8, 7]),
    map: new Map<unknown, unknown>([
      ['a', 1],
      [2, { x: [1, 2] }],
    ]),
    set: new Set<unknown>(['x', 3]),
    big: 12345678901234567890123n,
    small: -5n,
    missing: undefined,
    list: [1, undefined, null, 'ü'],
    nested: { deep: { n: 1.5, t: true } },
    weird: { $t: 'Date', v: 'not a date' },
    numbers: [NaN, Infinity, -Infinity],
  }
}

describe('createCache()', () => {
  describe('when options are invalid', () => {
    it('should throw a TypeError naming the option and showing the value', () => {
      expect(() => createCache({ ttl: -1 })).to.throw(TypeError, /option "ttl".*-1/)
      expect(() => createCache({ ttl: 0 })).to.throw(TypeError, /option "ttl" must be longer than 0/)
      expect(() => createCache({ storeTimeout: '5 minutes' })).to.throw(TypeError, /option "storeTimeout".*"5 minutes"/)
      expect(() => createCache({ lockTimeout: 0 })).to.throw(TypeError, /option "lockTimeout"/)
      expect(() => createCache({ staleWhileRevalidate: 'x' })).to.throw(TypeError, /option "staleWhileRevalidate"/)
      expect(() => createCache({ store: {} as Store })).to.throw(TypeError, /option "store" must implement/)
      expect(() => createCache({ coder: { name: 'x' } as Coder })).to.throw(TypeError, /option "coder"/)
      expect(() => createCache({ onError: 'log' as never })).to.throw(TypeError, /option "onError"/)
      expect(() => createCache({ tags: [] } as never)).to.throw(TypeError, /unknown option "tags"/)
    })
    it('should reject bad keys and per-call options with a TypeError', async () => {
      const cache = createCache()
      expect(() => cache.getOrSet('', () => 1)).to.throw(TypeError, /key must be a non-empty string/)
      expect(() => cache.getOrSet('k', () => 1, { ttl: '-1s' })).to.throw(TypeError, /getOrSet option "ttl"/)
      expect(() => cache.warm([{ key: 'a', ttl: 'soon' }])).to.throw(TypeError, /warm\(entries\): entry "a" option "ttl" .*got "soon"/)
      expect(() => cache.warm([], { concurrency: 0 })).to.throw(TypeError, /"concurrency" must be an integer ≥ 1, got 0/)
      await cache.close()
    })
  })

  describe('when no store is given', () => {
    it('should use a memory store of its own and JSON', async () => {
      const cache = createCache()
      await cache.set('a', { n: 1 })
      expect(await cache.get('a')).to.deep.equal({ n: 1 })
      expect(cache.stats().entries).to.equal(1)
      await cache.close()
    })
  })

  for (const factory of factories) {
    describe(`on the ${factory.name} store`, () => {
      let created: CreatedStore
      const opened: ValueCache[] = []
      const open = (options: Parameters<typeof createCache>[0] = {}) => {
        const cache = createCache({ store: created.store, storeTimeout: SLOW_MACHINE, ...options })
        opened.push(cache)
        return cache
      }
      beforeEach(async () => {
        created = await factory.create()
      })
      afterEach(async () => {
        for (const cache of opened.splice(0)) await cache.close()
        await created.cleanup()
      })

      describe('when values are set, read and deleted', () => {
        it('should return the value, undefined on a miss, and nothing after delete', async () => {
          const cache = open()
          expect(await cache.get('posts:list:1')).to.equal(undefined)
          await cache.set('posts:list:1', [{ id: 1, title: 'a' }])
          expect(await cache.get('posts:list:1')).to.deep.equal([{ id: 1, title: 'a' }])
          await cache.delete('posts:list:1')
          expect(await cache.get('posts:list:1')).to.equal(undefined)
        })
        it('should treat a value as gone after its ttl', async () => {
          let now = 1_700_000_000_000
          const cache = open({ now: () => now })
          await cache.set('k', 'v', { ttl: '10s' })
          expect(await cache.get('k')).to.equal('v')
          now += 10_001
          expect(await cache.get('k')).to.equal(undefined)
        })
      })

      for (const coder of [msgpackCoder(), jsonCoder()]) {
        describe(`when values go through ${coder.name}Coder()`, () => {
          it('should give back Date, Buffer, Uint8Array, Map, Set, bigint and undefined exactly', async () => {
            const cache = open({ coder })
            await cache.set('rich', richValue())
            const fresh = createCache({ store: created.store, coder, storeTimeout: SLOW_MACHINE })
            opened.push(fresh)
            const back = (await fresh.get<ReturnType<typeof richValue>>('rich'))!
            expect(back).to.deep.equal(richValue())
            expect(back.date).to.be.instanceOf(Date)
            expect(Buffer.isBuffer(back.buffer)).to.equal(true)
            expect(back.bytes).to.be.instanceOf(Uint8Array)
            expect(back.map).to.be.instanceOf(Map)
            expect('missing' in back).to.equal(true)
          })
        })
      }

      describe('when getOrSet() misses', () => {
        it('should compute once for many concurrent callers, then hit', async () => {
          const cache = open()
          const held = gate()
          let calls = 0
          const compute = async () => {
            calls++
            await held.promise
            return { page: 1 }
          }
          const callers = Array.from({ length: 20 }, () => cache.getOrSet('posts:list:1', compute))
          await waitFor(() => calls === 1)
          held.open()
          const values = await Promise.all(callers)
          expect(calls).to.equal(1)
          expect(values.every((v) => v.page === 1)).to.equal(true)
          await waitFor(async () => (await cache.get('posts:list:1')) !== undefined)
          expect(await cache.getOrSet('posts:list:1', compute)).to.deep.equal({ page: 1 })
          expect(calls).to.equal(1)
          expect(cache.stats()).to.include({ coalesced: 19 })
        })
        it('should pass a rejection on and never store it', async () => {
          const cache = open()
          let calls = 0
          const failing = async () => {
            calls++
            throw new Error('db down')
          }
          await cache.getOrSet('k', failing).then(
            () => expect.fail('resolved'),
            (e: Error) => expect(e.message).to.equal('db down'),
          )
          await cache.getOrSet('k', failing).catch(() => undefined)
          expect(calls).to.equal(2)
          expect(await cache.getOrSet('k', async () => 'ok')).to.equal('ok')
        })
        it('should store a rejection only when cacheRejections asks, with its name and message', async () => {
          const cache = open()
          let calls = 0
          const failing = async () => {
            calls++
            throw new RangeError('no such page')
          }
          const first = await cache.getOrSet('k', failing, { cacheRejections: '1m' }).catch((e: Error) => e)
          expect(first).to.be.instanceOf(RangeError)
          await waitFor(async () => {
            const again = await cache.getOrSet('k', failing, { cacheRejections: '1m' }).catch((e: Error) => e)
            return calls === 1 && again.name === 'RangeError' && again.message === 'no such page'
          })
          expect(await cache.get('k')).to.equal(undefined)
        })
      })

      describe('when a value is stale within staleWhileRevalidate', () => {
        it('should return the stale value while one background recompute runs', async () => {
          let now = 1_700_000_000_000
          const cache = open({ now: () => now, ttl: '10s', staleWhileRevalidate: '1h' })
          let version = 0
          const held = gate()
          let calls = 0
          const compute = async () => {
            calls++
            if (calls > 1) await held.promise
            return ++version
          }
          expect(await cache.getOrSet('v', compute)).to.equal(1)
          await waitFor(async () => (await cache.get('v')) === 1)
          now += 11_000
          const stale = await Promise.all([cache.getOrSet('v', compute), cache.getOrSet('v', compute), cache.getOrSet('v', compute)])
          expect(stale).to.deep.equal([1, 1, 1])
          await waitFor(() => calls === 2)
          expect(await cache.get('v')).to.equal(undefined) // get() returns fresh values only
          held.open()
          await waitFor(async () => (await cache.get('v')) === 2)
          expect(await cache.getOrSet('v', compute)).to.equal(2)
          expect(calls).to.equal(2)
          expect(cache.stats()).to.include({ stale: 3 })
        })
      })

      describe('when a value cache and a responseCache share the store', () => {
        it('should let responseCache().invalidate() and invalidate() remove value keys too', async () => {
          const values = open()
          const responses = responseCache({ store: created.store })
          try {
            await values.set('posts:list:1', ['a'])
            await values.set('posts:list:2', ['b'])
            await values.set('users:list:1', ['u'])
            await responses.invalidate('posts:*')
            expect(await values.get('posts:list:1')).to.equal(undefined)
            expect(await values.get('posts:list:2')).to.equal(undefined)
            expect(await values.get('users:list:1')).to.deep.equal(['u'])
            await values.set('posts:list:1', ['a2'])
            await invalidate('users:*')
            expect(await values.get('users:list:1')).to.equal(undefined)
            expect(await values.get('posts:list:1')).to.deep.equal(['a2'])
          } finally {
            await responses.close()
          }
        })
        it('should answer a request as a plain miss, with no error, when a value sits under its response key', async () => {
          const values = open()
          const errors: Error[] = []
          const responses = responseCache({ store: created.store, ttl: '1m', onError: (e) => errors.push(e) })
          const app = express()
          app.use(responses)
          let calls = 0
          app.get('/posts', (_req, res) => res.send(`origin ${++calls}`))
          const served = await serve(app)
          try {
            await values.set(storageKey(primaryKey('GET', '/posts')!, served.host), { not: 'a response' })
            await served.agent.get('/posts').expect(200, 'origin 1').expect('X-Cache', 'MISS')
            expect(errors.map((e) => e.message)).to.deep.equal([])
          } finally {
            await served.close()
            await responses.close()
          }
        })
      })

      describe('when invalidate() is called on the value cache', () => {
        it('should remove the matching keys, resolve a count, and not store a result computed across an invalidation or a delete', async () => {
          const cache = open()
          await cache.set('posts:list:1', 1)
          await cache.set('posts:list:2', 2)
          await cache.set('other:1', 3)
          const removed = await cache.invalidate('posts:*')
          if (factory.counts) expect(removed).to.equal(2)
          expect(await cache.get('posts:list:1')).to.equal(undefined)
          expect(await cache.get('other:1')).to.equal(3)

          const held = gate()
          const computing = cache.getOrSet('posts:list:3', async () => {
            await held.promise
            return 'old'
          })
          await cache.invalidate('posts:*')
          held.open()
          expect(await computing).to.equal('old')
          expect(await cache.get('posts:list:3')).to.equal(undefined)

          const again = gate()
          const recomputing = cache.getOrSet('posts:list:4', async () => {
            await again.promise
            return 'old'
          })
          await cache.delete('posts:list:4')
          again.open()
          expect(await recomputing).to.equal('old')
          expect(await cache.get('posts:list:4')).to.equal(undefined)
        })
      })

      if (factory.name !== 'memory') {
        describe('when another process invalidates while a value is computed', () => {
          it('should delete the value again once its write lands', async () => {
            let now = 1_700_000_000_000
            const clock = () => now
            const a = open({ now: clock })
            // The other process's store: the same backend, telling when its write of the key landed.
            const landed = gate()
            const store = created.store
            const watched: Store = {
              get: (key) => store.get(key),
              set: async (key, value, ttl) => {
                const stored = await store.set(key, value, ttl)
                if (key.includes('posts:list:5')) landed.open()
                return stored
              },
              delete: (key) => store.delete(key),
              deleteMatching: (pattern) => store.deleteMatching(pattern),
            }
            const b = createCache({ store: watched, storeTimeout: SLOW_MACHINE, now: clock })
            opened.push(b)
            const held = gate()
            let started = false
            const computing = b.getOrSet('posts:list:5', async () => {
              started = true
              await held.promise
              return 'old'
            })
            await waitFor(() => started)
            now += 1000 // the invalidation comes a moment after the computation began
            await a.invalidate('posts:*')
            held.open()
            expect(await computing).to.equal('old')
            await landed.promise
            await waitFor(async () => (await a.get('posts:list:5')) === undefined)
            now += 1000
            expect(await b.getOrSet('posts:list:5', async () => 'new')).to.equal('new')
            await waitFor(async () => (await a.get('posts:list:5')) === 'new')
          })

          it('should leave a newer value that another process stored meanwhile', async () => {
            let now = 1_700_000_000_000
            const clock = () => now
            const a = open({ now: clock })
            // The other process's store: its write of the key lands, then its reads of the
            // invalidation marks wait until the test lets them through.
            const store = created.store
            let written = false
            let released = false
            let checked = false
            let deleted = false
            const marksRead = gate()
            const marksHeld = gate()
            const watched: Store = {
              get: async (key) => {
                if (written && key.includes('~invalidations')) {
                  marksRead.open()
                  await marksHeld.promise
                }
                if (released && key.includes('posts:list:6')) checked = true
                return store.get(key)
              },
              set: async (key, value, ttl) => {
                const stored = await store.set(key, value, ttl)
                if (key.includes('posts:list:6')) written = true
                return stored
              },
              delete: (key) => {
                if (key.includes('posts:list:6')) deleted = true
                return store.delete(key)
              },
              deleteMatching: (pattern) => store.deleteMatching(pattern),
            }
            const b = createCache({ store: watched, storeTimeout: SLOW_MACHINE, now: clock })
            opened.push(b)
            const held = gate()
            let started = false
            const computing = b.getOrSet('posts:list:6', async () => {
              started = true
              await held.promise
              return 'old'
            })
            await waitFor(() => started)
            now += 1000
            await a.invalidate('posts:*')
            held.open()
            expect(await computing).to.equal('old')
            await marksRead.promise
            // Meanwhile this process stores a value computed after the invalidation.
            now += 1000
            await a.set('posts:list:6', 'new')
            released = true
            marksHeld.open()
            // The write is taken back only if the entry is still its own: it reads the key first.
            await waitFor(() => checked || deleted)
            for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
            expect(deleted).to.equal(false)
            expect(await a.get('posts:list:6')).to.equal('new')
          })
        })
      }

      describe('when health() is asked', () => {
        it('should report one round trip to the store', async () => {
          const report = await open().health()
          expect(report.ok).to.equal(true)
          expect(report.latencyMs).to.be.a('number').at.least(0)
          expect(report.error).to.equal(undefined)
        })
      })

      describe('when warm() is given entries', () => {
        it('should write each with at most `concurrency` computations at once, one result per entry', async () => {
          const cache = open()
          let running = 0
          let most = 0
          const entries = Array.from({ length: 12 }, (_, i) => ({
            key: `warm:${i}`,
            compute: async () => {
              running++
              most = Math.max(most, running)
              await new Promise((resolve) => setImmediate(resolve))
              running--
              if (i === 5) throw new Error('no row 5')
              return i
            },
          }))
          const results = await cache.warm([...entries, { key: 'warm:plain', value: 'p' }], { concurrency: 3 })
          expect(most).to.equal(3)
          expect(results.map((r) => r.key)).to.deep.equal([...entries.map((e) => e.key), 'warm:plain'])
          expect(results.filter((r) => !r.ok).map((r) => r.error?.message)).to.deep.equal(['no row 5'])
          expect(await cache.get('warm:11')).to.equal(11)
          expect(await cache.get('warm:plain')).to.equal('p')
        })
      })

      if (factory.name === 'redis') {
        describe('when two processes miss the same key at once', () => {
          it('should compute it once through the store lock', async () => {
            const a = open()
            const refused: (string | null)[] = []
            const store = created.store
            const watched: Store = {
              get: (key) => store.get(key),
              set: (key, value, ttl) => store.set(key, value, ttl),
              delete: (key) => store.delete(key),
              deleteMatching: (pattern) => store.deleteMatching(pattern),
              lock: async (key, ttl) => {
                const token = await store.lock!(key, ttl)
                refused.push(token)
                return token
              },
              unlock: (key, token) => store.unlock!(key, token),
            }
            const b = createCache({ store: watched, storeTimeout: SLOW_MACHINE })
            opened.push(b)
            const held = gate()
            let calls = 0
            const compute = async () => {
              calls++
              await held.promise
              return 'shared'
            }
            const first = a.getOrSet('posts:list:1', compute)
            await waitFor(() => calls === 1)
            const second = b.getOrSet('posts:list:1', compute)
            await waitFor(() => refused.includes(null)) // b found the lock taken and polls the store
            held.open()
            expect(await Promise.all([first, second])).to.deep.equal(['shared', 'shared'])
            expect(calls).to.equal(1)
          })
        })
      }
    })
  }

  describe('when the store stalls', () => {
    it('should call compute after storeTimeout, report the timeout, and resolve get() with undefined', async () => {
      const errors: Error[] = []
      const cache = createCache({ store: stalledStore(), storeTimeout: '20ms', lockTimeout: '1h', onError: (e) => errors.push(e) })
      try {
        expect(await cache.getOrSet('k', () => 'computed')).to.equal('computed')
        expect(await cache.get('other')).to.equal(undefined)
        expect(errors.some((e) => e instanceof StoreTimeoutError)).to.equal(true)
        const health = await cache.health()
        expect(health.ok).to.equal(false)
        expect(health.error).to.be.instanceOf(StoreTimeoutError)
        const [result] = await cache.warm([{ key: 'w', value: 1 }])
        expect(result.ok).to.equal(false)
      } finally {
        await cache.close()
      }
    })
  })

  describe('when the store fails to release a lock', () => {
    it('should take that lock back for the next miss of the key instead of waiting for it to expire', async () => {
      const values = new Map<string, Uint8Array>()
      const locks = new Map<string, string>()
      let lockCalls = 0
      let reads = 0
      let unlockFails = true
      const store: Store = {
        name: 'forgetful-locks',
        get: (key) => (reads++, values.get(key)),
        set: (key, value) => void values.set(key, value),
        delete: (key) => values.delete(key),
        deleteMatching: () => 0,
        lock: async (key) => {
          lockCalls++
          if (locks.has(key)) return null
          const token = `t${lockCalls}`
          locks.set(key, token)
          return token
        },
        unlock: async (key, token) => {
          if (unlockFails) {
            unlockFails = false
            throw new Error('unlock reply lost')
          }
          if (locks.get(key) === token) locks.delete(key)
        },
      }
      const errors: Error[] = []
      const cache = createCache({ store, storeTimeout: SLOW_MACHINE, lockTimeout: '1h', onError: (e) => errors.push(e) })
      try {
        expect(await cache.getOrSet('k', () => 'one')).to.equal('one')
        await waitFor(() => errors.some((e) => e.message === 'unlock reply lost'))
        expect(locks.size).to.equal(1) // still held in the store
        await cache.delete('k')
        reads = 0
        const callsBefore = lockCalls
        expect(await cache.getOrSet('k', () => 'two')).to.equal('two')
        // One read (the lookup), no polling of its own lock, no new lock call; then released.
        expect(reads).to.equal(1)
        expect(lockCalls).to.equal(callsBefore)
        await waitFor(() => locks.size === 0)
      } finally {
        await cache.close()
      }
    })
  })

  describe('when a value cannot be encoded', () => {
    it('should return it uncached and send the coder error to onError', async () => {
      for (const coder of [jsonCoder(), msgpackCoder()]) {
        const errors: Error[] = []
        const cache = createCache({ coder, onError: (e) => errors.push(e) })
        try {
          const cyclic: Record<string, unknown> = { n: 1 }
          cyclic.self = cyclic
          let calls = 0
          const compute = () => {
            calls++
            return cyclic
          }
          expect(await cache.getOrSet('c', compute)).to.equal(cyclic)
          expect(await cache.getOrSet('c', compute)).to.equal(cyclic)
          expect(calls, coder.name).to.equal(2)
          expect(errors, coder.name).to.have.length(2)
        } finally {
          await cache.close()
        }
      }
    })
  })

  describe('when jsonCoder() meets a class instance', () => {
    it('should store its toJSON() or its own enumerable properties, as a plain object', async () => {
      class Money {
        constructor(readonly cents: number) {}
        toJSON() {
          return `${this.cents / 100} EUR`
        }
      }
      class Point {
        constructor(
          readonly x: number,
          readonly y: number,
        ) {}
      }
      const cache = createCache({ coder: jsonCoder() })
      try {
        await cache.set('k', { price: new Money(250), at: new Point(1, 2) })
        const back = (await cache.get<{ price: unknown; at: unknown }>('k'))!
        expect(back).to.deep.equal({ price: '2.5 EUR', at: { x: 1, y: 2 } })
        expect(Object.getPrototypeOf(back.at)).to.equal(Object.prototype)
      } finally {
        await cache.close()
      }
    })
  })

  describe('when the module-level invalidate() runs', () => {
    it('should reach value caches on other stores too', async () => {
      const one = createCache({ store: memoryStore() })
      const two = createCache({ store: memoryStore() })
      try {
        await one.set('posts:list:1', 1)
        await two.set('posts:list:1', 1)
        await two.set('users:1', 1)
        expect(await invalidate('posts:*')).to.equal(2)
        expect(await one.get('posts:list:1')).to.equal(undefined)
        expect(await two.get('posts:list:1')).to.equal(undefined)
        expect(await two.get('users:1')).to.equal(1)
      } finally {
        await one.close()
        await two.close()
      }
    })
  })
})

describe('value entries in the coders', () => {
  for (const coder of [jsonCoder(), msgpackCoder()] as Coder[]) {
    it(`should round-trip a value and a cached rejection with ${coder.name}Coder()`, () => {
      const value: ValueEntry = { kind: 'value', value: richValue(), storedAt: 1, expires: 2, staleUntil: 3 }
      expect(coder.decode(coder.encode(value))).to.deep.equal(value)
      const rejection: ValueEntry = { kind: 'value', value: undefined, storedAt: 1, expires: 2, staleUntil: 2, rejection: { name: 'E', message: 'm' } }
      expect(coder.decode(coder.encode(rejection))).to.deep.equal(rejection)
      const top: ValueEntry = { kind: 'value', value: undefined, storedAt: 1, expires: 2, staleUntil: 2 }
      expect(coder.decode(coder.encode(top))).to.deep.equal(top)
    })
  }
  it('should encode responses and vary records byte for byte as before values existed', () => {
    const response = {
      kind: 'response' as const,
      status: 200,
      headers: ['Content-Type', 'text/plain', 'ETag', 'W/"x"'],
      body: Buffer.from('hello'),
      responseTime: 1_700_000_000_000,
      initialAge: 0,
      lifetime: 60_000,
      staleWhileRevalidate: 5,
      staleIfError: 0,
      mustRevalidate: false,
      statusHeader: false as const,
    }
    const vary = { kind: 'vary' as const, vary: ['accept'], variants: ['a#b'], expires: 7 }
    // Digests of the bytes the coders wrote for these two entries before value entries were added.
    const before: Record<string, string> = {
      json: 'e4c2caf8d5574b1f69448a669666f08622f55986a7456aea96bf1958568cb098',
      msgpack: 'be740ae7fbd632b15889199cf9af70213299fb2bf42a5c964d8183b61b8aa5e6',
    }
    for (const coder of [jsonCoder(), msgpackCoder()]) {
      expect(createHash('sha256').update(coder.encode(response)).update(coder.encode(vary)).digest('hex'), coder.name).to.equal(before[coder.name])
    }
  })
  it('should keep a __proto__ key of a JSON value an own property', () => {
    const coder = jsonCoder()
    const value = JSON.parse('{"__proto__":{"polluted":true}}')
    const back = coder.decode(coder.encode({ kind: 'value', value, storedAt: 1, expires: 2, staleUntil: 2 })) as ValueEntry
    expect(Object.getPrototypeOf(back.value)).to.equal(Object.prototype)
    expect((back.value as { polluted?: boolean }).polluted).to.equal(undefined)
    expect(Object.keys(back.value as object)).to.deep.equal(['__proto__'])
  })
  it('should refuse a cycle or a function at encoding', () => {
    const cyclic: Record<string, unknown> = {}
    cyclic.self = cyclic
    expect(() => jsonCoder().encode({ kind: 'value', value: cyclic, storedAt: 1, expires: 2, staleUntil: 2 })).to.throw(TypeError, /cycle/)
    expect(() => jsonCoder().encode({ kind: 'value', value: { f() {} }, storedAt: 1, expires: 2, staleUntil: 2 })).to.throw(TypeError, /function/)
  })
})
