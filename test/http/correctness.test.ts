/** Wrong-body classes: each describe names one class of bug that must never come back, on memory, Redis and Memcached. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { expect } from 'chai'
import express from 'express'
import { Redis } from 'ioredis'
import { cacheRoute, invalidate } from '../../src/route.js'
import { responseCache } from '../../src/middleware.js'
import { redisStore } from '../../src/stores/redis.js'
import { jsonCoder } from '../../src/coders/json.js'
import { CorruptEntryError } from '../../src/entry.js'
import { hostPart, storageKey } from '../../src/key.js'
import type { Store } from '../../src/types.js'
import { responseEntry } from '../support/entries.js'
import type { RedisServer } from '../support/servers.js'
import { closeAll, eventually, landed, rawRequest, rawValues, serve, setup, sleep, storeFactories, type Harness, type StoreFactory } from '../support/app.js'

const STORES = storeFactories.filter((s) => s.name === 'memory' || s.name === 'redis' || s.name === 'memcached')

/** A handler gate: requests wait inside the handler until `size` are in or `ms` passed; counts the most at once. */
function barrier(size: number, ms = 400) {
  let active = 0
  let waiting: (() => void)[] = []
  const state = { most: 0, calls: 0 }
  const enter = () =>
    new Promise<void>((resolve) => {
      state.calls++
      active++
      state.most = Math.max(state.most, active)
      waiting.push(resolve)
      if (waiting.length >= size) {
        for (const w of waiting) w()
        waiting = []
      } else {
        setTimeout(() => {
          waiting = waiting.filter((w) => w !== resolve)
          resolve()
        }, ms)
      }
    }).then(() => void active--)
  return { state, enter }
}

