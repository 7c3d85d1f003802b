/** Conditional requests: the client's validators held aside while the app runs, matched against a response, and the 304s (RFC 9110 §13, §15.4.5). */
import type { IncomingHttpHeaders, ServerResponse } from 'node:http'
import fresh from 'fresh'
import { NOT_MODIFIED_FIELDS, type Prepared } from './entry.js'
import type { Context, Held } from './flow/state.js'

/** Conditional request fields the cache holds aside while the handler runs. */
export const HELD_CONDITIONALS = ['if-none-match', 'if-modified-since'] as const

/**
 * Hold the client's validators aside, so the app produces the full response that gets stored
 * (RFC 9111 §4.3.2 leaves the 304 to the cache).
 */
export function holdConditionals(ctx: Context): void {
  const h = ctx.req.headers
  ctx.conditionals = {}
  if (h['if-none-match'] !== undefined) ctx.conditionals['if-none-match'] = h['if-none-match']
  if (h['if-modified-since'] !== undefined) ctx.conditionals['if-modified-since'] = h['if-modified-since']
  delete h['if-none-match']
  delete h['if-modified-since']
}

/** Put the client's validators back, removing any the cache sent for revalidation. */
export function restoreConditionals(ctx: Context): void {
  const held = ctx.conditionals
  if (held === undefined) return
  const h = ctx.req.headers
  delete h['if-none-match']
  delete h['if-modified-since']
  if (held['if-none-match'] !== undefined) h['if-none-match'] = held['if-none-match']
  if (held['if-modified-since'] !== undefined) h['if-modified-since'] = held['if-modified-since']
}

export function hasConditionals(held: Held | undefined): held is Held {
  return held !== undefined && (held['if-none-match'] !== undefined || held['if-modified-since'] !== undefined)
}

/** RFC 9110 §13.1.1–2 against a stored entry: If-None-Match (weak comparison, lists, `*`), else If-Modified-Since. */
export function notModified(headers: IncomingHttpHeaders | Held, p: Prepared): boolean {
  if (headers['if-none-match'] === undefined && headers['if-modified-since'] === undefined) return false
  return fresh(
    { 'if-none-match': headers['if-none-match'], 'if-modified-since': headers['if-modified-since'] },
    {
      etag: p.etag,
      'last-modified': p.lastModified,
    },
  )
}

/** The same match against the response the app is producing. */
export function clientNotModified(conditionals: Held, res: ServerResponse): boolean {
  const tag = res.getHeader('etag')
  const lastModified = res.getHeader('last-modified') ?? res.getHeader('date')
  return fresh(
    { ...conditionals },
    {
      etag: typeof tag === 'string' ? tag : undefined,
      'last-modified': typeof lastModified === 'string' ? lastModified : undefined,
    },
  )
}

/**
 * Turn the response being produced into the 304 a cache sends (RFC 9110 §15.4.5): the fields a
 * stored 304 carries (the same list as a hit's, see entry.ts) and the cache's own outcome fields.
 */
export function toNotModified(res: ServerResponse, statusHeader: string | false): void {
  const own = statusHeader === false ? undefined : statusHeader.toLowerCase()
  for (const name of res.getHeaderNames()) {
    if (!NOT_MODIFIED_FIELDS.has(name) && name !== own && name !== 'cache-status') res.removeHeader(name)
  }
  res.statusCode = 304
}

/**
 * Turn a response that is not stored into the 304 the app itself would have sent had it seen
 * the client's validators (Express `res.send`): every field kept but those of the body.
 */
export function toNotModifiedAsApp(res: ServerResponse): void {
  for (const name of ['content-type', 'content-length', 'transfer-encoding']) res.removeHeader(name)
  res.statusCode = 304
}
