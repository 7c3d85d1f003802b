/**
 * The echo site the load and fault suites drive: every response carries a digest of what the
 * handler saw (path, sorted query, the request headers it varies on), so the client can tell
 * whether the response it got was made for its own request.
 */
import { createHash } from 'node:crypto'
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import express from 'express'
import type { ResponseCache } from '../../src/middleware.js'
import type { LoadRequest, LoadResponse } from '../support/load.js'

/** The four kinds of path: no Vary, Vary: X-Variant, Vary: Accept-Language, and both. */
const KINDS = ['n', 'v', 'l', 'b'] as const
type Kind = (typeof KINDS)[number]
const VARY: Record<Kind, string[]> = {
  n: [],
  v: ['x-variant'],
  l: ['accept-language'],
  b: ['accept-language', 'x-variant'],
}

/** RFC 9111 §4.1 lets a cache fold whitespace around commas; the handler folds the same way. */
const normalise = (value: string | string[] | undefined) =>
  value === undefined
    ? '!'
    : (Array.isArray(value) ? value.join(',') : value)
        .split(',')
        .map((s) => s.trim())
        .join(',')

/** Stable sort of `a=1&b=2` by name, as the client expects the handler to see it. */
function sortedQuery(query: string): string {
  if (query === '') return ''
  const params = query.split('&')
  const name = (p: string) => (p.includes('=') ? p.slice(0, p.indexOf('=')) : p)
  return params
    .map((p, i) => ({ p, i }))
    .sort((x, y) => (name(x.p) < name(y.p) ? -1 : name(x.p) > name(y.p) ? 1 : x.i - y.i))
    .map((x) => x.p)
    .join('&')
}

/** What a request should get back: the digest text, the digest, and the whole body. */
export function expected(path: string, query: string, headers: Record<string, string | string[] | undefined>) {
  const kind = (path.split('/')[1] ?? 'n') as Kind
  const vary = VARY[kind] ?? []
  let text = `${path}?${sortedQuery(query)}`
  for (const name of vary) text += `|${name}=${normalise(headers[name])}`
  const digest = createHash('sha256').update(text).digest('hex').slice(0, 32)
  // A body length of its own per request, so a wrong body is never the same length by accident.
  const body = `${text}\n${digest}\n${'.'.repeat(parseInt(digest.slice(0, 2), 16) * 4)}`
  return { text, digest, body, vary }
}

/** The handler: echo, cacheable for a minute, with a strong ETag derived from the digest. */
export function echo(delayMs = 0): express.RequestHandler {
  return function echoHandler(req, res) {
    const raw = req.originalUrl
    const q = raw.indexOf('?')
    const path = q === -1 ? raw : raw.slice(0, q)
    const query = q === -1 ? '' : raw.slice(q + 1)
    const e = expected(path, query, req.headers)
    const send = () => {
      res.setHeader('Content-Type', 'text/plain; charset=utf-8')
      res.setHeader('X-Digest', e.digest)
      if (req.method === 'GET' || req.method === 'HEAD') {
        res.setHeader('Cache-Control', 'public, max-age=60')
        res.setHeader('ETag', `"${e.digest}"`)
        if (e.vary.length > 0) res.setHeader('Vary', e.vary.map((v) => (v === 'x-variant' ? 'X-Variant' : 'Accept-Language')).join(', '))
      }
      res.end(req.method === 'HEAD' ? undefined : e.body)
    }
    if (delayMs > 0) setTimeout(send, delayMs)
    else send()
  }
}

export interface Site {
  server: http.Server
  port: number
  close(): Promise<void>
}

/** Express 5: cache → echo, listening on 127.0.0.1 (one server, so one Host for every key). */
export async function startSite(cache: ResponseCache, delayMs = 0): Promise<Site> {
  const app = express()
  app.use(cache)
  app.use(echo(delayMs))
  return serveSite(app)
}

