/**
 * Bounds: the memory store stays within its byte cap under 100,000 unique URLs, a 50 MB streamed
 * response passes through intact without being held, the variant cap and maxKeyLength hold, and
 * coalescing waiters are released by lockTimeout.
 */
import { createHash } from 'node:crypto'
import http, { IncomingMessage, ServerResponse } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo, Socket } from 'node:net'
import { Writable } from 'node:stream'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { expect } from 'chai'
import express from 'express'
import request from 'supertest'
import { Redis } from 'ioredis'
import { responseCache, type ResponseCache } from '../../src/middleware.js'
import { memoryStore } from '../../src/stores/memory.js'
import { redisStore } from '../../src/stores/redis.js'
import type { Store } from '../../src/types.js'
import { envInt } from '../support/load.js'
import { getRedis } from '../support/servers.js'

const FULL = process.env.CACHET_FULL === '1'
const UNIQUE_URLS = envInt('CACHET_BOUNDS_URLS', 100_000)
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void
async function settledMemory(): Promise<{ heap: number; external: number }> {
  for (let i = 0; i < 4; i++) {
    gc()
    await sleep(20)
  }
  const m = process.memoryUsage()
  return { heap: m.heapUsed, external: m.arrayBuffers }
}

type Handler = (req: IncomingMessage, res: ServerResponse) => void

/**
 * One request through the middleware without TCP: a real IncomingMessage and ServerResponse on a
 * socket that discards what is written. Resolves the X-Cache label once the response finishes.
 */
function drive(cache: ResponseCache, handler: Handler, url: string, headers: Record<string, string> = {}): Promise<string> {
  // Keep the start of what is written: a hit writes its head as a list, which getHeader() cannot see.
  let head = ''
  const socket = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (head.length < 4096) head += chunk.toString('latin1')
      callback()
    },
  }) as unknown as Socket
  const req = new IncomingMessage(socket)
  req.method = 'GET'
  req.url = url
  req.headers = { host: 'bounds.test', ...headers }
  req.httpVersion = '1.1'
  req.httpVersionMajor = 1
  req.httpVersionMinor = 1
  req.complete = true
  req.push(null)
  const res = new ServerResponse(req)
  res.assignSocket(socket)
  return new Promise((resolve, reject) => {
    res.once('finish', () => resolve(/\r\nX-Cache: ([A-Z]+)\r\n/i.exec(head)?.[1] ?? 'none'))
    res.once('error', reject)
    cache(req, res, (error) => {
      if (error) return reject(error)
      handler(req, res)
    })
  })
}