for (const s of STORES) {
  describe(`wrong-body classes (on ${s.name})`, function () {
    this.timeout(20_000)
    afterEach(closeAll)

    describe('when a stale-while-revalidate refresh stores a response that varies on Cookie', () => {
      it('should store it under the variant of the request that triggered it, never for anonymous visitors', async () => {
        const h = await setup(s)
        h.O.script = (n, req) => ({
          headers: { 'Cache-Control': 'max-age=1, stale-while-revalidate=60', Vary: 'Cookie' },
          body: `v${n} for ${req.headers.cookie ?? 'anonymous'}`,
        })
        await h.get('/me', { Cookie: 'user=alice' }).expect(200, 'v1 for user=alice')
        h.clock.advance(2000)
        await h.get('/me', { Cookie: 'user=alice' }).expect('X-Cache', 'STALE').expect(200, 'v1 for user=alice')
        await eventually(() => h.O.calls === 2, 'the background refresh')
        await sleep(50)
        const anonymous = await h.get('/me')
        expect(anonymous.text).not.to.contain('alice')
        const alice = await h.get('/me', { Cookie: 'user=alice' })
        expect(alice.text).to.contain('alice')
      })
    })

    describe('when a client splits a header the response varies on into two lines', () => {
      it('should key the variant by the value the app reads, so it neither reaches nor plants another variant', async () => {
        const h = await setup(s)
        h.O.script = (n, req) => ({
          headers: { 'Cache-Control': 'max-age=60', Vary: 'User-Agent' },
          body: `v${n} ua=${req.headers['user-agent']}`,
        })
        // Node keeps only the first User-Agent line: the app sees "X".
        const split = await rawRequest(h.port, '/ua', { 'User-Agent': ['X', 'Y'] })
        expect(split.body.toString()).to.equal('v1 ua=X')
        // A client whose single line reads "X, Y" must get an answer made for "X, Y".
        const joined = await rawRequest(h.port, '/ua', { 'User-Agent': 'X, Y' })
        expect(joined.body.toString()).to.equal('v2 ua=X, Y')
        // And the plain "X" client shares the entry the app made for "X".
        const plain = await rawRequest(h.port, '/ua', { 'User-Agent': 'X' })
        expect(rawValues(plain.rawHeaders, 'x-cache')).to.deep.equal(['HIT'])
        expect(plain.body.toString()).to.equal('v1 ua=X')
      })
    })

    describe('when a response repeats a header field', () => {
      const routes = (app: express.Express) => {
        app.get('/append', (_req, res) => {
          res.set('Cache-Control', 'max-age=60, stale-while-revalidate=60')
          res.append('Link', '<a>; rel=a')
          res.append('Link', '<b>; rel=b')
          res.send('x')
        })
        app.get('/array', (_req, res) => {
          res.setHeader('Cache-Control', ['public', 'max-age=60'])
          res.setHeader('Content-Security-Policy', ["default-src 'self'", 'img-src *'])
          res.setHeader('ETag', '"e1"')
          res.send('x')
        })
        app.get('/raw', (_req, res) => {
          res.writeHead(200, ['Link', '<a>', 'Link', '<b>', 'Content-Type', 'text/plain', 'Cache-Control', 'max-age=60'])
          res.end('x')
        })
      }

      it('should replay every line, in order, on a HIT', async () => {
        const h = await setup(s, { routes })
        for (const p of ['/append', '/raw']) {
          const miss = await rawRequest(h.port, p)
          const hit = await rawRequest(h.port, p)
          expect(rawValues(hit.rawHeaders, 'x-cache'), p).to.deep.equal(['HIT'])
          expect(rawValues(hit.rawHeaders, 'link'), p).to.deep.equal(rawValues(miss.rawHeaders, 'link'))
          expect(rawValues(hit.rawHeaders, 'link'), p).to.have.length(2)
        }
        await rawRequest(h.port, '/array')
        const hit = await rawRequest(h.port, '/array')
        expect(rawValues(hit.rawHeaders, 'content-security-policy')).to.deep.equal(["default-src 'self'", 'img-src *'])
        expect(rawValues(hit.rawHeaders, 'cache-control')).to.deep.equal(['public', 'max-age=60'])
      })

      it('should replay every line of the fields a 304 carries', async () => {
        const h = await setup(s, { routes })
        await rawRequest(h.port, '/array')
        const notModified = await rawRequest(h.port, '/array', { 'If-None-Match': '"e1"' })
        expect(notModified.status).to.equal(304)
        expect(rawValues(notModified.rawHeaders, 'cache-control')).to.deep.equal(['public', 'max-age=60'])
      })

      it('should replay every line when serving stale and after revalidating', async () => {
        const h = await setup(s)
        h.O.script = (n) => ({
          status: n === 3 ? 304 : 200,
          headers: { 'Cache-Control': n === 1 ? 'max-age=1, stale-while-revalidate=5' : 'max-age=1', ETag: '"t"', Link: ['<a>', '<b>'] },
        })
        await rawRequest(h.port, '/r')
        h.clock.advance(2000)
        const stale = await rawRequest(h.port, '/r')
        expect(rawValues(stale.rawHeaders, 'x-cache')).to.deep.equal(['STALE'])
        expect(rawValues(stale.rawHeaders, 'link')).to.deep.equal(['<a>', '<b>'])
        await eventually(() => h.O.calls === 2, 'the background refresh')
        await sleep(50)
        h.clock.advance(2000)
        const revalidated = await rawRequest(h.port, '/r')
        expect(rawValues(revalidated.rawHeaders, 'x-cache')).to.deep.equal(['REVALIDATED'])
        expect(rawValues(revalidated.rawHeaders, 'link')).to.deep.equal(['<a>', '<b>'])
      })
    })

    describe('when a response is incomplete', () => {
      for (const [label, declared, body] of [
        ['shorter than its Content-Length', '10', 'abc'],
        ['longer than its Content-Length', '2', 'abcdef'],
      ] as const) {
        it(`should not store a body ${label}`, async () => {
          const h = await setup(s, {
            routes: (app, O) =>
              app.get('/cut', (_req, res) => {
                O.calls++
                res.setHeader('Cache-Control', 'max-age=60')
                res.setHeader('Content-Length', declared)
                res.end(body)
              }),
          })
          await rawRequest(h.port, '/cut', { Connection: 'close' }).catch(() => undefined)
          await sleep(50)
          await rawRequest(h.port, '/cut', { Connection: 'close' }).catch(() => undefined)
          expect(h.O.calls).to.equal(2)
        })
      }

      it('should not store a response whose connection closed before it ended', async () => {
        const h = await setup(s, {
          routes: (app, O) =>
            app.get('/slow', (req, res) => {
              O.calls++
              res.setHeader('Cache-Control', 'max-age=60')
              res.write('part one ')
              req.socket.destroy()
              setTimeout(() => res.end('part two'), 20)
            }),
        })
        await rawRequest(h.port, '/slow').catch(() => undefined)
        await sleep(100)
        await rawRequest(h.port, '/slow').catch(() => undefined)
        expect(h.O.calls).to.equal(2)
      })
    })

    describe('when a safe method other than GET or HEAD arrives', () => {
      for (const method of ['OPTIONS', 'TRACE']) {
        it(`should not invalidate on ${method} (RFC 9110 §9.2.1)`, async () => {
          const h = await setup(s)
          h.O.headers = { 'Cache-Control': 'max-age=60' }
          await h.get('/posts/42').expect(200, 'v1')
          const answer = await rawRequest(h.port, '/posts/42', {}, method)
          expect(answer.status).to.equal(200)
          await h.get('/posts/42').expect('X-Cache', 'HIT').expect(200, 'v1')
        })
      }
    })

    describe('when an invalidation runs while a request for the same key is computing', () => {
      for (const how of ['invalidate()', 'a POST to the same path']) {
        it(`should not store the old response after ${how} resolved`, async () => {
          let row = 'old'
          let release!: () => void
          const held = new Promise<void>((resolve) => (release = resolve))
          let calls = 0
          const h = await setup(s, {
            routes: (app) => {
              app.get('/posts/42', async (_req, res) => {
                calls++
                const read = row
                if (calls === 1) await held
                res.set('Cache-Control', 'max-age=60').send(read)
              })
              app.post('/posts/42', (_req, res) => {
                row = 'new'
                res.status(204).end()
              })
            },
          })
          const first = h.get('/posts/42')
          const pending = first.then((r) => r)
          await eventually(() => calls === 1, 'the first GET to reach its handler')
          if (how === 'invalidate()') {
            row = 'new'
            await invalidate('posts:*')
          } else {
            await h.agent.post('/posts/42').expect(204)
          }
          release()
          expect((await pending).text).to.equal('old')
          await sleep(50)
          const next = await h.get('/posts/42')
          expect(next.text).to.equal('new')
        })
      }
    })

    describe('when the app answers a revalidation with 304 and no Date', () => {
      it('should date the 304 when it was received, so the entry is fresh again (RFC 9111 §4.3.4)', async () => {
        const h = await setup(s)
        h.O.sendDate = false
        h.O.script = (n) => ({ status: n === 1 ? 200 : 304, headers: { 'Cache-Control': 'max-age=2', ETag: '"d"' } })
        await h.get('/d').expect(200, 'v1')
        h.clock.advance(3000)
        await h.get('/d').expect('X-Cache', 'REVALIDATED')
        await sleep(50)
        await h.get('/d').expect('X-Cache', 'HIT')
        await h.get('/d').expect('X-Cache', 'HIT')
        expect(h.O.calls).to.equal(2)
      })
    })

    describe('when a route is not stored', () => {
      it('should run six concurrent requests to a cacheRoute(false) route at once, not one after another', async () => {
        const gate = barrier(6)
        const h = await setup(s, {
          routes: (app) =>
            app.get('/never', cacheRoute(false), async (_req, res) => {
              await gate.enter()
              res.set('Cache-Control', 'max-age=60').send('x')
            }),
        })
        await Promise.all(Array.from({ length: 6 }, () => h.get('/never').expect(200)))
        expect(gate.state.most).to.equal(6)
      })

      for (const [label, headers] of [
        ['private', { 'Cache-Control': 'private, max-age=60' }],
        ['Set-Cookie', { 'Cache-Control': 'max-age=60', 'Set-Cookie': 'a=1' }],
        ['no freshness in spec mode', {}],
      ] as const) {
        it(`should remember a key whose response was not storable (${label}) and send the next wave straight to the app`, async () => {
          let gate = barrier(6)
          const h = await setup(s, {
            routes: (app) =>
              app.get('/pass', async (_req, res) => {
                await gate.enter()
                res.set(headers).send('x')
              }),
          })
          await Promise.all(Array.from({ length: 6 }, () => h.get('/pass').expect(200)))
          await sleep(50)
          gate = barrier(6)
          await Promise.all(Array.from({ length: 6 }, () => h.get('/pass').expect(200)))
          expect(gate.state.most).to.equal(6)
        })
      }

      it('should still answer a matching If-None-Match with 304, as the app alone would', async () => {
        const h = await setup(s, {
          routes: (app) => {
            app.get('/private', (_req, res) => {
              res.set({ 'Cache-Control': 'private', ETag: '"p1"' }).send('personal')
            })
            app.get('/off', cacheRoute(false), (_req, res) => {
              res.set({ ETag: '"o1"' }).send('off')
            })
          },
        })
        await h.get('/private', { 'If-None-Match': '"p1"' }).expect(304)
        await h.get('/off', { 'If-None-Match': '"o1"' }).expect(304)
        await h.get('/private', { 'If-None-Match': '"other"' }).expect(200, 'personal')
      })
    })

    describe('when the cache answers a client conditional on a miss', () => {
      it('should keep a custom status header on the 304', async () => {
        const h = await setup(s, { options: { statusHeader: 'X-My-Cache' } })
        h.O.headers = { 'Cache-Control': 'max-age=60', ETag: '"m1"' }
        const res = await h.get('/m', { 'If-None-Match': '"m1"' }).expect(304)
        expect(res.headers['x-my-cache']).to.equal('MISS')
      })
    })

    if (s.name !== 'memory') {
      describe('when an entry read back is not a response a plain GET may get', () => {
        const bad: [string, ReturnType<typeof responseEntry>][] = [
          ['Transfer-Encoding', { ...responseEntry('x'), headers: ['Content-Type', 'text/plain', 'Transfer-Encoding', 'chunked'] }],
          ['Connection', { ...responseEntry('x'), headers: ['Connection', 'close'] }],
          ['Keep-Alive', { ...responseEntry('x'), headers: ['Keep-Alive', 'timeout=5'] }],
          ['status 304', { ...responseEntry(''), status: 304 }],
          ['status 206', { ...responseEntry('x'), status: 206 }],
        ]
        for (const [label, entry] of bad) {
          it(`should treat an entry with ${label} as a miss, delete it and report it`, async () => {
            const errors: Error[] = []
            const h = await setup(s, { options: { onError: (e) => errors.push(e) } })
            h.O.headers = { 'Cache-Control': 'max-age=60' }
            const key = storageKey('bad:GET', hostPart(h.host))
            await h.created!.putRaw!(key, jsonCoder().encode(entry), 60_000)
            await h.get('/bad').expect(200, 'v1').expect('X-Cache', 'MISS')
            expect(
              errors.some((e) => e instanceof CorruptEntryError),
              'reported',
            ).to.equal(true)
          })
        }
      })
    }
  })
}

