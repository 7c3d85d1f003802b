/** Compute: ask the app for the response (a miss, or a revalidation of a stored entry) and watch what it produces. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import etag from 'etag'
import { capture, type HeadDecision } from '../capture.js'
import { clientNotModified, hasConditionals, holdConditionals, restoreConditionals, toNotModified, toNotModifiedAsApp } from '../conditional.js'
import { bodyIn, compressEntry, formFor, mayCompress } from '../compress.js'
import { CorruptEntryError, buildEntry, currentAge, prepare } from '../entry.js'
import type { Config } from '../options.js'
import {
  NO_REQUEST_RULES,
  parseCacheControl,
  parseSurrogateControl,
  storageDecision,
  type Directives,
  type StorageDecision,
  type SurrogateControl,
} from '../policy.js'
import { asError } from '../storage.js'
import { targetedDirectives } from '../targeted.js'
import type { PassEntry, ResponseEntry } from '../types.js'
import { settle } from './coalesce.js'
import { answerRevalidation } from './revalidate.js'
import { save } from './save.js'
import { forwardReason, mark, statusHeaderFor, writeEntry } from './serve.js'
import { REPLAYING, contexts, debug, headerOf, rawHeaders, routeOf, staleOf, type Context } from './state.js'
import { endRequest } from '../diagnostics.js'

/** The directives meant for this cache alone, taken off the response before Cache-Control is read. */
export interface CacheControlFor {
  surrogate: SurrogateControl | undefined
  targeted: Directives | undefined
}

/**
 * Ask the app. The client's validators are held aside, so the app produces the full response
 * that gets stored (RFC 9111 §4.3.2 leaves the 304 to the cache); with a stored entry `stale`,
 * its validators are sent instead, so the app can answer 304 (§4.3.1). `fallback`: `stale` may
 * answer instead if the app fails (stale-if-error).
 */
export function compute(ctx: Context, stale: ResponseEntry | undefined, fallback: boolean): void {
  const { cache, req } = ctx
  if (stale?.encoding !== undefined && !replayable(ctx, stale)) {
    stale = undefined
    fallback = false
  }
  ctx.requestTime = cache.config.now()
  ctx.epoch = cache.storage.generation
  // The app sees the request as the client sent it whenever its answer will not be stored
  // anyway: a Range request (its If-Range too, RFC 9110 §13.1.5) and a hit-for-pass key.
  const asSent = req.method !== 'GET' || req.headers.range !== undefined || ctx.pass
  if (!asSent) holdConditionals(ctx)
  if (stale !== undefined && !asSent) {
    ctx.phase = { name: 'revalidating', stale, fallback }
    const p = prepare(stale)
    if (p.etag !== undefined) req.headers['if-none-match'] = p.etag
    const lastModified = headerOf(stale.headers, 'last-modified')
    if (lastModified !== undefined) req.headers['if-modified-since'] = lastModified
  } else {
    ctx.phase = { name: 'computing', stale, fallback }
  }
  if (cache.config.surrogate !== undefined) announceSurrogate(req, cache.config.surrogate)
  if (!ctx.watched) watch(ctx)
  if (fallback) staleOnTimeout(ctx)
  contexts.set(req, ctx)
  ctx.next()
}

/**
 * Can a compressed stale entry be replayed in the form this request takes? Its copy is made now,
 * before the app is asked: a body that does not decode (bytes written by another hand) is
 * reported and the request goes on as a plain miss, instead of failing later inside the app's
 * own `res.end()` (a REVALIDATED 304, stale-if-error). Decoding gives the same result each time.
 */
function replayable(ctx: Context, stale: ResponseEntry): boolean {
  try {
    bodyIn(stale, formFor(stale.encoding!, ctx.req.headers), ctx.cache.config.maxBodySize)
    return true
  } catch (error) {
    ctx.cache.report(new CorruptEntryError(`cannot be replayed (${asError(error).message})`), ctx.req)
    return false
  }
}

/**
 * cacheRoute(false) reached: nothing will be stored, so the requests waiting for this one go
 * now, and the app sees the request as the client sent it (its own validators, no revalidation).
 */
export function leaveUncached(ctx: Context): void {
  settle(ctx, undefined)
  restoreConditionals(ctx)
  ctx.conditionals = undefined
  ctx.phase = { name: 'computing', stale: undefined, fallback: false }
}

/** Tell the app a surrogate answers for it (Edge Architecture §2.1), once per request. */
function announceSurrogate(req: IncomingMessage, token: string): void {
  const capability = `${token}="Surrogate/1.0"`
  const present = req.headers['surrogate-capability']
  if (present === undefined) req.headers['surrogate-capability'] = capability
  else if (!present.includes(capability)) req.headers['surrogate-capability'] = `${present}, ${capability}`
}

