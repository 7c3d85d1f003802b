/** cache.serve(app): fresh stored responses answered before the app (Express 5, Express 4, connect), everything else handed to it unchanged. */
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import { once } from 'node:events'
import { expect } from 'chai'
import express from 'express'
import express4 from 'express4'
import connect from 'connect'
import request from 'supertest'
import { responseCache, type ResponseCache } from '../../src/middleware.js'
import { getText, listenOn, type Listening } from '../support/app.js'
import { TLS_CERT, TLS_KEY } from '../support/tls.js'

type Listener = (req: http.IncomingMessage, res: http.ServerResponse) => void

/** An app whose first middleware counts the requests that reach it, with the cache inside. */
function site(kind: 'express5' | 'express4' | 'connect', cache: ResponseCache) {
  const seen = { app: 0, handler: 0 }
  const count = (_req: unknown, _res: unknown, next: () => void) => {
    seen.app++
    next()
  }
  const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
    seen.handler++
    if (req.method === 'POST') {
      res.statusCode = 201
      return void res.end('created')
    }
    res.setHeader('Cache-Control', 'max-age=60')
    res.setHeader('ETag', '"v1"')
    res.setHeader('Vary', 'Accept-Language')
    res.setHeader('Content-Type', 'text/plain')
    res.end(`page ${req.url} ${req.headers['accept-language'] ?? '-'}`)
  }
  if (kind === 'connect') {
    const app = connect()
    app.use(count)
    app.use(cache as unknown as connect.NextHandleFunction)
    app.use(handler)
    return { app: app as unknown as Listener, seen }
  }
  const app = kind === 'express5' ? express() : (express4() as unknown as express.Express)
  app.use(count)
  app.use(cache)
  app.use(handler)
  return { app: app as unknown as Listener, seen }
}

for (const kind of ['express5', 'express4', 'connect'] as const) {
  describe(`cache.serve(app) in front of ${kind}`, () => {
    let server: http.Server
    let listening: Listening
    let cache: ResponseCache
    let seen: { app: number; handler: number }
    let agent: ReturnType<typeof request>

    beforeEach(async () => {
      cache = responseCache()
      const built = site(kind, cache)
      seen = built.seen
      server = http.createServer(cache.serve(built.app))
      listening = await listenOn(server)
      agent = request(server)
    })
    afterEach(async () => {
      await listening.close()
      await cache.close()
    })

    it('should answer a fresh stored response without the app, with Age, X-Cache and Cache-Status', async () => {
      await agent.get('/posts/1').expect(200, 'page /posts/1 -').expect('X-Cache', 'MISS')
      expect(seen.app).to.equal(1)
      const hit = await agent.get('/posts/1').expect(200, 'page /posts/1 -').expect('X-Cache', 'HIT')
      expect(hit.headers.age).to.match(/^\d+$/)
      expect(hit.headers['cache-status']).to.match(/^cachet; hit/)
      expect(seen.app).to.equal(1)
      expect(cache.stats().hits).to.equal(1)
    })

    it('should answer 304s and HEAD from the front, and keep variants apart', async () => {
      await agent.get('/v').set('Accept-Language', 'fr').expect(200, 'page /v fr')
      await agent.get('/v').set('Accept-Language', 'fr').set('If-None-Match', '"v1"').expect(304)
      await agent.head('/v').set('Accept-Language', 'fr').expect(200).expect('X-Cache', 'HIT')
      expect(seen.app).to.equal(1)
      await agent.get('/v').set('Accept-Language', 'de').expect(200, 'page /v de').expect('X-Cache', 'MISS')
      expect(seen.app).to.equal(2)
    })

    it('should hand unsafe requests, misses and no-cache requests to the app unchanged', async () => {
      await agent.get('/p').expect('X-Cache', 'MISS')
      await agent.get('/p').set('Cache-Control', 'no-cache').expect(200)
      expect(seen.app).to.equal(2)
      await agent.post('/p').expect(201)
      expect(seen.app).to.equal(3)
      // The POST invalidated /p inside the app: the front door finds nothing now.
      await agent.get('/p').expect('X-Cache', 'MISS')
      expect(seen.app).to.equal(4)
    })

    it('should answer pipelined keep-alive requests in order', async () => {
      await agent.get('/k').expect('X-Cache', 'MISS')
      const { port } = listening
      const socket = net.connect(port, '127.0.0.1')
      await once(socket, 'connect')
      const host = `127.0.0.1:${port}`
      let text = ''
      socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')))
      socket.write(
        `GET /k HTTP/1.1\r\nHost: ${host}\r\n\r\nGET /other HTTP/1.1\r\nHost: ${host}\r\n\r\nGET /k HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      )
      await once(socket, 'end')
      const bodies = [...text.matchAll(/page \/\S+ -/g)].map((m) => m[0])
      expect(bodies).to.deep.equal(['page /k -', 'page /other -', 'page /k -'])
      expect([...text.matchAll(/X-Cache: (\w+)/gi)].map((m) => m[1])).to.deep.equal(['HIT', 'MISS', 'HIT'])
    })
  })
}

describe('cache.serve(app) on https.createServer', () => {
  const get = (port: number, path: string, headers: http.OutgoingHttpHeaders = {}) => getText(port, path, { headers, tls: true })

  it('should answer stored responses before the app, keyed as the app inside keys them (https)', async () => {
    const cache = responseCache()
    const { app, seen } = site('express5', cache)
    const { port, close } = await listenOn(https.createServer({ key: TLS_KEY, cert: TLS_CERT }, cache.serve(app)))
    try {
      const miss = await get(port, '/secure')
      expect([miss.status, miss.body, miss.headers['x-cache']]).to.deep.equal([200, 'page /secure -', 'MISS'])
      const hit = await get(port, '/secure')
      expect([hit.status, hit.body, hit.headers['x-cache']]).to.deep.equal([200, 'page /secure -', 'HIT'])
      const conditional = await get(port, '/secure', { 'If-None-Match': '"v1"' })
      expect(conditional.status).to.equal(304)
      expect(seen.app).to.equal(1)
      expect(cache.stats().hits).to.equal(2)
    } finally {
      await close()
      await cache.close()
    }
  })
})

describe('cache.serve(app) with an Express app that folds case', () => {
  it('should find what the app stored under its folded key', async () => {
    const cache = responseCache()
    const app = express()
    let handled = 0
    app.use(cache)
    app.get('/posts/:id', (_req, res) => void (handled++, res.set('Cache-Control', 'max-age=60').send('post')))
    const server = http.createServer(cache.serve(app))
    const { close } = await listenOn(server)
    try {
      const agent = request(server)
      await agent.get('/Posts/1').expect(200, 'post')
      await agent.get('/Posts/1').expect('X-Cache', 'HIT')
      expect(handled).to.equal(1)
    } finally {
      await close()
      await cache.close()
    }
  })

  it('should refuse something that is not a request listener', () => {
    expect(() => responseCache().serve(42 as never)).to.throw(TypeError, /request listener/)
  })
})
