/** Forwarding purges to a CDN: every invalidation cachet runs is sent on to a Fastly- or Cloudflare-style purge API by onInvalidate. */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import express from 'express'
import { cacheRoute, invalidateTags, responseCache, type InvalidationEvent } from '../../src/index.js'

/**
 * Send tag purges to `purgeUrl` as `POST { "tags": [...], "soft": bool }` (Cloudflare's purge
 * API takes `{ "tags": [...] }`; Fastly's `POST /service/<id>/purge` takes `Surrogate-Key`).
 * Fire and forget: the CDN being slow never holds a write; a failure is logged.
 */
export function forwardTo(purgeUrl: string, log: (line: string) => void = console.error) {
  return function forward(event: InvalidationEvent): void {
    if (event.tags === undefined) return // paths purge by URL at a CDN: forward them too if yours needs it
    fetch(purgeUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'Surrogate-Key': event.tags.join(' ') },
      body: JSON.stringify({ tags: event.tags, soft: event.soft }),
    }).catch((error: Error) => log(`CDN purge failed: ${error.message}`))
  }
}

/** A tiny blog whose pages carry the tags of the posts they show; a PUT purges here and at the CDN. */
export function createApp(purgeUrl: string) {
  const posts = new Map([
    ['1', 'Hello'],
    ['2', 'Second post'],
  ])
  const cache = responseCache({ onInvalidate: forwardTo(purgeUrl), forwardTags: true })
  const app = express()
  app.use(express.json())
  app.use(cache)
  app.get('/posts', (_req, res) => {
    res.set('Cache-Control', 'public, max-age=60')
    res.set('Surrogate-Key', ['posts', ...[...posts.keys()].map((id) => `post:${id}`)].join(' '))
    res.json([...posts].map(([id, title]) => ({ id, title })))
  })
  app.get('/posts/:id', cacheRoute('1m', { tags: (req) => [`post:${(req as express.Request).params.id}`] }), (req, res) => {
    const title = posts.get(req.params.id)
    if (title === undefined) return void res.sendStatus(404)
    res.json({ id: req.params.id, title })
  })
  app.put('/posts/:id', async (req, res) => {
    posts.set(req.params.id, String(req.body?.title ?? ''))
    await invalidateTags([`post:${req.params.id}`])
    res.sendStatus(204)
  })
  return { app, cache }
}

// `tsx examples/cdn-purge/app.ts` serves it on PORT (default 3000), loopback only, with a stand-in
// purge API on another port that logs what it receives (set CDN_PURGE_URL for a real one).
if (import.meta.url === `file://${process.argv[1]}`) {
  let purgeUrl = process.env.CDN_PURGE_URL
  if (purgeUrl === undefined) {
    const standIn = http.createServer((req, res) => {
      let body = ''
      req.on('data', (chunk) => (body += chunk))
      req.on('end', () => {
        console.log(`stand-in CDN received a purge: ${body}`)
        res.end('{"success":true}')
      })
    })
    await new Promise<void>((resolve) => standIn.listen(0, '127.0.0.1', resolve))
    purgeUrl = `http://127.0.0.1:${(standIn.address() as AddressInfo).port}/purge`
  }
  const { app } = createApp(purgeUrl)
  const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo
    console.log(`http://127.0.0.1:${port}/posts (PUT /posts/1 purges post:1 here and at the CDN)`)
  })
}