/**
 * stale-if-error covers an origin that does not answer in time too: after `lockTimeout` the
 * stale entry is sent and the app's late output is dropped.
 */
function staleOnTimeout(ctx: Context): void {
  const { cache, res, req } = ctx
  const timer = setTimeout(() => {
    const phase = ctx.phase
    if (res.headersSent || (phase.name !== 'computing' && phase.name !== 'revalidating') || !phase.fallback || phase.stale === undefined) return
    debug('stale-if-error: origin took longer than %d ms for %s', cache.config.lockTimeout, ctx.headKey)
    cache.counters.stale++
    endRequest(ctx.trace, 'STALE', { reason: 'stale-if-error: the app took longer than lockTimeout' })
    settle(ctx, undefined)
    restoreConditionals(ctx)
    ctx.phase = REPLAYING
    ctx.pending = undefined
    try {
      writeEntry(cache, req, res, phase.stale, { ageMs: currentAge(phase.stale, cache.config.now()), label: 'STALE', route: ctx.route })
    } catch (error) {
      // A compressed body that does not decode, a header Node refuses: thrown from a timer, it
      // would end the process. Nothing was written: the app's response goes out when it comes.
      cache.report(new CorruptEntryError(`cannot be replayed (${asError(error).message})`), req)
      return
    }
    detach(res)
  }, cache.config.lockTimeout)
  timer.unref?.()
  res.once('finish', () => clearTimeout(timer))
  res.once('close', () => clearTimeout(timer))
}

/** The response went out without the app: whatever it still sets or writes goes nowhere. */
function detach(res: ServerResponse): void {
  const ignore = function (this: ServerResponse) {
    return this
  }
  res.setHeader = ignore as unknown as ServerResponse['setHeader']
  res.appendHeader = ignore as unknown as ServerResponse['appendHeader']
  res.removeHeader = ignore as unknown as ServerResponse['removeHeader']
  res.writeHead = ignore as unknown as ServerResponse['writeHead']
}

/** Install the response watcher once per request; its hooks read the request's phase when they run. */
function watch(ctx: Context): void {
  const { cache } = ctx
  ctx.watched = true
  capture(ctx.res, cache.config.maxBodySize, {
    head(res, completeBody): HeadDecision {
      if (ctx.phase.name === 'replaying') return { action: 'pass', capture: false }
      const { config } = cache
      const control: CacheControlFor = {
        surrogate: config.surrogate === undefined ? undefined : takeSurrogateControl(res, config.surrogate),
        targeted: config.targets.length === 0 ? undefined : takeTargeted(res, config),
      }
      // A revalidation's 304, or the stale entry under stale-if-error, answers instead.
      return answerRevalidation(ctx, res.statusCode, control) ?? decideOnResponse(ctx, completeBody, control)
    },
    overflow() {
      debug('not stored: body larger than maxBodySize (%s)', ctx.headKey)
      ctx.pending = undefined
      settle(ctx, undefined)
    },
    done(body) {
      // req.headers keeps what the handler saw: loggers and the app may read it after end().
      const pending = ctx.pending
      ctx.pending = undefined
      if (pending === undefined || body === undefined || ctx.phase.name === 'replaying') return settle(ctx, undefined)
      // RFC 9111 §3.3–3.4: a body that is not the length its head declared is incomplete (or
      // has more than the message): it went to the client as the app wrote it, and is not stored.
      const declared = headerOf(pending.headers, 'content-length')
      if (declared !== undefined && Number(declared) !== body.byteLength) {
        debug('not stored: body of %d bytes, Content-Length %s (%s)', body.byteLength, declared, ctx.headKey)
        return settle(ctx, undefined)
      }
      const { decision } = pending
      const entry = buildEntry({
        status: pending.status,
        headers: pending.headers,
        body,
        requestTime: ctx.requestTime,
        responseTime: cache.config.now(),
        lifetime: decision.lifetime,
        staleWhileRevalidate: decision.staleWhileRevalidate,
        staleIfError: decision.staleIfError,
        mustRevalidate: decision.mustRevalidate,
        statusHeader: statusHeaderFor(cache.config, ctx.route),
        routeStatusHeader: ctx.route?.statusHeader,
        tags: pending.tags,
      })
      // After buildEntry: the ETag it adds is the identity form's, computed from the bytes the app sent.
      if (pending.compress && body.byteLength >= cache.config.compressMinBytes) compressEntry(entry, cache.config.compress as 'br' | 'gzip')
      save(ctx, entry, decision.vary)
    },
    aborted() {
      ctx.pending = undefined
      settle(ctx, undefined)
    },
  })
}

