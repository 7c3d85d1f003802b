/** Per-route keys: cacheRoute(ttl, { key }) decides which requests share one cached response. */
import express from 'express'
import type { IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { cacheRoute, invalidate, responseCache, type ResponseCache } from '../../src/index.js'

/** The request's URL, parsed (the key function gets the bare node:http request). */
function urlOf(req: IncomingMessage): URL {
  return new URL(req.url ?? '/', 'http://localhost')
}

/**
 * One entry per article, whatever the query string: links from newsletters and ads add
 * `?utm_source=…&ref=…`, which would otherwise make a new cache entry for every campaign.
 */
export function articleKey(req: IncomingMessage): string {
  const slug = urlOf(req).pathname.split('/')[2] ?? ''
  return `articles:${encodeURIComponent(slug)}`
}

/** One entry per search term, case and surrounding spaces ignored; every other parameter ignored. */
export function searchKey(req: IncomingMessage): string {
  const q = (urlOf(req).searchParams.get('q') ?? '').trim().toLowerCase()
  return `search:${encodeURIComponent(q)}`
}

/** Build the app on a cache. `articles` stands for the database. */
export function createApp(cache: ResponseCache = responseCache()) {
  const articles = new Map<string, string>([['hello', 'Hello, world']])
  const stats = { articleRenders: 0, searchRenders: 0 }
  const app = express()
  app.use(express.json())
  app.use(cache)

  app.get('/articles/:slug', cacheRoute('10m', { key: articleKey }), (req, res) => {
    stats.articleRenders++
    const title = articles.get(req.params.slug)
    if (title === undefined) return res.status(404).json({ error: 'not found' })
    res.json({ slug: req.params.slug, title })
  })
  app.get('/search', cacheRoute('1m', { key: searchKey }), (req, res) => {
    stats.searchRenders++
    const q = String(req.query.q ?? '')
      .trim()
      .toLowerCase()
    res.json({ q, results: [...articles].filter(([, title]) => title.toLowerCase().includes(q)).map(([slug]) => slug) })
  })
  app.put('/articles/:slug', async (req, res) => {
    articles.set(req.params.slug, String(req.body?.title ?? ''))
    // With a custom key the automatic invalidation (of /articles/<slug> under the default key)
    // misses this entry: name the custom key. Without `*` it drops the key with all its variants.
    await invalidate(`articles:${encodeURIComponent(req.params.slug)}`)
    await invalidate('search:*')
    res.status(204).end()
  })
  return { app, cache, stats }
}

// `tsx examples/route-keys/app.ts` serves it on PORT (default 3000), loopback only.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { app } = createApp()
  const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo
    console.log(`http://127.0.0.1:${port}/articles/hello?utm_source=mail (then ?utm_source=ad: HIT, the same entry)`)
  })
}
