/** A blog API cached in Memcached: invalidation by namespace generations, seen by every process at once. */
import express from 'express'
import { cacheRoute, invalidate, memcachedStore, responseCache } from '../../src/index.js'
import type { Store } from '../../src/index.js'

export interface Post {
  id: number
  title: string
}

/**
 * Build the app on a store. `posts` stands for the database the processes share; pass the same
 * array to two apps to play two processes behind the same memcached servers.
 */
export function createApp(store: Store, posts: Post[] = [{ id: 1, title: 'Hello' }]) {
  const app = express()
  const stats = { listRenders: 0 }
  const cache = responseCache({ store })
  app.use(express.json())
  app.use(cache)

  app.get('/posts', cacheRoute('30s'), (req, res) => {
    stats.listRenders++
    res.json(posts)
  })
  app.get('/posts/:id', cacheRoute('30s'), (req, res) => {
    const post = posts.find((p) => p.id === Number(req.params.id))
    if (post === undefined) return res.status(404).json({ error: 'not found' })
    res.json(post)
  })
  app.post('/posts', async (req, res) => {
    const post = { id: posts.length + 1, title: String(req.body?.title ?? 'untitled') }
    posts.push(post)
    // Memcached cannot list keys: this bumps the generation of the `posts:` namespace, which
    // makes every cached /posts... response unreachable in one SET. Patterns like 'posts:4*'
    // are refused with an error rather than silently ignored.
    await invalidate('posts:*')
    res.status(201).json(post)
  })
  return { app, cache, stats }
}

// `tsx examples/memcached/app.ts` runs it against MEMCACHED_SERVERS (default 127.0.0.1:11211).
if (import.meta.url === `file://${process.argv[1]}`) {
  const store = memcachedStore({ servers: process.env.MEMCACHED_SERVERS ?? '127.0.0.1:11211' }, { prefix: 'blog:' })
  const { app } = createApp(store)
  const port = Number(process.env.PORT ?? 3000)
  app.listen(port, () => console.log(`http://localhost:${port}/posts (X-Cache shows MISS, then HIT)`))
}