/** The app's own response: may it be stored (RFC 9111 §3), and what goes to the client. */
function decideOnResponse(ctx: Context, completeBody: Uint8Array | undefined, control: CacheControlFor): HeadDecision {
  const { cache, req, res } = ctx
  const { config } = cache
  const now = config.now()
  const status = res.statusCode
  const tags = takeTags(ctx)
  const decision = storable(ctx, control, now)
  if (!decision.store) {
    debug('not stored: %s (%s)', decision.reason, ctx.headKey)
    settle(ctx, undefined)
    rememberPass(ctx, decision.reason, now)
    const label = decision.bypass ? 'BYPASS' : 'MISS'
    if (label === 'BYPASS') cache.counters.bypasses++
    else cache.counters.misses++
    endRequest(ctx.trace, label, { route: routeOf(req), stored: false, reason: decision.reason })
    mark(cache, res, ctx.route, label, { fwd: decision.bypass ? 'bypass' : forwardReason(ctx), detail: decision.reason })
    // The client's own validators were held aside: answer them as the app would have.
    if (hasConditionals(ctx.conditionals) && status >= 200 && status < 300 && clientNotModified(ctx.conditionals, res)) {
      toNotModifiedAsApp(res)
      return { action: 'replace', capture: false, body: undefined }
    }
    return { action: 'pass', capture: false }
  }
  cache.counters.misses++
  endRequest(ctx.trace, 'MISS', { route: routeOf(req), stored: true })
  if (completeBody !== undefined && !res.hasHeader('etag') && status >= 200 && status < 300 && completeBody.byteLength > 0) {
    // The whole body is known before the head goes out: give this response the ETag the
    // stored entry will carry, so the client can revalidate it against any later hit.
    res.setHeader('ETag', etag(Buffer.from(completeBody.buffer, completeBody.byteOffset, completeBody.byteLength), { weak: true }))
  }
  // The head is kept before the cache marks it: its own status header and Cache-Status member
  // describe this response, not the stored one.
  const compress = compressing(ctx, completeBody)
  ctx.pending = { decision, status, headers: rawHeaders(res), tags, compress }
  // Hits of a compressed entry vary on Accept-Encoding: so does this response, the identity form
  // the app made (it goes out as it is). Not stored: the stored Vary selects variants.
  if (compress) varyOnAcceptEncoding(res)
  mark(cache, res, ctx.route, 'MISS', { fwd: forwardReason(ctx), stored: true, ttl: Math.floor(decision.lifetime / 1000) })
  // The client's own conditional request, answered against the response just produced.
  if (hasConditionals(ctx.conditionals) && status >= 200 && status < 300 && clientNotModified(ctx.conditionals, res)) {
    toNotModified(res, statusHeaderFor(config, ctx.route))
    return { action: 'replace', capture: true, body: undefined }
  }
  return { action: 'pass', capture: true }
}

/**
 * Will the response be stored compressed (src/compress.ts mayCompress)? Its size is checked
 * here when it is known (the whole body, or Content-Length), else once the body is complete.
 */
function compressing(ctx: Context, completeBody: Uint8Array | undefined): boolean {
  const { res } = ctx
  const { config } = ctx.cache
  if (config.compress === false) return false
  const field = (name: string) => {
    const value = res.getHeader(name)
    return value === undefined ? undefined : Array.isArray(value) ? value.join(', ') : String(value)
  }
  if (!mayCompress({ status: res.statusCode, field })) return false
  const length = completeBody?.byteLength ?? Number(field('content-length') ?? Infinity)
  return !(length < config.compressMinBytes)
}

/** Add Accept-Encoding to the response's Vary, unless it is there. */
function varyOnAcceptEncoding(res: ServerResponse): void {
  const present = res.getHeader('vary')
  const value = present === undefined ? '' : Array.isArray(present) ? present.join(', ') : String(present)
  if (/(?:^|,)\s*accept-encoding\s*(?:$|,)/i.test(value)) return
  res.setHeader('Vary', value.trim() === '' ? 'Accept-Encoding' : `${value}, Accept-Encoding`)
}

/** The storage decision for the app's response (RFC 9111 §3), with the flow's own exclusions first. */
function storable(ctx: Context, control: CacheControlFor, now: number): StorageDecision {
  const { req, res, cache } = ctx
  const { config } = cache
  if (req.method !== 'GET') return { store: false, reason: 'HEAD is answered from a stored GET only', bypass: false }
  if (ctx.route?.ttl === 0) return { store: false, reason: 'route is marked cacheRoute(false)', bypass: true }
  if (isErrorPage(res)) return { store: false, reason: 'error page from next(err) or no matching route', bypass: false }
  return storageDecision({
    status: res.statusCode,
    headers: res.getHeaders() as Record<string, string | string[] | number | undefined>,
    requestHeaders: req.headers,
    requestCC: ctx.rules === NO_REQUEST_RULES ? {} : parseCacheControl(req.headers['cache-control']),
    statusCodes: config.statusCodes,
    storeSetCookie: config.storeSetCookie,
    allowCookies: ctx.route?.allowCookies ?? false,
    freshness: freshnessConfig(ctx),
    now,
    surrogate: control.surrogate,
    targeted: control.targeted,
  })
}

