/** The blog API of examples/invalidate, cached in Memcached: invalidation by namespace generations, seen by every process. */
import type { AddressInfo } from 'node:net'
import { memcachedStore, responseCache, type Store } from '../../src/index.js'
import { createApp as createBlogApp, type Post } from '../invalidate/app.js'

export type { Post }

/**
 * The blog app on a Memcached-backed store. Memcached cannot list keys: `invalidate('posts:*')`
 * replaces the generation token of the `posts:` namespace, which makes every cached /posts…
 * response unreachable in one SET. A pattern like 'posts:4*' is widened to that namespace; '*:GET' is refused with an error.
 */
export function createApp(store: Store, posts?: Post[]) {
  return createBlogApp(responseCache({ store }), posts)
}

// `tsx examples/memcached/app.ts` serves it on PORT (default 3000, loopback only) against MEMCACHED_SERVERS (default 127.0.0.1:11211).
if (import.meta.url === `file://${process.argv[1]}`) {
  const store = memcachedStore({ servers: process.env.MEMCACHED_SERVERS ?? '127.0.0.1:11211' }, { prefix: 'blog:' })
  const { app } = createApp(store)
  const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo
    console.log(`http://127.0.0.1:${port}/posts (X-Cache shows MISS, then HIT)`)
  })
}
