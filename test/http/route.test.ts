/** cacheRoute(): route ttl against the response's headers, per-route key, status header and cookie opt-in. */
import { expect } from 'chai'
import express from 'express'
import http from 'node:http'
import request from 'supertest'
import { cacheRoute, invalidate, memoryStore, responseCache, type ResponseCache } from '../../src/index.js'

function serve(configure: (app: express.Express) => void, cache: ResponseCache) {
  const app = express()
  app.use(cache)
  configure(app)
  const server = http.createServer(app).listen(0, '127.0.0.1')
  return {
    agent: request(server),
    close: async () => {
      server.close()
      await cache.close()
    },
  }
}

describe('cacheRoute()', () => {
  let now = 1_700_000_000_000
  const clock = () => now
  const fresh = () => responseCache({ store: memoryStore({ now: clock }), now: clock })

  describe('when the response says nothing about freshness', () => {
    it('should store it for the route ttl, over the global ttl', async () => {
      let calls = 0
      const { agent, close } = serve(
        (app) => app.get('/r', cacheRoute('10s'), (_req, res) => res.send(`v${++calls}`)),
        responseCache({ ttl: '1h', store: memoryStore({ now: clock }), now: clock }),
      )
      try {
        await agent.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
        now += 9_000
        await agent.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
        now += 2_000 // 11 s: past the route ttl, well within the global hour
        await agent.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
      } finally {
        await close()
      }
    })
  })

  describe('when the response carries its own max-age', () => {
    it('should use the response max-age, not the route ttl', async () => {
      let calls = 0
      const { agent, close } = serve(
        (app) => app.get('/r', cacheRoute('1h'), (_req, res) => res.set('Cache-Control', 'max-age=5').send(`v${++calls}`)),
        fresh(),
      )
      try {
        await agent.get('/r').expect(200, 'v1')
        now += 6_000
        await agent.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
      } finally {
        await close()
      }
    })
    it('should still never store no-store, whatever the route ttl', async () => {
      let calls = 0
      const { agent, close } = serve((app) => app.get('/r', cacheRoute('1h'), (_req, res) => res.set('Cache-Control', 'no-store').send(`v${++calls}`)), fresh())
      try {
        await agent.get('/r').expect(200, 'v1')
        await agent.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
      } finally {
        await close()
      }
    })
  })

  describe('when the route has a key of its own', () => {
    it('should look the request up again under that key and store it there', async () => {
      let calls = 0
      const byLang = cacheRoute('1m', { key: (req) => `greeting:${String(req.headers['x-lang'] ?? 'en')}` })
      const cache = fresh()
      const { agent, close } = serve((app) => app.get('/hello', byLang, (req, res) => res.send(`${req.headers['x-lang'] ?? 'en'}-${++calls}`)), cache)
      try {
        await agent.get('/hello?utm=1').set('X-Lang', 'de').expect(200, 'de-1').expect('X-Cache', 'MISS')
        // Another URL, same route key: a hit.
        await agent.get('/hello?utm=2').set('X-Lang', 'de').expect(200, 'de-1').expect('X-Cache', 'HIT')
        await agent.get('/hello').set('X-Lang', 'fr').expect(200, 'fr-2').expect('X-Cache', 'MISS')
        expect(await invalidate('greeting:de')).to.equal(1)
        await agent.get('/hello').set('X-Lang', 'de').expect(200, 'de-3').expect('X-Cache', 'MISS')
      } finally {
        await close()
      }
    })
  })

  describe('when the route names its own status header', () => {
    it('should report the outcome under that name on misses and on hits', async () => {
      const { agent, close } = serve((app) => app.get('/r', cacheRoute('1m', { statusHeader: 'X-Route-Cache' }), (_req, res) => res.send('x')), fresh())
      try {
        const res = await agent.get('/r').expect(200).expect('X-Route-Cache', 'MISS')
        expect(res.headers['x-cache']).to.equal(undefined)
        // Hits are answered before routing: the entry carries the route's choice.
        const hit = await agent.get('/r').expect(200).expect('X-Route-Cache', 'HIT')
        expect(hit.headers['x-cache']).to.equal(undefined)
      } finally {
        await close()
      }
    })
  })

  describe('when requests carry a Cookie', () => {
    it('should not store what only the ttl fallback allows, unless the route opts in with allowCookies', async () => {
      let calls = 0
      const { agent, close } = serve((app) => {
        app.get('/plain', cacheRoute('1m'), (_req, res) => res.send(`p${++calls}`))
        app.get('/shared', cacheRoute('1m', { allowCookies: true }), (_req, res) => res.send(`s${++calls}`))
      }, fresh())
      try {
        await agent.get('/plain').set('Cookie', 'sid=1').expect(200, 'p1')
        await agent.get('/plain').set('Cookie', 'sid=1').expect(200, 'p2').expect('X-Cache', 'MISS')
        await agent.get('/shared').set('Cookie', 'sid=1').expect(200, 's3')
        await agent.get('/shared').set('Cookie', 'sid=2').expect(200, 's3').expect('X-Cache', 'HIT')
      } finally {
        await close()
      }
    })
  })

  describe('when no responseCache() is mounted before it', () => {
    it('should pass the request through untouched', async () => {
      let calls = 0
      const app = express()
      app.get('/r', cacheRoute('1m'), (_req, res) => res.send(`v${++calls}`))
      const server = http.createServer(app).listen(0, '127.0.0.1')
      try {
        const res = await request(server).get('/r').expect(200, 'v1')
        expect(res.headers['x-cache']).to.equal(undefined)
        await request(server).get('/r').expect(200, 'v2')
      } finally {
        server.close()
      }
    })
  })
})
