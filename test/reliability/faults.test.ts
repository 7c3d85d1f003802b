/**
 * Faults during load: redis-server stopped (SIGSTOP) and killed, memcached killed, and a TCP
 * proxy between the store client and the server that adds latency or resets connections. No
 * client request fails or waits much beyond the store timeout plus handler time, caching comes
 * back afterwards, nothing is left as an unhandled rejection, and the heap returns to its
 * baseline after a long run. Also: an answer that waited behind a blocked event loop is no timeout.
 */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import http from 'node:http'
import { expect } from 'chai'
import { Redis } from 'ioredis'
import { jsonCoder } from '../../src/coders/json.js'
import { responseCache, type ResponseCache } from '../../src/middleware.js'
import { Storage } from '../../src/storage.js'
import { redisStore } from '../../src/stores/redis.js'
import { memcachedStore } from '../../src/stores/memcached.js'
import type { Store } from '../../src/types.js'
import { envInt, runLoad, summarize, type LoadRequest, type LoadResponse, type LoadResult } from '../support/load.js'
import { startProxy, type FaultProxy } from '../support/proxy.js'
import { responseEntry } from '../support/entries.js'
import { getRedis, startMemcached, startRedis, type MemcachedServer, type RedisServer } from '../support/servers.js'
import { checkResponse, makeRequest, random, startSite, type Meta, type Site } from './site.js'

const FULL = process.env.CACHET_FULL === '1'
/** The cache's store timeout (its default) and the handler's own time. */
const STORE_TIMEOUT_MS = 200
const HANDLER_MS = 10
/**
 * Allowance for scheduling on a shared, busy machine (the test client and server share one
 * process and two cores with other suites): generous on purpose, reported separately.
 */
const MARGIN_MS = envInt('CACHET_FAULT_MARGIN_MS', 500)
const CONNECTIONS = envInt('CACHET_FAULT_CONNECTIONS', 20)
const URLS = 400
/** Requests of the heap run; the issue asks for 100,000 (the full run). */
const HEAP_REQUESTS = envInt('CACHET_HEAP_REQUESTS', FULL ? 100_000 : 20_000)

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/**
 * The longest a request may take: one bounded store read per lookup step (two for a response
 * that varies: the Vary record, then the variant), plus the handler, plus (for a coalesced
 * request whose variant differs from the leader's) the leader's handler run.
 */
function bound(meta: Meta): number {
  const reads = meta.path.startsWith('/n/') ? 1 : 2
  return reads * STORE_TIMEOUT_MS + 2 * HANDLER_MS + MARGIN_MS
}

/** Worst latency seen, for paths without Vary (one read) and with Vary (two reads). */
interface Worst {
  plain: number
  varying: number
}

function checker(worst: Worst) {
  return (request: LoadRequest, response: LoadResponse): string | undefined => {
    const meta = request.meta as Meta
    if (meta.path.startsWith('/n/')) worst.plain = Math.max(worst.plain, response.latency)
    else worst.varying = Math.max(worst.varying, response.latency)
    const wrong = checkResponse(request, response)
    if (wrong !== undefined) return wrong
    if (response.latency > bound(meta)) return `took ${response.latency.toFixed(0)} ms, more than ${bound(meta)} ms`
    return undefined
  }
}

/** Load for `ms` while `faults` runs alongside; resolves the load's result. */
async function loadDuring(site: Site, ms: number, worst: Worst, faults: () => Promise<void>, seed: number): Promise<LoadResult> {
  const rand = random(seed)
  const [result] = await Promise.all([
    runLoad({
      port: site.port,
      connections: CONNECTIONS,
      requests: 1_000_000,
      maxDurationMs: ms,
      requestTimeoutMs: 10_000,
      next: () => makeRequest(rand, URLS),
      check: checker(worst),
    }),
    faults(),
  ])
  return result
}

/** GET one URL until the second of two requests in a row is a HIT (bounded: `withinMs`). */
async function cachingResumes(port: number, withinMs: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: false })
  const started = Date.now()
  let n = 0
  try {
    while (Date.now() - started < withinMs) {
      const path = `/n/resume-${n++}?a=1`
      await get(port, path, agent)
      await sleep(50)
      if ((await get(port, path, agent)) === 'HIT') return Date.now() - started
      await sleep(250)
    }
  } finally {
    agent.destroy()
  }
  throw new Error(`caching did not resume within ${withinMs} ms`)
}

