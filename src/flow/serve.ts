/** Serve: replay a stored response (whole, 304, or ranges) and say what the cache did (the status header, Cache-Status, Age). */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { appendCacheStatus, cacheStatusMember, type CacheStatusParams, type ForwardReason } from '../cache-status.js'
import { hasConditionals, notModified } from '../conditional.js'
import { bodyIn, formFor, type Form } from '../compress.js'
import { CorruptEntryError, SLOTS, currentAge, notModifiedHeaders, prepare, prepareForm, type Prepared, type ReplayHead } from '../entry.js'
import type { Config, RouteConfig } from '../options.js'
import { firstValue } from '../policy.js'
import { rangeResponse, type RangeAnswer } from '../range.js'
import { asError } from '../storage.js'
import type { ResponseEntry } from '../types.js'
import type { HeadDecision } from '../capture.js'
import { endRequest, startRequest } from '../diagnostics.js'
import { foundKey, type Found } from './lookup.js'
import { REPLAYING, debug, staleOf, type CacheStatus, type Context, type Instance, type Next } from './state.js'

/** How a stored response is replayed: its age, the outcome it reports, and for which route. */
export interface Replay {
  ageMs: number
  label: 'HIT' | 'STALE'
  route: RouteConfig | undefined
  /** Answered with the response another request for the key just produced. */
  collapsed?: boolean
}

/**
 * Serve what a lookup found; false when it cannot be written (Node refuses a header it holds),
 * in which case the entry is reported, deleted, and the request goes on as a miss.
 */
export function serve(ctx: Context, found: Found, how: Replay): boolean {
  const { cache, req, res } = ctx
  // A restarted request's watcher is installed already: what goes out now is a replay.
  ctx.phase = REPLAYING
  try {
    writeEntry(cache, req, res, found.entry!, how)
  } catch (error) {
    if (res.headersSent) throw error
    cache.report(new CorruptEntryError(`cannot be replayed (${asError(error).message})`), req)
    cache.storage.remove(foundKey(ctx, found))
    return false
  }
  if (how.label === 'HIT') cache.counters.hits++
  else cache.counters.stale++
  endRequest(ctx.trace, how.label)
  return true
}

/**
 * Replay a stored response: a 304 when the request's validators match it, a 206 or 416 for a
 * Range request (RFC 9110 §14, from a stored 200), else the whole response. The prepared head's
 * slots take `Age`, the status header and `Cache-Status` (RFC 9211: the stored members, then ours).
 *
 * An entry stored compressed is replayed in the form the request's Accept-Encoding takes
 * (src/compress.ts), validators and all; a Range request it can answer is answered from the
 * identity form, the one its `If-Range` is compared with.
 */
export function writeEntry(cache: Instance, req: IncomingMessage, res: ServerResponse, entry: ResponseEntry, how: Replay): void {
  const { config } = cache
  const ranged = req.headers.range !== undefined && req.method === 'GET'
  let form: Form | undefined
  let answer: RangeAnswer | undefined
  if (entry.encoding !== undefined) {
    form = formFor(entry.encoding, req.headers)
    // A range it can answer is answered from the identity form: that decides the validators too.
    if (ranged && entry.status === 200) {
      answer = rangeResponse({ status: 200, headers: entry.headers, body: bodyIn(entry, 'identity', config.maxBodySize) }, rangeRequest(req))
      if (answer !== undefined) form = 'identity'
    }
  }
  const p = form === undefined ? prepare(entry) : prepareForm(entry, form, config.maxBodySize)
  let status = entry.status
  let headers: ReplayHead
  let body: Uint8Array | undefined
  if (status >= 200 && status < 300 && notModified(req.headers, p)) {
    status = 304
    // Not p.head: the identity form of a compressed entry would decode its body for a length.
    headers = notModifiedHeaders(entry, p)
  } else {
    headers = p.head
    if (ranged && entry.encoding === undefined) answer = rangeResponse(entry, rangeRequest(req))
    if (answer !== undefined) {
      status = answer.status
      headers = rangeHead(headers, answer)
      body = answer.body
    } else if (req.method !== 'HEAD') {
      body = form === undefined ? entry.body : bodyIn(entry, form, config.maxBodySize)
    }
  }
  const statusHeader = entry.statusHeader !== undefined ? entry.statusHeader : statusHeaderFor(config, how.route)
  const member = config.cacheStatus === false ? undefined : hitStatus(config.cacheStatus, p, entry, how)
  const n = headers.length
  headers[n - 5] = String(Math.min(Math.floor(how.ageMs / 1000), 2 ** 31))
  if (statusHeader !== false && member !== undefined) {
    headers[n - 4] = statusHeader
    headers[n - 3] = how.label
    headers[n - 1] = member
  } else {
    headers = headers.slice(0, n - 4)
    if (statusHeader !== false) headers.push(statusHeader, how.label)
    if (member !== undefined) headers.push('Cache-Status', member)
  }
  res.writeHead(status, headers)
  if (body === undefined || body.byteLength === 0 || req.method === 'HEAD') res.end()
  else res.end(body)
}