describe('wrong-body classes (HTTP semantics the app owns)', () => {
  afterEach(closeAll)

  describe('when a Range request with a stale If-Range misses', () => {
    it('should let express.static answer the full new version (RFC 9110 §13.1.5)', async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'cachet-range-'))
      try {
        writeFileSync(path.join(dir, 'file.txt'), 'version two, longer')
        const app = express()
        app.use(responseCache({ ttl: '1m' }))
        app.use(express.static(dir))
        const s = await serve(app)
        try {
          const res = await rawRequest(s.port, '/file.txt', { Range: 'bytes=0-3', 'If-Range': '"an-old-etag"' })
          expect(res.status).to.equal(200)
          expect(res.body.toString()).to.equal('version two, longer')
        } finally {
          await s.close()
        }
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    })
  })

  describe('when stats() is read', () => {
    it('should count landed writes apart from failed ones', async () => {
      const failing: Store = {
        get: async () => undefined,
        set: async () => {
          throw new Error('refused')
        },
        delete: async () => true,
        deleteMatching: async () => 0,
      }
      const cache = responseCache({ store: failing, ttl: '1m', onError: () => {} })
      const app = express()
      app.use(cache)
      app.get('/s/:n', (req, res) => void res.send(req.params.n))
      const served = await serve(app)
      try {
        for (let i = 0; i < 3; i++) await served.agent.get(`/s/${i}`).expect(200)
        await eventually(() => cache.stats().storeFailures === 3, 'three failed writes')
        expect(cache.stats().stores).to.equal(0)
      } finally {
        await served.close()
        await cache.close()
      }
    })

    it('should count a write as stored once it landed', async () => {
      const cache = responseCache({ ttl: '1m' })
      const app = express()
      app.use(cache)
      app.get('/s', (_req, res) => void res.send('x'))
      const served = await serve(app)
      try {
        await served.agent.get('/s').expect(200)
        expect(cache.stats().stores).to.equal(1)
        expect(cache.stats().storeFailures).to.equal(0)
      } finally {
        await served.close()
        await cache.close()
      }
    })
  })
})