/** What decides freshness beyond the response's own fields: the route's and the cache's ttl, heuristics. */
export function freshnessConfig(ctx: Context) {
  const { config } = ctx.cache
  return {
    routeTtl: ctx.route?.ttl || undefined,
    routeOverride: ctx.route?.override ?? false,
    defaultTtl: config.ttl,
    heuristicFraction: config.heuristicFraction,
    maxHeuristicTtl: config.maxHeuristicTtl,
  }
}

/**
 * RFC 9213: the first of the configured targeted fields present and valid speaks for this cache
 * instead of Cache-Control. Fields meant for cachet alone (`removeTargets`) leave the response.
 */
function takeTargeted(res: ServerResponse, config: Config): Directives | undefined {
  const found = targetedDirectives((name) => res.getHeader(name), config.targets)
  for (const name of config.removeTargets) res.removeHeader(name)
  return found?.directives
}

/**
 * Acting as a surrogate: take the Surrogate-Control members meant for this cache off the
 * response (the client and the stored entry never see them) and return them.
 */
function takeSurrogateControl(res: ServerResponse, token: string): SurrogateControl | undefined {
  const header = res.getHeader('surrogate-control')
  if (header === undefined) return undefined
  const sc = parseSurrogateControl(typeof header === 'number' ? String(header) : header, token)
  if (sc === undefined) return undefined
  if (sc.forward === undefined) res.removeHeader('surrogate-control')
  else res.setHeader('Surrogate-Control', sc.forward)
  return sc
}

/**
 * Express and Connect answer `next(err)` (and "no route matched") through finalhandler, which
 * marks its page with exactly these two headers. Such a page is not the resource: never stored.
 */
function isErrorPage(res: ServerResponse): boolean {
  return res.getHeader('content-security-policy') === "default-src 'none'" && res.getHeader('x-content-type-options') === 'nosniff'
}

const MAX_TAGS = 64
const MAX_TAG_LENGTH = 256
const CONTROL = /[\x00-\x1f\x7f]/

/**
 * The response's cache tags: `Surrogate-Key` (space-separated, the Fastly/Varnish convention),
 * `Cache-Tag` (comma-separated, Cloudflare's) and the route's `tags`. The headers are taken off
 * what the client gets unless `forwardTags` is set. At most 64 tags of 256 characters.
 */
function takeTags(ctx: Context): string[] | undefined {
  const { req, res, cache } = ctx
  const found = new Set<string>()
  const add = (tag: unknown) => {
    if (typeof tag !== 'string') return
    const t = tag.trim()
    if (t !== '' && t.length <= MAX_TAG_LENGTH && !CONTROL.test(t) && found.size < MAX_TAGS) found.add(t)
  }
  for (const line of linesOf(res.getHeader('surrogate-key'))) for (const tag of line.split(/[ \t]+/)) add(tag)
  for (const line of linesOf(res.getHeader('cache-tag'))) for (const tag of line.split(',')) add(tag)
  const routeTags = ctx.route?.tags
  if (routeTags !== undefined) {
    try {
      const tags = routeTags(req, res)
      if (Array.isArray(tags)) tags.forEach(add)
      else cache.report(new TypeError(`cacheRoute option "tags" must return an array of strings, got ${typeof tags}`), req)
    } catch (error) {
      cache.report(error instanceof Error ? error : new Error(String(error)), req)
    }
  }
  if (!cache.config.forwardTags) {
    res.removeHeader('surrogate-key')
    res.removeHeader('cache-tag')
  }
  return found.size === 0 ? undefined : [...found]
}

function linesOf(value: string | string[] | number | undefined): string[] {
  if (value === undefined) return []
  return Array.isArray(value) ? value : [String(value)]
}

/** How long a key whose response was not storable skips coalescing (Varnish's hit-for-miss uses 120 s). */
const PASS_TTL = 120_000

/**
 * Remember that this key's response was not storable, in the store so every process knows: the
 * next requests for it go to the app at once instead of queueing behind one another for a
 * response none of them can share. Only when the reason is the response's (not this request's
 * own Cache-Control, Authorization or Cookie) and nothing else stands at the key.
 */
function rememberPass(ctx: Context, reason: string, now: number): void {
  if (ctx.pass || ctx.req.method !== 'GET' || staleOf(ctx) !== undefined || ctx.varyRecord !== undefined) return
  if (reason.startsWith('request') || ctx.req.headers.authorization !== undefined) return
  const marker: PassEntry = { kind: 'pass', expires: now + PASS_TTL }
  ctx.pass = true
  ctx.cache.storage.write(ctx.headKey, marker, PASS_TTL)
}