function rangeRequest(req: IncomingMessage): { range: string | undefined; ifRange: string | undefined } {
  return { range: req.headers.range, ifRange: firstValue(req.headers['if-range']) }
}

/** The `Cache-Status` of a replay: the stored members, then `<name>; hit; ttl=<fresh seconds left>`. */
function hitStatus(name: string, p: Prepared, entry: ResponseEntry, how: Replay): string {
  const member = cacheStatusMember(name, { hit: true, ttl: Math.floor((entry.lifetime - how.ageMs) / 1000), collapsed: how.collapsed })
  return p.upstreamStatus === undefined ? member : `${p.upstreamStatus}, ${member}`
}

/** A replay head for a range answer: the stored fields, those the answer sets replaced, then the slots. */
function rangeHead(head: ReplayHead, answer: RangeAnswer): ReplayHead {
  const replaced = new Set<string>()
  for (let i = 0; i < answer.headers.length; i += 2) replaced.add(answer.headers[i].toLowerCase())
  const out: ReplayHead = []
  for (let i = 0; i < head.length - SLOTS; i += 2) {
    if (!replaced.has((head[i] as string).toLowerCase())) out.push(head[i], head[i + 1])
  }
  return out.concat(answer.headers, head.slice(head.length - SLOTS))
}

/**
 * Write a stored response instead of the app's 304 (REVALIDATED) or 5xx (STALE, under
 * stale-if-error): status and headers replaced in place; `forwarded` is the status the app sent.
 */
export function replaceWith(ctx: Context, entry: ResponseEntry, label: 'REVALIDATED' | 'STALE', forwarded: number): HeadDecision {
  const { res } = ctx
  for (const name of res.getHeaderNames()) res.removeHeader(name)
  const limit = ctx.cache.config.maxBodySize
  const form = entry.encoding === undefined ? undefined : formFor(entry.encoding, ctx.req.headers)
  const p = form === undefined ? prepare(entry) : prepareForm(entry, form, limit)
  const useNotModified = entry.status >= 200 && entry.status < 300 && hasConditionals(ctx.conditionals) && notModified(ctx.conditionals, p)
  const headers = useNotModified ? notModifiedHeaders(entry, p) : p.head
  setHeaderList(res, headers.slice(0, -SLOTS))
  const age = currentAge(entry, ctx.cache.config.now())
  res.setHeader('Age', String(Math.floor(age / 1000)))
  if (p.upstreamStatus !== undefined) res.setHeader('Cache-Status', p.upstreamStatus)
  mark(ctx.cache, res, ctx.route, label, { fwd: 'stale', fwdStatus: forwarded, ttl: Math.floor((entry.lifetime - age) / 1000) })
  res.statusCode = useNotModified ? 304 : entry.status
  const body = useNotModified || ctx.req.method === 'HEAD' ? undefined : form === undefined ? entry.body : bodyIn(entry, form, limit)
  return { action: 'replace', capture: false, body }
}

/** Set a replay head on a response being produced: each field once, repeated lines as an array. */
function setHeaderList(res: ServerResponse, headers: ReplayHead): void {
  for (let i = 0; i < headers.length; i += 2) res.setHeader(headers[i] as string, headers[i + 1])
}

/**
 * Say what the cache did with a response being produced: the status header (`X-Cache`) and our
 * member of `Cache-Status` (RFC 9211), appended to what the app or an upstream cache set.
 */
export function mark(cache: Instance, res: ServerResponse, route: RouteConfig | undefined, label: CacheStatus, status: CacheStatusParams): void {
  const header = statusHeaderFor(cache.config, route)
  if (header !== false) res.setHeader(header, label)
  const name = cache.config.cacheStatus
  if (name !== false) res.setHeader('Cache-Status', appendCacheStatus(res.getHeader('cache-status'), cacheStatusMember(name, status)))
}

/** RFC 9211 §2.2: why a request went to the app. */
export function forwardReason(ctx: Context): ForwardReason {
  if (staleOf(ctx) !== undefined) return 'stale'
  if (ctx.rules.noCache) return 'request'
  return ctx.varyRecord === undefined ? 'uri-miss' : 'vary-miss'
}

/** The status header a response carries: its route's choice, else the cache's. */
export function statusHeaderFor(config: Config, route: RouteConfig | undefined): string | false {
  return route?.statusHeader ?? config.statusHeader
}

/** Pass a request to the app without the cache (`X-Cache: BYPASS`). */
export function bypass(cache: Instance, req: IncomingMessage, res: ServerResponse, next: Next, reason: string): void {
  debug('bypass: %s (%s %s)', reason, req.method, req.url)
  cache.counters.bypasses++
  endRequest(startRequest(undefined, req.method ?? ''), 'BYPASS', { reason })
  mark(cache, res, undefined, 'BYPASS', { fwd: 'bypass', detail: reason })
  next()
}

/** RFC 9111 §5.2.1.7: only-if-cached with nothing usable stored → 504. */
export function gatewayTimeout(cache: Instance, res: ServerResponse): void {
  cache.counters.misses++
  res.statusCode = 504
  mark(cache, res, undefined, 'MISS', { detail: 'only-if-cached' })
  res.setHeader('Content-Length', '0')
  res.end()
}
