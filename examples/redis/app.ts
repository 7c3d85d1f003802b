/** The blog API of examples/invalidate, cached in Redis: every process shares the cache and its invalidations. */
import { Redis } from 'ioredis'
import type { AddressInfo } from 'node:net'
import { redisStore, responseCache, type Store } from '../../src/index.js'
import { createApp as createBlogApp, type Post } from '../invalidate/app.js'

export type { Post }

/** The blog app on a Redis-backed store (any store works the same way). */
export function createApp(store: Store, posts?: Post[]) {
  return createBlogApp(responseCache({ store }), posts)
}

// `tsx examples/redis/app.ts` serves it on PORT (default 3000, loopback only) against REDIS_URL (default redis://127.0.0.1:6379).
if (import.meta.url === `file://${process.argv[1]}`) {
  // The store takes a client you own (and never closes it); redisStore({ url }) would open its own.
  const client = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 })
  client.on('error', (error) => console.error('redis:', error.message))
  const { app } = createApp(redisStore({ client }, { prefix: 'blog:' }))
  const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo
    console.log(`http://127.0.0.1:${port}/posts (X-Cache shows MISS, then HIT)`)
  })
}
