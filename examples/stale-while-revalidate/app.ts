/** stale-while-revalidate (RFC 5861 §3): a slow origin, answered at once from a stale entry while one background refresh runs. */
import express from 'express'
import type { AddressInfo } from 'node:net'
import { responseCache, type ResponseCache } from '../../src/index.js'

export interface Options {
  /** The cache (tests pass one on a fake clock). @default responseCache() */
  cache?: ResponseCache
  /** How long the origin takes to build the report, in ms. @default 2000 */
  delayMs?: number
}

/**
 * `/report` takes `delayMs` to build and says: fresh for 10 s, then usable stale for 60 s
 * more while it is rebuilt. After the 10 s every request is answered from the stale copy
 * (`X-Cache: STALE`) without waiting; one background request per key rebuilds it.
 */
export function createApp(options: Options = {}) {
  const cache = options.cache ?? responseCache()
  const delayMs = options.delayMs ?? 2000
  const origin = { started: 0, finished: 0 }
  const app = express()
  app.use(cache)
  app.get('/report', (req, res) => {
    const version = ++origin.started
    setTimeout(function built() {
      origin.finished++
      res.set('Cache-Control', 'public, max-age=10, stale-while-revalidate=60')
      res.json({ version })
    }, delayMs)
  })
  return { app, cache, origin }
}

// `tsx examples/stale-while-revalidate/app.ts` serves it on PORT (default 3000), loopback only.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { app } = createApp()
  const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo
    console.log(`http://127.0.0.1:${port}/report (2 s MISS, then HIT; after 10 s STALE at once, and a new version soon after)`)
  })
}
