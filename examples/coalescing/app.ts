/** Cross-process coalescing: processes sharing a Redis store send one request per key to the origin, not one per process or per client. */
import express from 'express'
import { Redis } from 'ioredis'
import type { AddressInfo } from 'node:net'
import { redisStore, responseCache, type Store } from '../../src/index.js'

/** Calls that reached the origin (shared by the apps of one test; per process in production). */
export interface OriginCalls {
  calls: number
}

/**
 * One process of the app: a cache on `store` in front of a slow origin (`delayMs`). Give every
 * process a store on the same Redis with the same prefix (and, as behind one load balancer, the
 * same Host, which is part of every key): a miss takes the store's lock, the
 * other processes' misses for that key wait for the entry it writes instead of calling the
 * origin too (up to `lockTimeout`, default 5 s).
 */
export function createApp(store: Store, origin: OriginCalls = { calls: 0 }, delayMs = 1000) {
  const cache = responseCache({ store })
  const app = express()
  app.use(cache)
  app.get('/expensive', (req, res) => {
    const call = ++origin.calls
    setTimeout(function answer() {
      res.set('Cache-Control', 'public, max-age=30')
      res.json({ call, pid: process.pid })
    }, delayMs)
  })
  return { app, cache, origin }
}

// `PORT=3001 tsx examples/coalescing/app.ts` and `PORT=3002 tsx examples/coalescing/app.ts`: two
// processes on REDIS_URL (default redis://127.0.0.1:6379), loopback only. The Host is part of every
// key, so send both the one Host a load balancer would: `curl -sH 'Host: api.example'
// 127.0.0.1:3001/expensive & curl -sH 'Host: api.example' 127.0.0.1:3002/expensive`: both answers
// carry the same call and pid.
if (import.meta.url === `file://${process.argv[1]}`) {
  const client = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 })
  client.on('error', (error) => console.error('redis:', error.message))
  const { app } = createApp(redisStore({ client }, { prefix: 'coalescing:' }))
  const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo
    console.log(`http://127.0.0.1:${port}/expensive (pid ${process.pid})`)
  })
}
