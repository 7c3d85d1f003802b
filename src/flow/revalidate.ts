/** Revalidate: wraps the app's answer to a request sent with a stored entry's validators — a 304 freshens the entry (RFC 9111 §4.3.3–4.3.4), a 5xx may be answered with it (RFC 5861 §4). */
import type { OutgoingHttpHeaders } from 'node:http'
import type { HeadDecision } from '../capture.js'
import { bodyIn, listField, mayCompress } from '../compress.js'
import { buildEntry, freshenHeaders } from '../entry.js'
import { storageDecision } from '../policy.js'
import { targetedDirectives } from '../targeted.js'
import type { ResponseEntry } from '../types.js'
import { settle } from './coalesce.js'
import { freshnessConfig, type CacheControlFor } from './compute.js'
import { variantOf } from './lookup.js'
import { save } from './save.js'
import { replaceWith, statusHeaderFor } from './serve.js'
import { debug, headerOf, rawHeaders, routeOf, type Context } from './state.js'
import { endRequest } from '../diagnostics.js'

/**
 * Before the app's response is judged as a miss: a revalidation answered 304 sends the freshened
 * stored entry (REVALIDATED); a server error, when stale-if-error allows, sends the stored entry
 * (STALE). Undefined: the app's response stands, and the miss path decides on it.
 */
export function answerRevalidation(ctx: Context, status: number, control: CacheControlFor): HeadDecision | undefined {
  const { cache } = ctx
  const phase = ctx.phase
  if (phase.name === 'revalidating' && status === 304) {
    const updated = freshen(ctx, phase.stale, control)
    cache.counters.revalidated++
    endRequest(ctx.trace, 'REVALIDATED', { route: routeOf(ctx.req), stored: updated !== undefined })
    settle(ctx, updated && { entry: updated, vary: ctx.varyRecord?.vary ?? [], variant: variantOf(ctx) })
    return replaceWith(ctx, updated ?? phase.stale, 'REVALIDATED', status)
  }
  if ((phase.name === 'computing' || phase.name === 'revalidating') && phase.fallback && phase.stale !== undefined && status >= 500) {
    cache.counters.stale++
    endRequest(ctx.trace, 'STALE', { route: routeOf(ctx.req), reason: `stale-if-error: the app answered ${status}` })
    settle(ctx, undefined)
    debug('stale-if-error: origin answered %d for %s', status, ctx.headKey)
    return replaceWith(ctx, phase.stale, 'STALE', status)
  }
  return undefined
}

/** Apply a 304's headers to the stored entry and store the result (RFC 9111 §4.3.4). */
function freshen(ctx: Context, stale: ResponseEntry, control: CacheControlFor): ResponseEntry | undefined {
  const { config } = ctx.cache
  const now = config.now()
  const update = rawHeaders(ctx.res)
  // RFC 9110 §6.6.1, RFC 9111 §4.3.4: a 304 without Date is dated when it was received (Node
  // adds one only on the wire, after this), or the entry would keep its old Date and age on.
  if (headerOf(update, 'date') === undefined) update.push('Date', new Date(now).toUTCString())
  const headers = freshenHeaders(stale.headers, update)
  const asObject: OutgoingHttpHeaders = {}
  for (let i = 0; i < headers.length; i += 2) asObject[headers[i].toLowerCase()] = headers[i + 1]
  const decision = storageDecision({
    status: stale.status,
    headers: asObject as Record<string, string>,
    requestHeaders: ctx.req.headers,
    requestCC: {},
    statusCodes: config.statusCodes,
    storeSetCookie: config.storeSetCookie,
    allowCookies: ctx.route?.allowCookies ?? false,
    freshness: freshnessConfig(ctx),
    now,
    surrogate: control.surrogate,
    // The 304's targeted field, else the one stored with the response (when it is forwarded).
    targeted: control.targeted ?? (config.targets.length === 0 ? undefined : targetedDirectives((name) => asObject[name], config.targets)?.directives),
  })
  if (!decision.store) return undefined
  const entry = buildEntry({
    status: stale.status,
    headers,
    body: stale.body,
    requestTime: ctx.requestTime,
    responseTime: now,
    lifetime: decision.lifetime,
    staleWhileRevalidate: decision.staleWhileRevalidate,
    staleIfError: decision.staleIfError,
    mustRevalidate: decision.mustRevalidate,
    statusHeader: statusHeaderFor(config, ctx.route),
    routeStatusHeader: ctx.route?.statusHeader ?? stale.statusHeader,
    tags: stale.tags,
  })
  // The body stays as stored (its ETag, the identity form's, came with the headers), unless the
  // 304 brought a field that forbids the compressed form, `no-transform` say: then it is decoded.
  if (stale.encoding !== undefined) {
    if (mayCompress({ status: entry.status, field: (name) => listField(entry.headers, name) })) entry.encoding = stale.encoding
    else entry.body = bodyIn(stale, 'identity', config.maxBodySize)
  }
  save(ctx, entry, decision.vary)
  return entry
}
