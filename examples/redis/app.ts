/** A blog API cached in Redis: every app instance (process) shares the cache and its invalidations. */
import express from 'express'
import { Redis } from 'ioredis'
import { cacheRoute, invalidate, redisStore, responseCache } from '../../src/index.js'
import type { Store } from '../../src/index.js'

export interface Post {
  id: number
  title: string
}

/**
 * Build the app on a store. `posts` stands for the database the processes share; pass the same
 * array to two apps to play two processes behind one Redis.
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
    // Removes /posts, /posts?page=2, /posts/1 ... from Redis, so every process sees the change.
    await invalidate('posts:*')
    res.status(201).json(post)
  })
  return { app, cache, stats }
}

// `tsx examples/redis/app.ts` runs it against REDIS_URL (default redis://127.0.0.1:6379).
if (import.meta.url === `file://${process.argv[1]}`) {
  // The store takes a client you own (and never closes it); redisStore({ url }) would open its own.
  const client = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: 1 })
  client.on('error', (error) => console.error('redis:', error.message))
  const { app } = createApp(redisStore({ client }, { prefix: 'blog:' }))
  const port = Number(process.env.PORT ?? 3000)
  app.listen(port, () => console.log(`http://localhost:${port}/posts (X-Cache shows MISS, then HIT)`))
}
