/** responseCache(): the request flow (README "How it works"): arrive, look up, decide, then serve, compute or revalidate. */
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http'
import { checkKey, escapePart, hostPart, routingOf, storageKey, targetKey } from './key.js'
import { resolveOptions, type CacheOptions, type InvalidationEvent } from './options.js'
import { assertPattern } from './pattern.js'
import { describe, softOption } from './validate.js'
import { NO_REQUEST_RULES, parseCacheControl, requestBypassReason, requestRules, type RequestRules } from './policy.js'
import { Storage, asError, checkTags, isPromise, releaseFrames } from './storage.js'
import { miss, settle } from './flow/coalesce.js'
import { compute } from './flow/compute.js'
import { decide } from './flow/decide.js'
import { NOT_FOUND, lookup, type Found } from './flow/lookup.js'
import { refreshOf, startRefresh } from './flow/refresh.js'
import { bypass, gatewayTimeout, serve } from './flow/serve.js'
import { LOOKUP, debug, newContext, type CacheStats, type Context, type Instance, type Next } from './flow/state.js'
import { restoreConditionals } from './conditional.js'
import { invalidatePattern, notify, removeKey, unsafe } from './flow/unsafe.js'
import { endRequest, startRequest } from './diagnostics.js'

export type { CacheStats, CacheStatus } from './flow/state.js'

/** The middleware, which is also the handle of its cache. */
export interface ResponseCache {
  (req: IncomingMessage, res: ServerResponse, next: Next): void
  /**
   * Remove every entry whose primary key matches `pattern` (`*` is the only wildcard), all
   * variants included; with `{ soft: true }` mark them stale instead (resolves 0: they are
   * marked when read).
   */
  invalidate(pattern: string, options?: InvalidateOptions): Promise<number>
  /** Invalidate every entry carrying any of `tags` (Surrogate-Key, Cache-Tag, cacheRoute({ tags })), hard or soft. */
  invalidateTags(tags: readonly string[], options?: InvalidateOptions): Promise<void>
  /** Remove one primary key, all its variants included. */
  delete(key: string): Promise<number>
  /** Remove every entry of this cache's store. */
  clear(): Promise<void>
  stats(): CacheStats
  /**
   * The front door: a `node:http` request listener that answers fresh stored responses before
   * `app` sees the request, and hands everything else to `app` unchanged —
   * `http.createServer(cache.serve(app))`. Keep `app.use(cache)` inside the app: it handles the
   * misses, routes' `cacheRoute()`, revalidation and storing.
   */
  serve<A extends (req: IncomingMessage, res: ServerResponse) => unknown>(app: A): (req: IncomingMessage, res: ServerResponse) => void
  /** Stop using the store and close what the cache opened. */
  close(): Promise<void>
}

/** How an invalidation acts: `soft` marks entries stale (revalidated, or served stale where allowed) instead of removing them. */
export interface InvalidateOptions {
  /** @default false */
  soft?: boolean
}

/** Every open cache of the process, for the module-level invalidate(). */
export const openCaches = new Set<ResponseCache>()

/**
 * Methods defined as safe (RFC 9110 §9.2.1 and the IANA method registry): answered by the app,
 * never cached here, and never a reason to invalidate.
 */
const SAFE_METHODS = new Set(['OPTIONS', 'TRACE', 'PROPFIND', 'REPORT', 'SEARCH'])

/**
 * Create the cache middleware.
 *
 * ```ts
 * const cache = responseCache({ ttl: '5m' })
 * app.use(cache)
 * ```
 */
