/**
 * Load integrity: many connections, thousands of URLs in random query order, Vary variants,
 * GET/HEAD/conditional/POST, invalidations alongside — and every response must be the one made
 * for the request that got it. Counts come from the environment (CACHET_FULL=1 for the full run).
 */
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { expect } from 'chai'
import express from 'express'
import { responseCache } from '../../src/middleware.js'
import { envInt, runLoad, summarize } from '../support/load.js'
import { checkResponse, makeRequest, random, startSite } from './site.js'
import { STORE_NAMES, openStore } from './stores.js'

const FULL = process.env.CACHET_FULL === '1'
/**
 * The issue's minimums are 200 connections × 20,000 requests over 2,000 URLs: the full run goes
 * beyond them; the default (inside `npm test`) keeps the connections and URLs and halves the
 * request count to stay well inside the time budget on a busy two-core machine.
 */
const REQUESTS = envInt('CACHET_LOAD_REQUESTS', FULL ? 30_000 : 10_000)
const CONNECTIONS = envInt('CACHET_LOAD_CONNECTIONS', 200)
const URLS = envInt('CACHET_LOAD_URLS', 2_000)
/** A pattern invalidation every this many ms while the load runs. */
const INVALIDATE_EVERY_MS = envInt('CACHET_LOAD_INVALIDATE_MS', 20)
const SEED = envInt('CACHET_LOAD_SEED', 20_260_101)
/**
 * This suite checks that every answer is the right one, not store latency. With 200 connections
 * on a busy two-core machine one turn of the event loop can take longer than the 200 ms default,
 * so a memcached write (two round trips) times out five times in a row, the breaker opens and the
 * run measures the machine instead (seen in about 1 run in 8 with one core kept busy alongside).
 * Store timeouts and the breaker have suites of their own (faults.test.ts).
 */
const STORE_TIMEOUT = '2s'

if (FULL && (REQUESTS < 20_000 || CONNECTIONS < 200 || URLS < 2_000)) {
  throw new Error('CACHET_FULL=1 runs at least 20,000 requests over 200 connections and 2,000 URLs')
}

describe('load integrity', function () {
  this.timeout(180_000)

  for (const name of STORE_NAMES) {
    describe(`on the ${name} store`, () => {
      it(`should answer ${REQUESTS} requests over ${CONNECTIONS} connections and ${URLS} URLs, each with its own response`, async () => {
        const opened = await openStore(name)
        const errors: Error[] = []
        const cache = responseCache({ store: opened.store, storeTimeout: STORE_TIMEOUT, onError: (error) => errors.push(error) })
        const site = await startSite(cache)
        const rand = random(SEED)
        let invalidations = 0
        let invalidationFailures = 0
        let running = true
        const pending = new Set<Promise<unknown>>()
        const timer = setInterval(() => {
          if (!running) return
          // A path and everything below it, with every query string and variant.
          const kind = 'nvlb'[Math.floor(rand() * 4)]
          const n = Math.floor(rand() * Math.max(1, Math.floor(URLS / 8)))
          const work = cache.invalidate(`${kind}:${n}:*`).then(
            () => void invalidations++,
            () => void invalidationFailures++,
          )
          pending.add(work)
          void work.finally(() => pending.delete(work))
        }, INVALIDATE_EVERY_MS)
        try {
          const result = await runLoad({
            port: site.port,
            connections: CONNECTIONS,
            requests: REQUESTS,
            requestTimeoutMs: 10_000,
            maxDurationMs: 150_000,
            next: () => makeRequest(rand, URLS),
            check: checkResponse,
          })
          running = false
          await Promise.all(pending)
          const kinds = [...new Set(errors.map((e) => `${e.name}: ${e.message}`))].slice(0, 5)
          console.log(
            `      ${summarize(name, result)}; ${invalidations} invalidations; ${errors.length} store errors${kinds.length > 0 ? ` (${kinds.join('; ')})` : ''}`,
          )
          expect(result.samples, 'failures').to.deep.equal([])
          expect(result.completed).to.equal(REQUESTS)
          expect(result.wrong).to.equal(0)
          expect(result.errors).to.equal(0)
          expect(result.hangs).to.equal(0)
          expect(
            Object.keys(result.statuses)
              .map(Number)
              .every((s) => s === 200 || s === 304),
          ).to.equal(true)
          expect(invalidationFailures).to.equal(0)
          expect(invalidations).to.be.greaterThan(0)
          // The cache was actually in the path: a good share of the answers came from it.
          expect(result.cache.HIT ?? 0, 'hits').to.be.greaterThan(REQUESTS * 0.1)
        } finally {
          running = false
          clearInterval(timer)
          await site.close()
          await cache.close()
          await opened.dispose()
        }
      })
    })
  }
})

describe('body integrity', () => {
  for (const name of STORE_NAMES) {
    describe(`when the handler reuses its write buffer once the write completed (${name} store)`, () => {
      it('should replay exactly the bytes the first client received', async () => {
        const opened = await openStore(name)
        const cache = responseCache({ store: opened.store })
        const app = express()
        app.use(cache)
        app.get('/reuse', (_req, res) => {
          // Legal for a writer: after the write callback the chunk has been handed to the socket.
          const buffer = Buffer.from('first-chunk|')
          res.set('Cache-Control', 'public, max-age=60').type('text/plain')
          res.write(buffer, () => {
            buffer.fill('#')
            res.end(buffer)
          })
        })
        const server = http.createServer(app).listen(0, '127.0.0.1')
        await once(server, 'listening')
        const port = (server.address() as AddressInfo).port
        const get = () =>
          new Promise<{ label: string | undefined; body: string }>((resolve, reject) => {
            http
              .get({ host: '127.0.0.1', port, path: '/reuse', agent: false }, (res) => {
                let body = ''
                res.on('data', (chunk: Buffer) => (body += chunk.toString('latin1')))
                res.on('end', () => resolve({ label: res.headers['x-cache'] as string | undefined, body }))
              })
              .on('error', reject)
          })
        try {
          const first = await get()
          expect(first.body).to.equal('first-chunk|############')
          let second = await get()
          for (let i = 0; i < 20 && second.label !== 'HIT'; i++) second = await get()
          expect(second.label).to.equal('HIT')
          expect(second.body).to.equal(first.body)
        } finally {
          server.closeAllConnections()
          server.close()
          await cache.close()
          await opened.dispose()
        }
      })
    })
  }
})
