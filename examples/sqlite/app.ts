/** The blog API of examples/invalidate, cached in one SQLite file that every process on the host shares and that survives restarts. */
import { responseCache, sqliteStore, type Store } from '../../src/index.js'
import { createApp as createBlogApp, type Post } from '../invalidate/app.js'

export type { Post }

/** The blog app on a store (here one made by sqliteStore; any store works the same way). */
export function createApp(store: Store, posts?: Post[]) {
  return createBlogApp(responseCache({ store }), posts)
}

// `tsx examples/sqlite/app.ts` runs it on CACHE_FILE (default ./cache.db); start it twice with
// two PORTs to see one process's POST invalidate the other's cached /posts.
if (import.meta.url === `file://${process.argv[1]}`) {
  const store = sqliteStore({ path: process.env.CACHE_FILE ?? 'cache.db' }, { prefix: 'blog:', maxBytes: 64 * 1024 * 1024 })
  const { app } = createApp(store)
  const port = Number(process.env.PORT ?? 3000)
  app.listen(port, () => console.log(`http://localhost:${port}/posts (X-Cache shows MISS, then HIT)`))
}