export function responseCache(options?: CacheOptions): ResponseCache {
  const config = resolveOptions(options)
  const counters = { hits: 0, misses: 0, bypasses: 0, stale: 0, revalidated: 0, errors: 0 }
  const report = (error: Error, req?: IncomingMessage) => {
    counters.errors++
    releaseFrames(error)
    debug('error: %s%s', error.message, req === undefined ? '' : ` (${req.method} ${req.url})`)
    if (config.onError === undefined) return
    try {
      config.onError(error, req)
    } catch (hookError) {
      debug('onError threw: %s', asError(hookError).message)
    }
  }
  const instance: Instance = {
    config,
    counters,
    flights: new Map(),
    refreshing: new Set(),
    varyUpdates: new Map(),
    report,
    storage: new Storage({
      store: config.store,
      coder: config.coder,
      timeout: config.storeTimeout,
      // A write behind a running invalidation is background work: it may wait as long as a waiter.
      sweepWait: config.lockTimeout,
      now: config.now,
      report: (error) => report(error),
    }),
  }

  const middleware = function responseCache(req: IncomingMessage, res: ServerResponse, next: Next): void {
    handle(instance, req, res, next)
  } as ResponseCache

  middleware.invalidate = (pattern, options) => {
    assertPattern(pattern)
    const soft = softOption('invalidate', options)
    notify(instance, { patterns: [pattern], soft, source: 'invalidate' })
    if (!soft) return invalidatePattern(instance, pattern)
    return instance.storage.softInvalidate(pattern.endsWith('*') ? pattern : `${pattern}#*`).then(
      () => 0,
      (error) => {
        instance.report(asError(error))
        throw error
      },
    )
  }
  middleware.invalidateTags = async (tags, options) => {
    const list = checkTags(tags)
    const soft = softOption('invalidateTags', options)
    notify(instance, { tags: list, soft, source: 'invalidateTags' })
    try {
      await instance.storage.markTags(list, soft)
    } catch (error) {
      instance.report(asError(error))
      throw error
    }
  }
  middleware.delete = (key) => {
    assertPattern(key, 'key')
    notify(instance, { patterns: [`${key}#*`], soft: false, source: 'delete' })
    return removeKey(instance, key)
  }
  middleware.clear = () => {
    notify(instance, { patterns: ['*'], soft: false, source: 'clear' })
    return instance.storage.clear()
  }
  middleware.stats = () => {
    const { landed, failed, refused } = instance.storage.writes
    return { ...counters, stores: landed, storeFailures: failed, storeRefused: refused, ...config.store.stats?.() }
  }
  middleware.serve = (app) => frontDoor(instance, app)
  middleware.close = async () => {
    openCaches.delete(middleware)
    await config.store.close?.()
  }
  openCaches.add(middleware)
  return middleware
}

/** Arrival: pass what may not be cached, build the key and the request's rules, then look it up. */
function handle(cache: Instance, req: IncomingMessage, res: ServerResponse, next: Next): void {
  const { config } = cache
  const method = req.method
  if (method !== 'GET' && method !== 'HEAD') {
    // RFC 9110 §9.2.1: only an unsafe method may change the resource, and so invalidate it.
    if (method !== undefined && SAFE_METHODS.has(method)) return bypass(cache, req, res, next, `method ${method}`)
    return unsafe(cache, req, res, next)
  }

  const excluded = requestBypassReason(method, req.headers)
  if (excluded !== undefined) return bypass(cache, req, res, next, excluded)

  const url = (req as { originalUrl?: string }).originalUrl ?? req.url ?? '/'
  let primary: string | undefined
  let spelling: string | undefined
  if (config.key === undefined) {
    const target = targetKey('GET', url, routingOf(req), config.keepParam)
    primary = target?.primary
    spelling = target?.spelling
  } else {
    let returned: unknown
    try {
      returned = config.key(req)
    } catch (error) {
      cache.report(asError(error), req)
      return bypass(cache, req, res, next, 'key function threw')
    }
    const checked = checkKey(returned, 'option "key"')
    if (typeof checked !== 'string') {
      cache.report(checked, req)
      return bypass(cache, req, res, next, checked.message)
    }
    primary = checked
  }
  if (primary === undefined) return bypass(cache, req, res, next, 'request target is not a path')
  if (url.length > config.maxKeyLength || (config.key !== undefined && primary.length > config.maxKeyLength)) {
    return bypass(cache, req, res, next, 'URL longer than maxKeyLength')
  }
  const headKey = storageKey(primary, requestHost(req, config.host), spelling)

  const rules = rulesOf(req.headers)

  const ctx = newContext(cache, req, res, next, { url, headKey, rules })
  // A background refresh (stale-while-revalidate) asks the app; it never serves from storage.
  const refresh = refreshOf(req)
  if (refresh !== undefined) return compute(ctx, refresh, false)
  ctx.trace = startRequest(headKey, method)
  start(ctx)
}

/**
 * The front door (README "The front door"): only what `respond()` would answer as a fresh hit is
 * answered here, from the same key (the app's routing settings read from the app itself); every
 * other request reaches the app as it came, where `app.use(cache)` treats it as usual.
 */