function get(port: number, path: string, agent: http.Agent): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent, timeout: 5000 }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.headers['x-cache'] as string | undefined))
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', reject)
  })
}

/** Collect unhandled rejections while a test runs. */
function watchRejections(): { list: unknown[]; stop(): void } {
  const list: unknown[] = []
  const onRejection = (reason: unknown) => list.push(reason)
  process.on('unhandledRejection', onRejection)
  return { list, stop: () => process.off('unhandledRejection', onRejection) }
}

interface Rig {
  cache: ResponseCache
  site: Site
  /** The errors reported to onError, by name and message: the rig's own memory must not count as the cache's in the heap test. */
  errors: { name: string; message: string }[]
  close(): Promise<void>
}

async function rig(store: Store, close: () => Promise<void>): Promise<Rig> {
  const errors: Rig['errors'] = []
  const cache = responseCache({
    store,
    storeTimeout: `${STORE_TIMEOUT_MS}ms`,
    onError: (error) => void errors.push({ name: error.name, message: error.message }),
  })
  const site = await startSite(cache, HANDLER_MS)
  return {
    cache,
    site,
    errors,
    async close() {
      await site.close()
      await cache.close()
      await close()
    },
  }
}

function expectClean(result: LoadResult, rejections: unknown[]): void {
  expect(result.samples, 'failures').to.deep.equal([])
  expect(result.wrong).to.equal(0)
  expect(result.errors).to.equal(0)
  expect(result.hangs).to.equal(0)
  expect(result.completed).to.be.greaterThan(100)
  expect(rejections, 'unhandled rejections').to.deep.equal([])
}

const report: string[] = []

