/** Scenarios the SQLite, PostgreSQL and DynamoDB store suites share: two processes on one store, and caching resuming after a fault. */
import assert from 'node:assert/strict'
import type { createApp as createBlogApp } from '../../examples/invalidate/app.js'
import { serve, type Harness } from './app.js'

type BlogApp = ReturnType<typeof createBlogApp>

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Resolves once `cache` has stored `count` responses (the write follows the response). */
export async function stored(cache: { stats(): { stores: number } }, count: number): Promise<void> {
  const deadline = Date.now() + 3000
  while (cache.stats().stores < count) {
    if (Date.now() > deadline) throw new Error('the response was not stored within 3 s')
    await sleep(5)
  }
}

/** GET fresh paths twice until the second answer is a HIT (the circuit breaker cools down first); 30 s at most. */
export async function cachingResumes(h: Harness): Promise<void> {
  const deadline = Date.now() + 30_000
  for (let n = 0; Date.now() < deadline; n++) {
    await h.get(`/resume/${n}`).timeout(5000).expect(200)
    if ((await h.get(`/resume/${n}`).timeout(5000).expect(200)).headers['x-cache'] === 'HIT') return
    await sleep(100)
  }
  throw new Error('caching did not resume within 30 s')
}

/**
 * Two blog apps (examples/invalidate) standing for two processes on one store: a response one
 * stores is a HIT in the other, and a POST to either invalidates both. Closes both caches.
 */
export async function expectSharedBlog(one: BlogApp, two: BlogApp): Promise<void> {
  const [a, b] = [await serve(one.app), await serve(two.app)]
  try {
    // One public host name for both processes: the Host is part of every key.
    const get = (served: typeof a, url: string) => served.agent.get(url).set('Host', 'blog.example')
    await get(a, '/posts')
      .expect('X-Cache', 'MISS')
      .expect(200, [{ id: 1, title: 'Hello' }])
    await stored(one.cache, 1)
    await get(b, '/posts').expect('X-Cache', 'HIT')
    await b.agent.post('/posts').set('Host', 'blog.example').send({ title: 'Two' }).expect(201)
    await get(a, '/posts')
      .expect('X-Cache', 'MISS')
      .expect(200, [
        { id: 1, title: 'Hello' },
        { id: 2, title: 'Two' },
      ])
    assert.equal(one.stats.listRenders + two.stats.listRenders, 2)
  } finally {
    await a.close()
    await b.close()
    await one.cache.clear()
    await one.cache.close()
    await two.cache.close()
  }
}