function frontDoor(cache: Instance, app: (req: IncomingMessage, res: ServerResponse) => unknown): (req: IncomingMessage, res: ServerResponse) => void {
  if (typeof app !== 'function') throw new TypeError(`cache.serve(app): app must be a request listener, got ${describe(app)}`)
  const routing = routingOf({ app })
  const { config } = cache
  return function cachetFrontDoor(req: IncomingMessage, res: ServerResponse): void {
    const method = req.method
    const url = req.url ?? '/'
    // A custom key reads what the app adds to the request: only the app can compute it.
    if (
      (method !== 'GET' && method !== 'HEAD') ||
      config.key !== undefined ||
      url.length > config.maxKeyLength ||
      requestBypassReason(method, req.headers) !== undefined
    ) {
      return void app(req, res)
    }
    const target = targetKey('GET', url, routing, config.keepParam)
    if (target === undefined) return void app(req, res)
    const headKey = storageKey(target.primary, requestHost(req, config.host), target.spelling)
    const rules = rulesOf(req.headers)
    const answer = (found: Found) => {
      const decision = decide(found.entry, rules, config.now())
      if (decision.kind === 'hit' && req.headers.range === undefined) {
        const ctx = newContext(cache, req, res, () => app(req, res), { url, headKey, rules })
        ctx.trace = startRequest(headKey, method)
        if (serve(ctx, found, { ageMs: decision.age, label: 'HIT', route: undefined })) return
      }
      app(req, res)
    }
    const found = lookup(cache, headKey, req)
    if (!isPromise(found)) return answer(found)
    found.then(answer, () => app(req, res))
  }
}

/** Look the request's key up, then act on what was found. */
function start(ctx: Context): void {
  const found = lookup(ctx.cache, ctx.headKey, ctx.req)
  if (!isPromise(found)) return respond(ctx, found)
  found.then(
    (result) => respond(ctx, result),
    (error) => {
      ctx.cache.report(asError(error), ctx.req)
      respond(ctx, NOT_FOUND)
    },
  )
}

/** The dispatch: what the lookup found decides, and one phase module acts. */
function respond(ctx: Context, found: Found): void {
  ctx.varyRecord = found.vary
  ctx.pass = found.pass === true
  const decision = decide(found.entry, ctx.rules, ctx.cache.config.now())
  switch (decision.kind) {
    case 'hit':
      if (serve(ctx, found, { ageMs: decision.age, label: 'HIT', route: undefined })) return
      return respond(ctx, { entry: undefined, vary: found.vary })
    case 'stale':
      if (!serve(ctx, found, { ageMs: decision.age, label: 'STALE', route: undefined })) return respond(ctx, { entry: undefined, vary: found.vary })
      if (decision.refresh) startRefresh(ctx, found)
      return
    case 'revalidate':
      return compute(ctx, decision.entry, decision.fallback)
    case 'miss':
      return miss(ctx)
    case 'unavailable':
      endRequest(ctx.trace, 'MISS', { reason: 'only-if-cached' })
      return gatewayTimeout(ctx.cache, ctx.res)
  }
}

/**
 * cacheRoute() with a key of its own: the one way to restart a request, under that key. Waiters
 * are released and the client's validators put back; the lookup runs again from the start.
 */
export function restartUnderKey(ctx: Context, headKey: string, next: Next): void {
  settle(ctx, undefined)
  restoreConditionals(ctx)
  ctx.conditionals = undefined
  ctx.headKey = headKey
  ctx.next = next
  ctx.phase = LOOKUP
  ctx.varyRecord = undefined
  start(ctx)
}

/** The request's own cache directives (RFC 9111 §5.2.1, Pragma per §5.4). */
function rulesOf(headers: IncomingHttpHeaders): RequestRules {
  if (headers['cache-control'] === undefined && headers.pragma === undefined) return NO_REQUEST_RULES
  return requestRules(parseCacheControl(headers['cache-control']), headers.pragma, headers['cache-control'] !== undefined)
}

/**
 * The authority a response was made for: Host, plus X-Forwarded-Host / -Proto and Forwarded
 * whenever a request carries them. Apps (and Express under `trust proxy`) build URLs from them;
 * unkeyed, one request could poison the entry everyone gets. A proxy that always sends them
 * keeps its hit rate; an attacker who adds them only reaches a key nobody else uses. The `host`
 * option pins or drops the Host itself.
 */
function requestHost(req: IncomingMessage, pinned: string | false | undefined): string {
  const h = req.headers
  // The `host` option: a pinned name, or none at all (`false`); the forwarding headers stay keyed.
  const host = pinned === undefined ? h.host : pinned === false ? undefined : pinned
  const forwardedHost = h['x-forwarded-host']
  const forwardedProto = h['x-forwarded-proto']
  const forwarded = h.forwarded
  if (forwardedHost === undefined && forwardedProto === undefined && forwarded === undefined) return hostPart(host)
  return hostPart(host, [forwardedHost, forwardedProto, forwarded].map((v) => (v === undefined ? '!' : '=' + escapePart(String(v)))).join('|'))
}
