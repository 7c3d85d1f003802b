/** The `surrogate` option: Surrogate-Capability announced, Surrogate-Control obeyed and taken off. */
import { expect } from 'chai'
import express from 'express'
import http from 'node:http'
import request from 'supertest'
import { memoryStore, responseCache, type CacheOptions } from '../../src/index.js'

interface Reply {
  cc?: string
  sc?: string
}

function serve(options: CacheOptions, reply: Reply) {
  let now = 1_700_000_000_000
  const clock = () => now
  const seen: http.IncomingHttpHeaders[] = []
  const cache = responseCache({ store: memoryStore({ now: clock }), now: clock, ...options })
  const app = express()
  app.use(cache)
  app.get('/r', (req, res) => {
    seen.push({ ...req.headers })
    if (reply.cc !== undefined) res.set('Cache-Control', reply.cc)
    if (reply.sc !== undefined) res.set('Surrogate-Control', reply.sc)
    res.send(`v${seen.length}`)
  })
  const server = http.createServer(app).listen(0, '127.0.0.1')
  return {
    agent: request(server),
    seen,
    advance: (ms: number) => void (now += ms),
    close: async () => {
      server.close()
      await cache.close()
    },
  }
}

describe('surrogate option (Surrogate-Control, W3C Edge Architecture)', () => {
  it('is off by default: Surrogate-Control is neither obeyed nor removed, and nothing is announced', async () => {
    const s = serve({}, { cc: 'no-store', sc: 'max-age=60' })
    try {
      const res = await s.agent.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      expect(res.headers['surrogate-control']).to.equal('max-age=60')
      await s.agent.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
      expect(s.seen[0]['surrogate-capability']).to.equal(undefined)
    } finally {
      await s.close()
    }
  })

  it('announces Surrogate-Capability with its device token to the app', async () => {
    for (const [option, token] of [
      [true, 'cachet'],
      ['edge-1', 'edge-1'],
    ] as const) {
      const s = serve({ surrogate: option }, { cc: 'max-age=60' })
      try {
        await s.agent.get('/r').set('Surrogate-Capability', 'cdn="Surrogate/1.0"').expect(200)
        expect(s.seen[0]['surrogate-capability']).to.equal(`cdn="Surrogate/1.0", ${token}="Surrogate/1.0"`)
      } finally {
        await s.close()
      }
    }
  })

  it('stores on Surrogate-Control: max-age over Cache-Control: no-store, which still reaches the client', async () => {
    const s = serve({ surrogate: true }, { cc: 'no-store', sc: 'max-age=60' })
    try {
      const miss = await s.agent.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS').expect('Cache-Control', 'no-store')
      expect(miss.headers['surrogate-control']).to.equal(undefined)
      s.advance(59_000)
      const hit = await s.agent.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT').expect('Cache-Control', 'no-store')
      expect(hit.headers['surrogate-control']).to.equal(undefined)
      s.advance(2_000)
      await s.agent.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
    } finally {
      await s.close()
    }
  })

  it('takes its freshness from Surrogate-Control: max-age even when Cache-Control allows longer', async () => {
    const s = serve({ surrogate: true }, { cc: 'max-age=3600', sc: 'max-age=5' })
    try {
      await s.agent.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      s.advance(4_000)
      await s.agent.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      s.advance(2_000)
      await s.agent.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
    } finally {
      await s.close()
    }
  })

  it('does not store on Surrogate-Control: no-store, whatever Cache-Control says', async () => {
    const s = serve({ surrogate: true }, { cc: 'public, max-age=60', sc: 'no-store' })
    try {
      const res = await s.agent.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      expect(res.headers['surrogate-control']).to.equal(undefined)
      await s.agent.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
    } finally {
      await s.close()
    }
  })

  it('obeys members targeted at its token first and forwards what is meant for others', async () => {
    const s = serve({ surrogate: 'edge-1' }, { cc: 'no-store', sc: 'no-store, max-age=60;edge-1, max-age=5;cdn' })
    try {
      const res = await s.agent.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      expect(res.headers['surrogate-control']).to.equal('no-store, max-age=5;cdn')
      const hit = await s.agent.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(hit.headers['surrogate-control']).to.equal('no-store, max-age=5;cdn')
    } finally {
      await s.close()
    }
  })

  it('ignores members targeted at other devices', async () => {
    const s = serve({ surrogate: true }, { cc: 'no-store', sc: 'max-age=60;cdn' })
    try {
      const res = await s.agent.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      expect(res.headers['surrogate-control']).to.equal('max-age=60;cdn')
      await s.agent.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
    } finally {
      await s.close()
    }
  })

  it('never stores a Cache-Control: private response, whatever Surrogate-Control says', async () => {
    const s = serve({ surrogate: true }, { cc: 'private', sc: 'max-age=60' })
    try {
      await s.agent.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      await s.agent.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
    } finally {
      await s.close()
    }
  })
})