describe('faults during load', function () {
  this.timeout(120_000)

  after(() => {
    if (report.length > 0) console.log(report.map((line) => `      ${line}`).join('\n'))
  })

  describe('on the redis store', () => {
    let redis: RedisServer
    let proxy: FaultProxy
    let client: Redis
    let r: Rig
    let rejections: ReturnType<typeof watchRejections>
    const worst: Worst = { plain: 0, varying: 0 }

    before(async function () {
      this.timeout(30_000)
      redis = await startRedis()
      proxy = await startProxy(redis.port)
    })

    beforeEach(async () => {
      rejections = watchRejections()
      worst.plain = worst.varying = 0
      // The client reaches Redis through the proxy; it reconnects by itself after every fault.
      client = new Redis({ host: '127.0.0.1', port: proxy.port, maxRetriesPerRequest: 1 })
      client.on('error', () => {})
      // A small hotBytes: hot copies are exercised under every fault, and the heap test's warm-up
      // fills them, so their (bounded) growth is not counted as a leak.
      r = await rig(redisStore({ client, prefix: 'faults:', hotBytes: 256 * 1024 }), async () => client.disconnect())
    })

    afterEach(async () => {
      rejections.stop()
      redis.resume()
      proxy.latency(0)
      proxy.stall(false)
      proxy.holdReplies(false)
      proxy.refuse(false)
      await r.close()
    })

    after(async () => {
      await proxy?.close()
      await redis?.stop()
    })

    it('should serve every request in time while redis-server is stopped (SIGSTOP) for 5 s, then cache again', async () => {
      const result = await loadDuring(
        r.site,
        9000,
        worst,
        async () => {
          await sleep(1500)
          await redis.pause()
          await sleep(5000)
          redis.resume()
        },
        1,
      )
      report.push(`redis SIGSTOP 5 s — ${summarize('load', result)}; worst: plain ${worst.plain.toFixed(0)} ms, varying ${worst.varying.toFixed(0)} ms`)
      expectClean(result, rejections.list)
      expect(r.errors.length, 'store errors reported').to.be.greaterThan(0)
      const after = await cachingResumes(r.site.port, 15_000)
      report.push(`redis SIGSTOP 5 s — caching resumed ${after} ms after the load`)
      expect(rejections.list).to.deep.equal([])
    })

    it('should serve every request in time while redis-server is killed (SIGKILL) and restarted, then cache again', async () => {
      const result = await loadDuring(
        r.site,
        9000,
        worst,
        async () => {
          await sleep(1500)
          await redis.kill()
          await sleep(3000)
          await redis.restart()
        },
        2,
      )
      report.push(`redis SIGKILL+restart — ${summarize('load', result)}; worst: plain ${worst.plain.toFixed(0)} ms, varying ${worst.varying.toFixed(0)} ms`)
      expectClean(result, rejections.list)
      expect(r.errors.length).to.be.greaterThan(0)
      const after = await cachingResumes(r.site.port, 15_000)
      report.push(`redis SIGKILL+restart — caching resumed ${after} ms after the load`)
      expect(rejections.list).to.deep.equal([])
    })

    it('should serve every request in time while the proxy adds 500 ms of latency, then cache again', async () => {
      const result = await loadDuring(
        r.site,
        8000,
        worst,
        async () => {
          await sleep(1500)
          proxy.latency(500)
          await sleep(4000)
          proxy.latency(0)
        },
        3,
      )
      report.push(`proxy +500 ms — ${summarize('load', result)}; worst: plain ${worst.plain.toFixed(0)} ms, varying ${worst.varying.toFixed(0)} ms`)
      expectClean(result, rejections.list)
      expect(
        r.errors.some((e) => e.name === 'StoreTimeoutError'),
        'timeouts reported',
      ).to.equal(true)
      await cachingResumes(r.site.port, 15_000)
      expect(rejections.list).to.deep.equal([])
    })

    it('should serve every request in time while the proxy resets connections and refuses new ones, then cache again', async () => {
      const result = await loadDuring(
        r.site,
        8000,
        worst,
        async () => {
          await sleep(1500)
          for (let i = 0; i < 8; i++) {
            proxy.reset()
            await sleep(250)
          }
          proxy.refuse(true)
          proxy.reset()
          await sleep(1500)
          proxy.refuse(false)
        },
        4,
      )
      report.push(
        `proxy resets (${proxy.resets} so far) — ${summarize('load', result)}; worst: plain ${worst.plain.toFixed(0)} ms, varying ${worst.varying.toFixed(0)} ms`,
      )
      expectClean(result, rejections.list)
      expect(proxy.resets).to.be.greaterThan(0)
      await cachingResumes(r.site.port, 15_000)
      expect(rejections.list).to.deep.equal([])
    })

    it('should keep a lock whose reply was lost in a reset, when ioredis sends the command again', async () => {
      // A lock taken whose reply is lost, then answered "held by someone else" when resent: the
      // request would wait for its own lock until lockTimeout.
      const store = redisStore({ client, prefix: 'faults:' })
      const direct = new Redis({ host: '127.0.0.1', port: redis.port })
      try {
        await client.ping()
        await direct.del('lock:faults:resent')
        proxy.holdReplies(true)
        const taking = store.lock('resent', 5000)
        const started = Date.now()
        // Wait until the command has run on the server; its reply is held in the proxy.
        while ((await direct.exists('lock:faults:resent')) === 0) {
          if (Date.now() - started > 2000) throw new Error('the lock command did not reach redis-server')
          await sleep(5)
        }
        proxy.reset() // the reply is lost; ioredis reconnects and sends the command again
        proxy.holdReplies(false)
        const token = await taking
        expect(token, 'lock() after the resend').to.be.a('string')
        expect(await direct.get('lock:faults:resent')).to.equal(token)
        expect(await store.unlock('resent', token!)).to.equal(true)
        expect(rejections.list).to.deep.equal([])
      } finally {
        proxy.holdReplies(false)
        await direct.del('lock:faults:resent')
        direct.disconnect()
      }
    })

    it(`should return to its heap baseline after ${HEAP_REQUESTS} requests with a store stall in the middle`, async function () {
      this.timeout(FULL ? 600_000 : 180_000)
      // global.gc without changing how mocha is started: V8 exposes it to a new context once the flag is set.
      setFlagsFromString('--expose-gc')
      const gc = runInNewContext('gc') as () => void
      const settle = async () => {
        for (let i = 0; i < 6; i++) {
          gc()
          await sleep(50)
        }
        return process.memoryUsage().heapUsed
      }
      const load = (requests: number, seed: number, onResponse?: (i: number) => void) => {
        const rand = random(seed)
        return runLoad({
          port: r.site.port,
          connections: 50,
          requests,
          maxDurationMs: FULL ? 540_000 : 150_000,
          next: () => makeRequest(rand, 2000),
          check: checkResponse,
          onResponse,
        })
      }
      // Warm up: sockets, JIT, ioredis buffers, the URL set in Redis.
      await load(5000, 5)
      const baseline = await settle()
      let stalled = false
      const result = await load(HEAP_REQUESTS, 6, (i) => {
        // A 2 s stall a third of the way through: commands pile up in ioredis, then drain.
        if (!stalled && i === Math.floor(HEAP_REQUESTS / 3)) {
          stalled = true
          proxy.stall(true)
          setTimeout(() => proxy.stall(false), 2000).unref()
        }
      })
      await sleep(2500)
      const final = await settle()
      const growth = final - baseline
      report.push(
        `heap: ${summarize('load', result)}; heapUsed baseline ${(baseline / 1e6).toFixed(1)} MB → ${(final / 1e6).toFixed(1)} MB after ${HEAP_REQUESTS} requests (${growth >= 0 ? '+' : ''}${(growth / 1e6).toFixed(2)} MB)`,
      )
      expectClean(result, rejections.list)
      expect(result.completed).to.equal(HEAP_REQUESTS)
      // Nothing per request may stay behind: a leak of even 100 bytes a request would show as 2–10 MB.
      expect(growth, 'heap growth in bytes').to.be.below(2_000_000)
    })
  })

  describe('on the memcached store', () => {
    let memcached: MemcachedServer
    let proxy: FaultProxy
    let r: Rig
    let rejections: ReturnType<typeof watchRejections>
    const worst: Worst = { plain: 0, varying: 0 }

    before(async function () {
      this.timeout(30_000)
      memcached = await startMemcached()
      proxy = await startProxy(memcached.port)
    })

    beforeEach(async () => {
      rejections = watchRejections()
      worst.plain = worst.varying = 0
      const store = memcachedStore({ servers: [proxy.address], prefix: 'faults:' })
      r = await rig(store, () => store.close())
    })

    afterEach(async () => {
      rejections.stop()
      proxy.latency(0)
      proxy.refuse(false)
      await r.close()
    })

    after(async () => {
      await proxy?.close()
      await memcached?.stop()
    })

    it('should serve every request in time while memcached is dead (SIGKILL), then cache again once it is back', async () => {
      const result = await loadDuring(
        r.site,
        9000,
        worst,
        async () => {
          await sleep(1500)
          await memcached.kill()
          await sleep(5000)
          await memcached.restart()
        },
        7,
      )
      report.push(
        `memcached SIGKILL (5 s dead) — ${summarize('load', result)}; worst: plain ${worst.plain.toFixed(0)} ms, varying ${worst.varying.toFixed(0)} ms`,
      )
      expectClean(result, rejections.list)
      expect(r.errors.length).to.be.greaterThan(0)
      const after = await cachingResumes(r.site.port, 20_000)
      report.push(`memcached SIGKILL — caching resumed ${after} ms after the load`)
      expect(rejections.list).to.deep.equal([])
    })

    it('should serve every request in time while the proxy adds latency and resets connections, then cache again', async () => {
      const result = await loadDuring(
        r.site,
        8000,
        worst,
        async () => {
          await sleep(1000)
          proxy.latency(400)
          await sleep(2500)
          proxy.latency(0)
          for (let i = 0; i < 6; i++) {
            proxy.reset()
            await sleep(250)
          }
        },
        8,
      )
      report.push(
        `memcached proxy latency+resets — ${summarize('load', result)}; worst: plain ${worst.plain.toFixed(0)} ms, varying ${worst.varying.toFixed(0)} ms`,
      )
      expectClean(result, rejections.list)
      await cachingResumes(r.site.port, 20_000)
      expect(rejections.list).to.deep.equal([])
    })
  })
})

