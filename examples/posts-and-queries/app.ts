/** One store for both caches: a POST drops the cached GET /posts response and the cached listPosts() query with one invalidate('posts:*'). */
import type { AddressInfo } from 'node:net'
import express from 'express'
import { cacheRoute, cached, createCache, invalidate, memoryStore, responseCache, type Store } from '../../src/index.js'

export interface Post {
  id: number
  title: string
}

/**
 * Build the app on one store (memory by default; pass a redisStore() or memcachedStore() to
 * share it between processes). `posts` stands for the database.
 */
export function createApp(store: Store = memoryStore(), posts: Post[] = [{ id: 1, title: 'Hello' }]) {
  const stats = { queries: 0, renders: 0 }
  const responses = responseCache({ store })
  const values = createCache({ store, ttl: '5m' })

  // The query, cached under `posts:list:<page>` (namespace + arguments): `posts:*` covers it.
  const listPosts = cached(
    async function listPosts(page: number): Promise<Post[]> {
      stats.queries++
      return posts.slice((page - 1) * 10, page * 10)
    },
    { cache: values, namespace: 'posts:list' },
  )

  const app = express()
  app.use(express.json())
  app.use(responses)
  // The response, cached under `posts:GET#<host>`; its handler runs the (cached) query.
  app.get('/posts', cacheRoute('5m'), async (req, res) => {
    stats.renders++
    res.json(await listPosts(Number(req.query.page ?? 1)))
  })
  // An extra page that uses the query without the response cache (never stored as a response).
  app.get('/summary', cacheRoute(false), async (_req, res) => {
    res.json({ firstPage: (await listPosts(1)).length })
  })
  app.post('/posts', async (req, res) => {
    const post = { id: posts.length + 1, title: String(req.body?.title ?? 'untitled') }
    posts.push(post)
    // ONE call: drops the stored GET /posts responses and the stored listPosts() results alike.
    await invalidate('posts:*')
    res.status(201).json(post)
  })

  const close = async () => {
    await responses.close()
    await values.close()
  }
  return { app, stats, listPosts, close }
}

// `tsx examples/posts-and-queries/app.ts` serves it on PORT (default 3000).
if (import.meta.url === `file://${process.argv[1]}`) {
  const { app } = createApp()
  const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo
    console.log(`http://127.0.0.1:${port}/posts — POST /posts {"title": "…"} invalidates both caches`)
  })
}