describe('uncacheable routes across two processes sharing a real redis-server', function () {
  this.timeout(20_000)
  afterEach(closeAll)

  it('should send the next wave from both processes straight to the app once one of them saw the route was not storable', async () => {
    const redis = storeFactories.find((f) => f.name === 'redis') as StoreFactory
    let gate = barrier(6)
    const routes = (app: express.Express) =>
      app.get('/pass', async (_req, res) => {
        await gate.enter()
        res.set('Cache-Control', 'private, max-age=60').send('x')
      })
    const a = await setup(redis, { routes })
    const server = a.created!.server as RedisServer
    const client = new Redis(server.port, server.host, { maxRetriesPerRequest: 1 })
    client.on('error', () => {})
    try {
      const b = await setup(redis, { routes, store: redisStore({ client, prefix: a.created!.prefix! }) })
      // One process learns the route is not storable...
      await Promise.all(Array.from({ length: 6 }, () => a.get('/pass').expect(200)))
      await landed(a, 'pass:GET', a.host)
      // ...and both send the next wave to the app at once. The key carries the Host, so both
      // processes are asked for the same one.
      gate = barrier(6)
      await Promise.all([
        ...Array.from({ length: 3 }, () => a.get('/pass').expect(200)),
        ...Array.from({ length: 3 }, () => b.agent.get('/pass').set('Host', a.host).expect(200)),
      ])
      expect(gate.state.most).to.equal(6)
    } finally {
      client.disconnect()
    }
  })
})

describe('invalidate() on a store that does not answer (real redis-server)', function () {
  this.timeout(8000)
  afterEach(closeAll)

  it('should reject within about storeTimeout instead of resolving 0 after lockTimeout', async () => {
    const redis = storeFactories.find((f) => f.name === 'redis') as StoreFactory
    const h: Harness = await setup(redis, { options: { storeTimeout: '200ms', lockTimeout: '30s' } })
    const server = h.created!.server as RedisServer
    await server.pause()
    try {
      let outcome: unknown = 'pending'
      await h.cache.invalidate('posts:*').then(
        (n) => (outcome = n),
        (error: Error) => (outcome = error),
      )
      expect(outcome).to.be.instanceOf(Error)
    } finally {
      server.resume()
    }
  })

  it('should still resolve the count on a store that answers', async () => {
    const redis = storeFactories.find((f) => f.name === 'redis') as StoreFactory
    const h = await setup(redis)
    h.O.headers = { 'Cache-Control': 'max-age=60' }
    await h.get('/posts/1').expect(200)
    await h.get('/posts/2').expect(200)
    await sleep(50)
    expect(await h.cache.invalidate('posts:*')).to.equal(2)
  })
})
