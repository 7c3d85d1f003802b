/** cachet without Express: a bare node:http server, the cache called as (req, res, next). */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { responseCache, type ResponseCache } from '../../src/index.js'

/**
 * The request listener: the cache answers what it can and calls the handler for the rest.
 * Freshness comes from the handler's own `Cache-Control`, as any HTTP cache reads it.
 */
export function createHandler(cache: ResponseCache = responseCache()) {
  const stats = { renders: 0 }

  function handler(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (req.url !== '/hello') {
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found')
      return
    }
    stats.renders++
    res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'public, max-age=60' })
    res.end(JSON.stringify({ hello: 'world', renders: stats.renders }))
  }

  function onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    cache(req, res, function next(error?: unknown) {
      if (error === undefined || error === null) return handler(req, res)
      res.writeHead(500, { 'Content-Type': 'text/plain' }).end('error')
    })
  }

  return { onRequest, cache, stats }
}

// `tsx examples/node-http/app.ts` serves it on PORT (default 3000), loopback only.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { onRequest } = createHandler()
  const server = http.createServer(onRequest)
  server.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo
    console.log(`http://127.0.0.1:${port}/hello (X-Cache shows MISS, then HIT)`)
  })
}
