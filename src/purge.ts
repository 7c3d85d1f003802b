/** purgeHandler(): a middleware an app mounts to take purges over HTTP — `PURGE <path>` and a JSON `POST` naming keys, patterns or tags — behind a required authorize() callback. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { primaryKey, routingOf } from './key.js'
import { openCaches, type ResponseCache } from './middleware.js'
import { assertPattern } from './pattern.js'
import { assertKnownOptions, describe } from './validate.js'
import { checkTags } from './storage.js'

type Next = (error?: unknown) => void

export interface PurgeHandlerOptions {
  /**
   * Decides whether a request may purge (a shared secret, an internal network, …). Required:
   * a refused request gets 401 (no `Authorization` header) or 403, and changes nothing.
   */
  authorize: (req: IncomingMessage) => boolean | Promise<boolean>
  /** The cache to purge. @default every open responseCache() of the process */
  cache?: ResponseCache
  /** Largest JSON body read, in bytes. @default 65_536 */
  maxBodySize?: number
}

/** What a JSON `POST` may name (Cloudflare's purge-API shape). */
export interface PurgeRequest {
  keys?: string[]
  patterns?: string[]
  tags?: string[]
  soft?: boolean
}

/** The answer to an accepted purge. */
export interface PurgeResult {
  invalidated: { keys: string[]; patterns: string[]; tags: string[] }
  soft: boolean
}

/**
 * A middleware that purges on request:
 *
 * - `PURGE /posts/42` purges that path's key family (every query string, spelling, variant and
 *   host), or, when the request carries a `Surrogate-Key` header, the tags it names instead;
 *   `Soft-Purge: 1` makes it soft.
 * - `POST` with a JSON body `{ "keys": [...], "patterns": [...], "tags": [...], "soft": true }`.
 *
 * It answers JSON saying what was invalidated, 400 for a malformed request, 503 when a store
 * could not do it. Other methods go on to `next()`.
 *
 * ```ts
 * app.use('/_cache', purgeHandler({ authorize: (req) => req.headers.authorization === `Bearer ${token}` }))
 * ```
 */
export function purgeHandler(options: PurgeHandlerOptions) {
  if (options === null || typeof options !== 'object' || typeof options.authorize !== 'function') {
    throw new TypeError(`purgeHandler: option "authorize" must be a function, got ${describe(options?.authorize)}`)
  }
  assertKnownOptions('purgeHandler', options, ['authorize', 'cache', 'maxBodySize'])
  const maxBodySize = options.maxBodySize ?? 65_536
  if (!Number.isSafeInteger(maxBodySize) || maxBodySize < 1) {
    throw new TypeError(`purgeHandler: option "maxBodySize" must be a positive integer, got ${describe(options.maxBodySize)}`)
  }
  const caches = () => (options.cache === undefined ? [...openCaches] : [options.cache])

  return function purgeHandler(req: IncomingMessage, res: ServerResponse, next: Next): void {
    if (req.method !== 'PURGE' && req.method !== 'POST') return next()
    void answer(req, res).catch(next)
  }

  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let allowed = false
    try {
      allowed = (await options.authorize(req)) === true
    } catch {
      allowed = false
    }
    if (!allowed) return send(res, req.headers.authorization === undefined ? 401 : 403, { error: 'not allowed to purge' })
    let purge: Required<PurgeRequest>
    try {
      purge = req.method === 'PURGE' ? fromPurge(req) : fromBody(await body(req, maxBodySize))
    } catch (error) {
      return send(res, 400, { error: (error as Error).message })
    }
    try {
      const all = caches()
      const invalidateOptions = { soft: purge.soft }
      await Promise.all(all.flatMap((cache) => purge.patterns.map((pattern) => cache.invalidate(pattern, invalidateOptions))))
      await Promise.all(all.flatMap((cache) => purge.keys.map((key) => cache.delete(key))))
      if (purge.tags.length > 0) await Promise.all(all.map((cache) => cache.invalidateTags(purge.tags, invalidateOptions)))
    } catch (error) {
      return send(res, 503, { error: `purge failed: ${(error as Error).message}` })
    }
    const result: PurgeResult = { invalidated: { keys: purge.keys, patterns: purge.patterns, tags: purge.tags }, soft: purge.soft }
    send(res, 200, result)
  }
}

/** `PURGE <path>`: the tags of its Surrogate-Key header, or else the path's key family. */
function fromPurge(req: IncomingMessage): Required<PurgeRequest> {
  const soft = req.headers['soft-purge'] === '1'
  const named = req.headers['surrogate-key']
  if (typeof named === 'string' && named.trim() !== '') return { keys: [], patterns: [], tags: checkTags(named.trim().split(/[ \t]+/)), soft }
  const url = req.url ?? '/'
  const q = url.indexOf('?')
  const primary = primaryKey('GET', q === -1 ? url : url.slice(0, q), routingOf(req))
  if (primary === undefined) throw new Error(`cannot purge ${JSON.stringify(url)}: not a path`)
  return { keys: [], patterns: [`${primary}#*`, `${primary}?*`], tags: [], soft }
}

/** A JSON `POST`: `{ keys, patterns, tags, soft }`, each list of non-empty strings. */
function fromBody(text: string): Required<PurgeRequest> {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    throw new Error('the body must be JSON: { "keys": [...], "patterns": [...], "tags": [...], "soft": true }')
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('the body must be a JSON object')
  const v = value as Record<string, unknown>
  for (const name of Object.keys(v)) {
    if (!['keys', 'patterns', 'tags', 'soft'].includes(name)) throw new Error(`unknown field "${name}"`)
  }
  const list = (name: string): string[] => {
    const items = v[name]
    if (items === undefined) return []
    if (!Array.isArray(items) || !items.every((item) => typeof item === 'string' && item !== ''))
      throw new Error(`"${name}" must be a list of non-empty strings`)
    return items as string[]
  }
  const patterns = list('patterns')
  const keys = list('keys')
  for (const pattern of patterns) assertPattern(pattern)
  for (const key of keys) assertPattern(key, 'key')
  const tags = list('tags')
  if (v.soft !== undefined && typeof v.soft !== 'boolean') throw new Error('"soft" must be true or false')
  if (patterns.length + keys.length + tags.length === 0) throw new Error('nothing to purge: name keys, patterns or tags')
  return { keys, patterns, tags: tags.length === 0 ? [] : checkTags(tags), soft: v.soft === true }
}

/** The request body as text: an already parsed one (express.json()) or read from the stream. */
function body(req: IncomingMessage, max: number): Promise<string> {
  const parsed = (req as { body?: unknown }).body
  if (parsed !== undefined && typeof parsed === 'object' && parsed !== null && !Buffer.isBuffer(parsed)) return Promise.resolve(JSON.stringify(parsed))
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (chunk: Buffer) => {
      size += chunk.length
      if (size > max) {
        reject(new Error(`the body is larger than ${max} bytes`))
        req.destroy()
        return
      }
      chunks.push(chunk)
    })
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    req.on('error', reject)
  })
}

function send(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value)
  res.statusCode = status
  res.setHeader('Content-Type', 'application/json; charset=utf-8')
  res.setHeader('Cache-Control', 'no-store')
  res.setHeader('Content-Length', Buffer.byteLength(text))
  res.end(text)
}
