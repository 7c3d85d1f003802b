/** A small blog API: reads are cached, writes invalidate what they change. */
import express from 'express'
import type { AddressInfo } from 'node:net'
import { cacheRoute, invalidate, responseCache, type ResponseCache } from '../../src/index.js'

export interface Post {
  id: number
  title: string
}

/**
 * Build the app on a cache. `posts` stands for the database: pass the same array to two apps
 * on one shared store (Redis, Memcached) to play two processes.
 */
export function createApp(cache: ResponseCache = responseCache(), posts: Post[] = [{ id: 1, title: 'Hello' }]) {
  const app = express()
  const stats = { listRenders: 0 }
  app.use(express.json())
  app.use(cache)

  app.get('/posts', cacheRoute('5m'), (req, res) => {
    stats.listRenders++
    res.json(posts)
  })
  app.get('/posts/:id', cacheRoute('5m'), (req, res) => {
    const post = posts.find((p) => p.id === Number(req.params.id))
    if (post === undefined) return res.status(404).json({ error: 'not found' })
    res.json(post)
  })
  app.post('/posts', async (req, res) => {
    const post = { id: posts.length + 1, title: String(req.body?.title ?? 'untitled') }
    posts.push(post)
    // Drops /posts, /posts?page=2, /posts/1 ... in every cache of this process; with a shared
    // store (Redis, Memcached) every other process sees it too.
    await invalidate('posts:*')
    res.status(201).json(post)
  })
  return { app, cache, stats }
}

// `tsx examples/invalidate/app.ts` serves it on PORT (default 3000), loopback only. Then
// `curl -X POST -H 'Content-Type: application/json' -d '{"title":"Two"}' http://127.0.0.1:3000/posts`
// and GET /posts again: MISS, with the new post.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { app } = createApp()
  const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo
    console.log(`http://127.0.0.1:${port}/posts (X-Cache shows MISS, then HIT)`)
  })
}
