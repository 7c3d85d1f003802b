/** The blog API of examples/invalidate, cached in a PostgreSQL table that every process shares. */
import pg from 'pg'
import { postgresStore, responseCache, type Store } from '../../src/index.js'
import { createApp as createBlogApp, type Post } from '../invalidate/app.js'

export type { Post }

/** The blog app on a store (here one made by postgresStore; any store works the same way). */
export function createApp(store: Store, posts?: Post[]) {
  return createBlogApp(responseCache({ store }), posts)
}

// `tsx examples/postgres/app.ts` runs it against DATABASE_URL (default postgres://localhost/postgres).
if (import.meta.url === `file://${process.argv[1]}`) {
  // The store takes a pool you own (and never ends it); postgresStore({ connectionString }) would open its own.
  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL ?? 'postgres://localhost/postgres', max: 5 })
  pool.on('error', (error) => console.error('postgres:', error.message))
  const { app } = createApp(postgresStore({ pool }, { prefix: 'blog:' }))
  const port = Number(process.env.PORT ?? 3000)
  app.listen(port, () => console.log(`http://localhost:${port}/posts (X-Cache shows MISS, then HIT)`))
}