describe('bounds', function () {
  this.timeout(120_000)

  describe('when 100,000 unique query strings arrive (memory store)', () => {
    it(`should keep the store within maxBytes and maxEntries for ${UNIQUE_URLS} unique URLs`, async () => {
      const maxBytes = 4 * 1024 * 1024
      const maxEntries = 20_000
      const store = memoryStore({ maxBytes, maxEntries })
      const cache = responseCache({ store })
      const body = Buffer.alloc(512, 'x')
      const handler: Handler = (_req, res) => {
        res.setHeader('Cache-Control', 'public, max-age=600')
        res.setHeader('Content-Type', 'text/plain')
        res.end(body)
      }
      const before = await settledMemory()
      let peakBytes = 0
      let peakEntries = 0
      const started = performance.now()
      const batch = 200
      for (let i = 0; i < UNIQUE_URLS; i += batch) {
        const work: Promise<string>[] = []
        for (let j = i; j < Math.min(i + batch, UNIQUE_URLS); j++) work.push(drive(cache, handler, `/search?q=${j}&page=${j % 7}`))
        const labels = await Promise.all(work)
        expect(labels.every((l) => l === 'MISS')).to.equal(true)
        const { bytes = 0, entries = 0 } = cache.stats()
        peakBytes = Math.max(peakBytes, bytes)
        peakEntries = Math.max(peakEntries, entries)
        expect(bytes, `after ${i + batch} URLs`).to.be.at.most(maxBytes)
        expect(entries).to.be.at.most(maxEntries)
      }
      const seconds = (performance.now() - started) / 1000
      const after = await settledMemory()
      const growth = after.heap + after.external - (before.heap + before.external)
      console.log(
        `      ${UNIQUE_URLS} unique URLs in ${seconds.toFixed(1)} s: peak store ${peakBytes} B / ${maxBytes} B, ${peakEntries} entries; ` +
          `heap+external growth ${(growth / 1e6).toFixed(1)} MB`,
      )
      expect(cache.stats().stores).to.equal(UNIQUE_URLS)
      // The most recent URL is still there, the first long gone.
      expect(await drive(cache, handler, `/search?q=${UNIQUE_URLS - 1}&page=${(UNIQUE_URLS - 1) % 7}`)).to.equal('HIT')
      expect(await drive(cache, handler, '/search?q=0&page=0')).to.equal('MISS')
      // What the process holds afterwards tracks the cap, not the traffic: JS objects cost more
      // than the store's estimate, so allow a few times the cap, far below 100,000 entries' worth.
      expect(growth).to.be.below(maxBytes * 4 + 16 * 1024 * 1024)
      await cache.close()
    })
  })

  describe('when a 50 MB response streams through', () => {
    const CHUNK = 64 * 1024
    const TOTAL = 50 * 1024 * 1024
    const MAX_BODY = 1024 * 1024

    /** The i-th chunk: a fresh buffer each time, content that depends on i (so order matters). */
    const chunkAt = (i: number) => {
      const b = Buffer.allocUnsafe(CHUNK)
      b.fill(i % 251)
      b.writeUInt32BE(i, 0)
      return b
    }
    const expectedHash = (() => {
      const h = createHash('sha256')
      for (let i = 0; i < TOTAL / CHUNK; i++) h.update(chunkAt(i))
      return h.digest('hex')
    })()

    /** Serve the stream; at a few points, pause, collect garbage and record what is still held. */
    async function transfer(withCache: boolean) {
      const cache = responseCache({ store: memoryStore(), maxBodySize: MAX_BODY })
      const held: number[] = []
      let baseline = { heap: 0, external: 0 }
      const checkpoints = new Set([8, 24, 200, 780]) // 0.5, 1.5, 12.5, 48.75 MiB written
      const app = express()
      if (withCache) app.use(cache)
      app.get('/big', async (_req, res) => {
        res.setHeader('Cache-Control', 'public, max-age=60')
        res.setHeader('Content-Type', 'application/octet-stream')
        for (let i = 0; i < TOTAL / CHUNK; i++) {
          if (checkpoints.has(i)) {
            // Let the client drain the socket, then see what stays reachable.
            await sleep(30)
            const now = await settledMemory()
            held.push(now.heap + now.external - (baseline.heap + baseline.external))
          }
          if (!res.write(chunkAt(i))) await once(res, 'drain')
        }
        res.end()
      })
      const server = http.createServer(app)
      server.listen(0, '127.0.0.1')
      await once(server, 'listening')
      const port = (server.address() as AddressInfo).port
      baseline = await settledMemory()
      const rssBefore = process.memoryUsage().rss
      let rssPeak = rssBefore
      const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, process.memoryUsage().rss)), 5)
      const get = () =>
        new Promise<{ hash: string; length: number; label: string | undefined }>((resolve, reject) => {
          http
            .get({ host: '127.0.0.1', port, path: '/big', agent: false }, (res) => {
              const h = createHash('sha256')
              let length = 0
              res.on('data', (chunk: Buffer) => {
                h.update(chunk)
                length += chunk.length
              })
              res.on('end', () => resolve({ hash: h.digest('hex'), length, label: res.headers['x-cache'] as string | undefined }))
              res.on('error', reject)
            })
            .on('error', reject)
        })
      try {
        const first = await get()
        clearInterval(sampler)
        checkpoints.clear()
        const second = withCache ? await get() : undefined
        return { first, second, held, rssPeak: rssPeak - rssBefore, stats: cache.stats() }
      } finally {
        clearInterval(sampler)
        server.closeAllConnections()
        server.close()
        await cache.close()
      }
    }

    it('should deliver it intact, store nothing, and hold no more than about maxBodySize while it streams', async function () {
      this.timeout(FULL ? 300_000 : 120_000)
      const control = await transfer(false)
      const cached = await transfer(true)
      const mb = (n: number) => (n / 1048576).toFixed(2)
      console.log(
        `      50 MiB stream: retained at 0.5/1.5/12.5/48.75 MiB — without cache ${control.held.map(mb).join('/')} MiB, ` +
          `with cache ${cached.held.map(mb).join('/')} MiB; sampled RSS peak +${mb(control.rssPeak)} MiB vs +${mb(cached.rssPeak)} MiB`,
      )
      expect(cached.first.length).to.equal(TOTAL)
      expect(cached.first.hash).to.equal(expectedHash)
      expect(cached.first.label).to.equal('MISS')
      expect(cached.second!.hash).to.equal(expectedHash)
      expect(cached.second!.label, 'not stored').to.equal('MISS')
      expect(cached.stats.entries).to.equal(0)
      expect(cached.stats.stores).to.equal(0)
      // Before the cap the copy is up to maxBodySize; after it, the copy is dropped. Compare
      // with the same transfer without the cache, allowing maxBodySize plus 2 MiB of slack.
      for (let i = 0; i < cached.held.length; i++) {
        expect(cached.held[i] - control.held[i], `checkpoint ${i}`).to.be.below(MAX_BODY + 2 * 1024 * 1024)
      }
      // After overflow nothing of the body may stay: the last two checkpoints hold what the control holds.
      expect(cached.held[3] - control.held[3]).to.be.below(2 * 1024 * 1024)
    })
  })

  describe('the variant cap (maxVariants)', () => {
    const counts = async (store: Store, cache: ResponseCache, redis?: Redis, prefix?: string) => {
      if (redis === undefined) return cache.stats().entries ?? NaN
      let n = 0
      let cursor = '0'
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
        cursor = next
        n += keys.length
      } while (cursor !== '0')
      void store
      return n
    }

    for (const kind of ['memory', 'redis'] as const) {
      for (const concurrent of [false, true]) {
        it(`should hold at most maxVariants variants per key on the ${kind} store (${concurrent ? 'concurrent' : 'sequential'} requests), never a wrong body`, async () => {
          let redis: Redis | undefined
          const prefix = `bounds-variants-${process.pid}-${Date.now()}:`
          let store: Store
          if (kind === 'redis') {
            const server = await getRedis()
            redis = new Redis({ host: '127.0.0.1', port: server.port })
            store = redisStore({ client: redis, prefix })
          } else {
            store = memoryStore()
          }
          // A generous storeTimeout: on a loaded machine a record update or an eviction must not
          // time out (fail open) and leave a variant the cap already dropped.
          const cache = responseCache({ store, maxVariants: 5, storeTimeout: '2s' })
          const app = express()
          app.use(cache)
          app.get('/r', (req, res) => {
            setTimeout(
              () =>
                res
                  .set('Cache-Control', 'public, max-age=60')
                  .set('Vary', 'X-V')
                  .send(`variant ${req.get('x-v')}`),
              5,
            )
          })
          const server = http.createServer(app).listen(0, '127.0.0.1')
          await once(server, 'listening')
          const agent = request(server)
          try {
            for (let round = 0; round < 3; round++) {
              const ask = (v: number) => agent.get('/r').set('X-V', String(v)).expect(200, `variant ${v}`)
              if (concurrent) await Promise.all(Array.from({ length: 20 }, (_, v) => ask(v + 1)))
              else for (let v = 1; v <= 20; v++) await ask(v)
              // One Vary record plus at most five variants, once the writes on their way have landed.
              let held = Infinity
              for (let wait = 0; wait < 60 && held > 6; wait++) {
                await sleep(50)
                held = await counts(store, cache, redis, prefix)
              }
              expect(held, `round ${round}`).to.be.at.most(6)
            }
          } finally {
            server.closeAllConnections()
            server.close()
            await Promise.resolve(cache.clear()).catch(() => undefined)
            await cache.close()
            redis?.disconnect()
          }
        })
      }
    }
  })

  describe('maxKeyLength', () => {
    it('should bypass a URL longer than maxKeyLength and cache one at the limit', async () => {
      const cache = responseCache({ store: memoryStore(), maxKeyLength: 256 })
      const handler: Handler = (_req, res) => {
        res.setHeader('Cache-Control', 'public, max-age=60')
        res.end('ok')
      }
      const atLimit = '/k?q=' + 'a'.repeat(256 - 5)
      expect(atLimit.length).to.equal(256)
      expect(await drive(cache, handler, atLimit)).to.equal('MISS')
      expect(await drive(cache, handler, atLimit)).to.equal('HIT')
      const over = atLimit + 'a'
      expect(await drive(cache, handler, over)).to.equal('BYPASS')
      expect(await drive(cache, handler, over)).to.equal('BYPASS')
      // A 4 KiB query (item 57c) with the default limit of 2048.
      const def = responseCache({ store: memoryStore() })
      expect(await drive(def, handler, '/k?q=' + 'b'.repeat(4096))).to.equal('BYPASS')
      expect(def.stats().entries).to.equal(0)
      expect(cache.stats().entries).to.equal(1)
    })

    it('should bypass when a custom key function returns a key longer than maxKeyLength', async () => {
      const cache = responseCache({ store: memoryStore(), maxKeyLength: 64, key: (req) => 'k:' + 'x'.repeat(100) + (req.url ?? '') })
      const handler: Handler = (_req, res) => {
        res.setHeader('Cache-Control', 'public, max-age=60')
        res.end('ok')
      }
      expect(await drive(cache, handler, '/short')).to.equal('BYPASS')
      expect(cache.stats().entries).to.equal(0)
    })
  })

  describe('coalescing waiters', () => {
    for (const kind of ['memory', 'redis'] as const) {
      it(`should release every waiter after lockTimeout when the leader hangs (${kind} store)`, async () => {
        let redis: Redis | undefined
        let store: Store
        if (kind === 'redis') {
          const server = await getRedis()
          redis = new Redis({ host: '127.0.0.1', port: server.port })
          store = redisStore({ client: redis, prefix: `bounds-coalesce-${process.pid}-${Date.now()}:` })
        } else {
          store = memoryStore()
        }
        const lockTimeout = 300
        const cache = responseCache({ store, lockTimeout: `${lockTimeout}ms` })
        let calls = 0
        const app = express()
        app.use(cache)
        app.get('/c', (_req, res) => {
          const n = ++calls
          // The leader hangs for 3 s; everyone after it answers at once.
          setTimeout(() => res.set('Cache-Control', 'public, max-age=60').send(`call ${n}`), n === 1 ? 3000 : 0)
        })
        const server = http.createServer(app).listen(0, '127.0.0.1')
        await once(server, 'listening')
        const port = (server.address() as AddressInfo).port
        const timed = () =>
          new Promise<number>((resolve, reject) => {
            const t0 = performance.now()
            http
              .get({ host: '127.0.0.1', port, path: '/c', agent: false }, (res) => {
                res.resume()
                res.on('end', () => resolve(performance.now() - t0))
              })
              .on('error', reject)
          })
        try {
          const leader = timed()
          await sleep(50)
          const waiters = await Promise.all(Array.from({ length: 30 }, timed))
          const worst = Math.max(...waiters)
          console.log(`      ${kind}: 30 waiters behind a hung leader, lockTimeout ${lockTimeout} ms: slowest waited ${worst.toFixed(0)} ms`)
          // Released at lockTimeout (plus scheduling), long before the leader's 3 s.
          expect(worst).to.be.below(lockTimeout + 1000)
          expect(worst).to.be.at.least(lockTimeout - 60)
          expect(await leader).to.be.at.least(2900)
        } finally {
          server.closeAllConnections()
          server.close()
          await Promise.resolve(cache.clear()).catch(() => undefined)
          await cache.close()
          redis?.disconnect()
        }
      })
    }
  })
})