describe('faults during load, with the local tier on', function () {
  this.timeout(120_000)

  after(() => {
    if (report.length > 0) console.log(report.map((line) => `      ${line}`).join('\n'))
    report.length = 0
  })

  describe('on the redis store (local: { heartbeat: 50 })', () => {
    let redis: RedisServer
    let proxy: FaultProxy
    let client: Redis
    let store: ReturnType<typeof redisStore>
    let r: Rig
    let rejections: ReturnType<typeof watchRejections>
    const worst: Worst = { plain: 0, varying: 0 }

    before(async function () {
      this.timeout(30_000)
      redis = await startRedis()
      proxy = await startProxy(redis.port)
    })

    beforeEach(async () => {
      rejections = watchRejections()
      worst.plain = worst.varying = 0
      // The client and its subscriber (a duplicate) reach Redis through the proxy.
      client = new Redis({ host: '127.0.0.1', port: proxy.port, maxRetriesPerRequest: 1 })
      client.on('error', () => {})
      store = redisStore({ client, prefix: 'faults-local:', local: { maxBytes: 256 * 1024, heartbeat: 50 } })
      r = await rig(store, async () => client.disconnect())
    })

    afterEach(async () => {
      rejections.stop()
      redis.resume()
      proxy.latency(0)
      proxy.stall(false)
      proxy.holdReplies(false)
      proxy.refuse(false)
      await r.close()
    })

    after(async () => {
      await proxy?.close()
      await redis?.stop()
    })

    it('should serve every request in time while redis-server is stopped (SIGSTOP) for 5 s, then cache again', async () => {
      const result = await loadDuring(
        r.site,
        9000,
        worst,
        async () => {
          await sleep(1500)
          await redis.pause()
          await sleep(5000)
          redis.resume()
        },
        11,
      )
      report.push(`redis+local SIGSTOP 5 s — ${summarize('load', result)}; worst: plain ${worst.plain.toFixed(0)} ms, varying ${worst.varying.toFixed(0)} ms`)
      expectClean(result, rejections.list)
      expect(r.errors.length, 'store errors reported').to.be.greaterThan(0)
      await cachingResumes(r.site.port, 15_000)
      expect(rejections.list).to.deep.equal([])
    })

    it('should serve every request in time while redis-server is killed (SIGKILL) and restarted, and never serve a copy of what the restart lost', async () => {
      await store.set('held:GET', Buffer.from('before the kill'), 600_000)
      await store.get('held:GET')
      const result = await loadDuring(
        r.site,
        9000,
        worst,
        async () => {
          await sleep(1500)
          await redis.kill()
          await sleep(3000)
          await redis.restart()
        },
        12,
      )
      report.push(
        `redis+local SIGKILL+restart — ${summarize('load', result)}; worst: plain ${worst.plain.toFixed(0)} ms, varying ${worst.varying.toFixed(0)} ms`,
      )
      expectClean(result, rejections.list)
      expect(r.errors.length).to.be.greaterThan(0)
      await cachingResumes(r.site.port, 15_000)
      // The restarted server is empty: the copy held from before must not be served.
      expect(await store.get('held:GET')).to.equal(null)
      expect(rejections.list).to.deep.equal([])
    })

    it('should serve every request in time while the proxy resets connections and refuses new ones, and see a write made meanwhile by another process', async () => {
      const other = new Redis({ host: '127.0.0.1', port: redis.port, maxRetriesPerRequest: 1 })
      other.on('error', () => {})
      const writer = redisStore({ client: other, prefix: 'faults-local:', local: { heartbeat: 50 } })
      try {
        await writer.set('shared:GET', Buffer.from('0'), 600_000)
        await store.get('shared:GET')
        let written = 0
        const result = await loadDuring(
          r.site,
          8000,
          worst,
          async () => {
            await sleep(1500)
            for (let i = 0; i < 8; i++) {
              proxy.reset()
              // A write while the subscriber is down or coming back: its message may be lost.
              await writer.set('shared:GET', Buffer.from(String(++written)), 600_000)
              await sleep(250)
            }
            proxy.refuse(true)
            proxy.reset()
            await writer.set('shared:GET', Buffer.from(String(++written)), 600_000)
            await sleep(1500)
            proxy.refuse(false)
          },
          13,
        )
        report.push(
          `redis+local proxy resets — ${summarize('load', result)}; worst: plain ${worst.plain.toFixed(0)} ms, varying ${worst.varying.toFixed(0)} ms`,
        )
        expectClean(result, rejections.list)
        await cachingResumes(r.site.port, 15_000)
        const last = async () => {
          try {
            return String(await store.get('shared:GET'))
          } catch {
            return 'error'
          }
        }
        // Once Redis answers again the last write is read, and nothing older after it.
        const until = Date.now() + 5000
        while ((await last()) !== String(written)) {
          if (Date.now() > until) throw new Error(`the last write (${written}) was not read within 5 s: ${await last()}`)
          await sleep(20)
        }
        for (let i = 0; i < 20; i++) expect(await last()).to.equal(String(written))
        expect(rejections.list).to.deep.equal([])
      } finally {
        await writer.close()
        other.disconnect()
      }
    })
  })

  describe('on the memcached store (local: {})', () => {
    let memcached: MemcachedServer
    let proxy: FaultProxy
    let r: Rig
    let rejections: ReturnType<typeof watchRejections>
    const worst: Worst = { plain: 0, varying: 0 }

    before(async function () {
      this.timeout(30_000)
      memcached = await startMemcached()
      proxy = await startProxy(memcached.port)
    })

    beforeEach(async () => {
      rejections = watchRejections()
      worst.plain = worst.varying = 0
      const store = memcachedStore({ servers: [proxy.address], prefix: 'faults-local:', local: { maxBytes: 256 * 1024 } })
      r = await rig(store, () => store.close())
    })

    afterEach(async () => {
      rejections.stop()
      proxy.latency(0)
      proxy.refuse(false)
      await r.close()
    })

    after(async () => {
      await proxy?.close()
      await memcached?.stop()
    })

    it('should serve every request in time while memcached is dead (SIGKILL), then cache again once it is back', async () => {
      const result = await loadDuring(
        r.site,
        9000,
        worst,
        async () => {
          await sleep(1500)
          await memcached.kill()
          await sleep(5000)
          await memcached.restart()
        },
        17,
      )
      report.push(
        `memcached+local SIGKILL (5 s dead) — ${summarize('load', result)}; worst: plain ${worst.plain.toFixed(0)} ms, varying ${worst.varying.toFixed(0)} ms`,
      )
      expectClean(result, rejections.list)
      expect(r.errors.length).to.be.greaterThan(0)
      await cachingResumes(r.site.port, 20_000)
      expect(rejections.list).to.deep.equal([])
    })

    it('should serve every request in time while the proxy adds latency and resets connections, then cache again', async () => {
      const result = await loadDuring(
        r.site,
        8000,
        worst,
        async () => {
          await sleep(1000)
          proxy.latency(400)
          await sleep(2500)
          proxy.latency(0)
          for (let i = 0; i < 6; i++) {
            proxy.reset()
            await sleep(250)
          }
        },
        18,
      )
      report.push(
        `memcached+local proxy latency+resets — ${summarize('load', result)}; worst: plain ${worst.plain.toFixed(0)} ms, varying ${worst.varying.toFixed(0)} ms`,
      )
      expectClean(result, rejections.list)
      await cachingResumes(r.site.port, 20_000)
      expect(rejections.list).to.deep.equal([])
    })
  })
})

describe('a store answer that waited behind a busy event loop', function () {
  this.timeout(20_000)
  let client: Redis

  before(async () => {
    const server = await getRedis()
    client = new Redis(server.port, server.host, { maxRetriesPerRequest: 1 })
    client.on('error', () => {})
  })
  after(() => client.disconnect())

  it('should be used, not reported as a timeout, when the loop was blocked past storeTimeout', async () => {
    const store = redisStore({ client, prefix: `busy-${process.pid}-${Date.now()}:` })
    const errors: Error[] = []
    const storage = new Storage({ store, coder: jsonCoder(), timeout: 50, now: Date.now, report: (error) => void errors.push(error) })
    await storage.write('k', responseEntry('stored'), 60_000)
    expect(errors).to.deep.equal([])
    const read = storage.read('k')
    // Blocked in the check phase: redis-server answers meanwhile, and when the loop turns again
    // the 50 ms timer is due before the socket is read.
    setImmediate(() => {
      for (const until = Date.now() + 300; Date.now() < until;);
    })
    const entry = await read
    expect(errors.map((e) => e.message)).to.deep.equal([])
    expect(entry?.kind === 'response' && Buffer.from(entry.body).toString()).to.equal('stored')
    await store.clear?.()
  })
})
