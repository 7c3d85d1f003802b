/** The smallest useful setup: one cache for the app, a ttl per route, the memory store. */
import express from 'express'
import type { AddressInfo } from 'node:net'
import { cacheRoute, responseCache, type ResponseCache } from '../../src/index.js'

export function createApp(cache: ResponseCache = responseCache()) {
  const app = express()
  let renders = 0
  app.use(cache)
  // Cached for 30 s: the handler runs once, repeats are answered from the cache.
  app.get('/time', cacheRoute('30s'), (req, res) => {
    renders++
    res.json({ renders, at: new Date().toISOString() })
  })
  // Never cached, whatever the global settings say.
  app.get('/live', cacheRoute(false), (req, res) => {
    res.json({ now: Date.now() })
  })
  return { app, cache, renders: () => renders }
}

// `tsx examples/basic/app.ts` serves it on PORT (default 3000), loopback only.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { app } = createApp()
  const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo
    console.log(`http://127.0.0.1:${port}/time (X-Cache shows MISS, then HIT)`)
  })
}
