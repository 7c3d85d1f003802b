/** cache.serve() in front of Koa and Fastify: hits answered before the framework, misses stored by the cache mounted inside it. */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { expect } from 'chai'
import Koa from 'koa'
import c2k from 'koa-connect'
import Fastify from 'fastify'
import middie from '@fastify/middie'
import { responseCache, type ResponseCache } from '../../src/middleware.js'
import { getText, listenOn } from '../support/app.js'

type Listener = (req: http.IncomingMessage, res: http.ServerResponse) => void

/** A GET's status, X-Cache and body. */
async function get(port: number, path: string, headers: http.OutgoingHttpHeaders = {}) {
  const res = await getText(port, path, { headers })
  return { status: res.status, cache: res.headers['x-cache'], body: res.body }
}

/** Three GETs of one path: a miss stored inside the framework, then a hit and a 304 from the front. */
async function expectFrontDoor(port: number, cache: ResponseCache, reached: () => number): Promise<void> {
  expect(await get(port, '/posts/1')).to.deep.equal({ status: 200, cache: 'MISS', body: 'post 1' })
  expect(reached()).to.equal(1)
  expect(await get(port, '/posts/1')).to.deep.equal({ status: 200, cache: 'HIT', body: 'post 1' })
  expect((await get(port, '/posts/1', { 'If-None-Match': '"p1"' })).status).to.equal(304)
  expect(reached()).to.equal(1)
  expect(cache.stats().hits).to.equal(2)
  expect(await get(port, '/posts/2')).to.deep.equal({ status: 200, cache: 'MISS', body: 'post 2' })
  expect(reached()).to.equal(2)
}

describe('cache.serve() in front of Koa', () => {
  it('should answer hits before Koa, with the cache mounted in Koa (koa-connect) storing misses', async () => {
    const cache = responseCache()
    let reached = 0
    const app = new Koa()
    app.use(async (_ctx, next) => {
      reached++
      await next()
    })
    app.use(c2k(cache as unknown as Parameters<typeof c2k>[0]))
    app.use((ctx) => {
      ctx.set('Cache-Control', 'max-age=60')
      ctx.set('ETag', `"p${ctx.path.split('/')[2]}"`)
      ctx.type = 'text/plain'
      ctx.body = `post ${ctx.path.split('/')[2]}`
    })
    const server = http.createServer(cache.serve(app.callback() as Listener))
    const { port, close } = await listenOn(server)
    try {
      await expectFrontDoor(port, cache, () => reached)
    } finally {
      await close()
      await cache.close()
    }
  })
})

describe('cache.serve() in front of Fastify', () => {
  it('should answer hits before Fastify (serverFactory), with the cache mounted in Fastify (@fastify/middie) storing misses', async () => {
    const cache = responseCache()
    let reached = 0
    const fastify = Fastify({
      serverFactory: (handler) => http.createServer(cache.serve(handler as Listener)),
    })
    fastify.addHook('onRequest', async () => {
      reached++
    })
    await fastify.register(middie)
    fastify.use(cache as unknown as Parameters<typeof fastify.use>[1])
    fastify.get('/posts/:id', async (request, reply) => {
      const { id } = request.params as { id: string }
      reply.header('Cache-Control', 'max-age=60').header('ETag', `"p${id}"`).type('text/plain')
      return `post ${id}`
    })
    await fastify.listen({ port: 0, host: '127.0.0.1' })
    const port = (fastify.server.address() as AddressInfo).port
    try {
      await expectFrontDoor(port, cache, () => reached)
    } finally {
      await fastify.close()
      await cache.close()
    }
  })
})