/** Serve `app` on a free 127.0.0.1 port, with keep-alive long enough for a load run. */
export async function serveSite(app: http.RequestListener): Promise<Site> {
  const server = http.createServer(app)
  server.keepAliveTimeout = 30_000
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as AddressInfo).port
  return {
    server,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
}

/** A small seeded PRNG (mulberry32): the same run every time for the same seed. */
export function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export type Shape = 'get' | 'head' | 'match' | 'nomatch' | 'post'

export interface Meta {
  shape: Shape
  path: string
  query: string
  expect: ReturnType<typeof expected>
}

const VARIANTS = ['a', 'b', 'c', undefined]
// Two spellings of one list: the cache must treat them as one variant, the handler folds them too.
const LANGUAGES = ['en', 'de', 'fr-CH, fr;q=0.9', 'fr-CH,fr;q=0.9', undefined]

/** URL number `u` of `urls`: one of four kinds of path, three parameters in a random order. */
export function makeRequest(rand: () => number, urls: number, mix: Partial<Record<Shape, number>> = {}): LoadRequest {
  const u = Math.floor(rand() * urls)
  const kind = KINDS[u % 4]
  const path = `/${kind}/${Math.floor(u / 4) % Math.max(1, Math.floor(urls / 8))}`
  const params = [`a=${u}`, `b=${u % 5}`, `c=z%20${u % 3}`]
  for (let i = params.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[params[i], params[j]] = [params[j], params[i]]
  }
  const query = params.join('&')
  const headers: Record<string, string> = {}
  const variant = VARIANTS[Math.floor(rand() * VARIANTS.length)]
  const language = LANGUAGES[Math.floor(rand() * LANGUAGES.length)]
  if (variant !== undefined) headers['x-variant'] = variant
  if (language !== undefined) headers['accept-language'] = language
  const e = expected(path, query, headers)
  const weights = { get: 70, head: 10, match: 10, nomatch: 5, post: 5, ...mix }
  let pick = rand() * Object.values(weights).reduce((a, b) => a + b, 0)
  let shape: Shape = 'get'
  for (const [name, w] of Object.entries(weights) as [Shape, number][]) {
    if ((pick -= w) < 0) {
      shape = name
      break
    }
  }
  if (shape === 'match') headers['if-none-match'] = `"x", "${e.digest}"`
  if (shape === 'nomatch') headers['if-none-match'] = `"not-${e.digest}"`
  const method = shape === 'head' ? 'HEAD' : shape === 'post' ? 'POST' : 'GET'
  const meta: Meta = { shape, path, query, expect: e }
  return { method, path: `${path}?${query}`, headers, meta }
}

/** Does the response belong to the request that got it? undefined when it does. */
export function checkResponse(request: LoadRequest, response: LoadResponse): string | undefined {
  const { shape, expect: e } = request.meta as Meta
  const label = response.headers['x-cache']
  if (shape === 'match') {
    if (response.status !== 304) return `expected 304, got ${response.status}`
    if (response.headers.etag !== `"${e.digest}"`) return `304 for another entry: ETag ${response.headers.etag}`
    if (response.body.length !== 0) return '304 with a body'
    return undefined
  }
  if (response.status !== 200) return `expected 200, got ${response.status}`
  if (response.headers['x-digest'] !== e.digest) return `X-Digest ${response.headers['x-digest']} ≠ ${e.digest} (${e.text})`
  if (shape === 'post') {
    if (label !== 'BYPASS') return `POST labelled ${label}`
  } else if (label !== 'HIT' && label !== 'MISS') {
    return `GET/HEAD labelled ${label}`
  }
  if (shape === 'head') {
    if (response.body.length !== 0) return 'HEAD with a body'
    // A HEAD miss runs the handler, which sends no body and so no length; a HEAD hit has the GET's.
    const length = response.headers['content-length']
    if (length !== undefined && Number(length) !== Buffer.byteLength(e.body)) return `HEAD Content-Length ${length}`
    return undefined
  }
  if (response.body.toString('utf8') !== e.body) return `body for another request: ${response.body.toString('utf8').split('\n')[0]}`
  return undefined
}
