/** Unsafe methods and invalidation: a successful unsafe request drops its target's entries (RFC 9111 §4.4); invalidate() and delete() with bounded waits. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import onHeaders from 'on-headers'
import { primaryKey, routingOf } from '../key.js'
import { assertPattern, isLiteral } from '../pattern.js'
import { StoreTimeoutError, TIMED_OUT, asError, race, settledWithin } from '../storage.js'
import { endRequest, publishInvalidate, startRequest } from '../diagnostics.js'
import { mark } from './serve.js'
import type { InvalidationEvent } from '../options.js'
import type { Instance, Next } from './state.js'

/**
 * RFC 9111 §4.4: a successful unsafe request invalidates the stored responses for its target,
 * and for same-origin Location / Content-Location. Here that is the path with every query
 * string. The response is held back until the invalidation is done, so a client that reads it
 * and then asks again never sees the old entry.
 */
export function unsafe(cache: Instance, req: IncomingMessage, res: ServerResponse, next: Next): void {
  cache.counters.bypasses++
  endRequest(startRequest(undefined, req.method ?? ''), 'BYPASS', { reason: `method ${req.method}` })
  let invalidation: Promise<unknown> | undefined
  onHeaders(res, function onUnsafeHead(this: ServerResponse) {
    mark(cache, this, undefined, 'BYPASS', { fwd: 'method' })
    if (this.statusCode >= 200 && this.statusCode < 400 && cache.config.key === undefined) {
      // Waited for, but no longer than storeTimeout: a stalled store never holds a response.
      invalidation = settledWithin(invalidateTargets(cache, req, this), cache.config.storeTimeout)
    }
  })
  const end = res.end
  res.end = function cachetUnsafeEnd(this: ServerResponse, ...args: unknown[]) {
    if (!this.headersSent) (this as unknown as { _implicitHeader(): void })._implicitHeader()
    if (invalidation === undefined) return (end as (...a: unknown[]) => ServerResponse).apply(this, args)
    invalidation.then(() => (end as (...a: unknown[]) => ServerResponse).apply(this, args))
    return this
  } as ServerResponse['end']
  next()
}

function invalidateTargets(cache: Instance, req: IncomingMessage, res: ServerResponse): Promise<unknown> {
  const targets = [(req as { originalUrl?: string }).originalUrl ?? req.url ?? '/']
  for (const name of ['location', 'content-location']) {
    const value = res.getHeader(name)
    if (typeof value !== 'string') continue
    try {
      const base = new URL(`http://${req.headers.host ?? 'localhost'}`)
      const target = new URL(value, base)
      // Only the same origin: another host's entries are not this response's to drop.
      if (target.host === base.host) targets.push(target.pathname + target.search)
    } catch {
      // An unparseable Location invalidates nothing.
    }
  }
  const patterns = new Set<string>()
  // The family of each target, normalised and folded as the app routes it: every spelling's
  // entries (`posts:42:GET#host&/Posts/42/`) lie below it.
  const routing = routingOf(req)
  for (const target of targets) {
    const q = target.indexOf('?')
    const primary = primaryKey('GET', q === -1 ? target : target.slice(0, q), routing)
    if (primary === undefined) continue
    patterns.add(`${primary}#*`)
    patterns.add(`${primary}?*`)
  }
  notify(cache, { patterns: [...patterns], soft: false, source: 'request' })
  const work = [...patterns].map((pattern) => cache.storage.removeMatching(pattern))
  return Promise.all(work).then(
    () => undefined,
    (error) => cache.report(asError(error), req),
  )
}

/** Tell the `onInvalidate` hook; what it throws goes to onError. */
export function notify(cache: Instance, event: InvalidationEvent): void {
  const hook = cache.config.onInvalidate
  if (hook === undefined) return
  try {
    hook(event)
  } catch (error) {
    cache.report(asError(error))
  }
}

/**
 * Remove everything under a primary-key pattern: the keys themselves carry `#secondary` parts.
 * Resolves how many entries were removed once no reader can find them; rejects when it could
 * not be done — a pattern the store cannot honour, a store that failed, or one that did not
 * answer — so the caller can retry or alert instead of reading "nothing matched".
 */
export async function invalidatePattern(cache: Instance, pattern: string): Promise<number> {
  assertPattern(pattern)
  return published(pattern, guarded(cache, cache.storage.removeMatching(pattern.endsWith('*') ? pattern : `${pattern}#*`)))
}

export async function removeKey(cache: Instance, key: string): Promise<number> {
  if (!isLiteral(key)) throw new TypeError(`key must not contain "*", got ${JSON.stringify(key)}; use invalidate() for patterns`)
  return published(key, guarded(cache, cache.storage.removeMatching(`${key}#*`)))
}

/** Tell diagnostics_channel subscribers how an invalidation settled. */
function published(pattern: string, work: Promise<number>): Promise<number> {
  return work.then(
    (removed) => {
      publishInvalidate({ pattern, removed })
      return removed
    },
    (error: unknown) => {
      publishInvalidate({ pattern, error })
      throw error
    },
  )
}

/**
 * Settle an invalidation within bounds. A deletion over many keys may rightly take a while, so
 * the whole is bounded by lockTimeout; a store that does not answer at all is found out sooner
 * by one round trip bounded by storeTimeout, made alongside it.
 */
async function guarded(cache: Instance, work: Promise<number>): Promise<number> {
  // The ping can only fail the invalidation, never finish it: once it answers, it waits forever.
  const unanswered = cache.storage.ping().then(() => new Promise<never>(() => undefined))
  try {
    const removed = await race(Promise.race([work, unanswered]), cache.config.lockTimeout)
    if (removed === TIMED_OUT) throw new StoreTimeoutError('invalidate', cache.config.lockTimeout)
    return removed
  } catch (error) {
    const err = asError(error)
    if (!(err instanceof TypeError) && err.name !== 'UnsupportedPatternError') cache.report(err)
    throw err
  }
}
