/** responseCache(): the request flow (README "How it works"), top to bottom. */
import { IncomingMessage, ServerResponse, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http'
import { Writable } from 'node:stream'
import createDebug from 'debug'
import etag from 'etag'
import fresh from 'fresh'
import onHeaders from 'on-headers'
import { capture, type HeadDecision } from './capture.js'
import {
  CorruptEntryError,
  NOT_MODIFIED_FIELDS,
  buildEntry,
  currentAge,
  freshenHeaders,
  notModifiedHeaders,
  prepare,
  SLOTS,
  type Prepared,
  type ReplayHead,
} from './entry.js'
import { appendCacheStatus, cacheStatusMember, type CacheStatusParams, type ForwardReason } from './cache-status.js'
import { rangeResponse, type RangeAnswer } from './range.js'
import { targetedDirectives } from './targeted.js'
import { checkKey, escapePart, hostPart, primaryKey, routingOf, storageKey, targetKey, variantPart } from './key.js'
import { resolveOptions, type CacheOptions, type Config, type RouteConfig } from './options.js'
import { assertPattern, isLiteral } from './pattern.js'
import {
  NO_REQUEST_RULES,
  firstValue,
  parseCacheControl,
  parseSurrogateControl,
  requestBypassReason,
  requestRules,
  storageDecision,
  type Directives,
  type RequestRules,
  type SurrogateControl,
} from './policy.js'
import { Storage, StoreTimeoutError, asError, isPromise, settledWithin, type Maybe } from './storage.js'
import type { Entry, PassEntry, ResponseEntry, VaryEntry } from './types.js'

const debug = createDebug('cachet')

/** What `X-Cache` says about a response. */
export type CacheStatus = 'HIT' | 'MISS' | 'BYPASS' | 'STALE' | 'REVALIDATED'

/** What `cache.stats()` returns: counts since the cache was created, and the store's own figures. */
export interface CacheStats {
  /** Responses answered from storage while fresh (`X-Cache: HIT`), 304s to conditional requests included. */
  hits: number
  /** Responses produced by the app for a cacheable request (`X-Cache: MISS`). */
  misses: number
  /** Requests passed to the app without the cache (`X-Cache: BYPASS`): unsafe methods, routes marked cacheRoute(false), … */
  bypasses: number
  /** Stale responses served (`X-Cache: STALE`): stale-while-revalidate, stale-if-error, max-stale. */
  stale: number
  /** Stored responses the app confirmed with a 304 (`X-Cache: REVALIDATED`). */
  revalidated: number
  /** Responses written to the store: counted once the store confirmed the write. */
  stores: number
  /** Response writes that failed, timed out, or were skipped while the store was being skipped after failures. */
  storeFailures: number
  /** Response writes the store declined (its `set` resolved `false`, e.g. memcached's item-size limit). */
  storeRefused: number
  /** Store, coder and entry failures (each also went to `onError`). */
  errors: number
  /** Entries held, when the store can tell (the memory store can). */
  entries?: number
  /** Bytes held, when the store can tell. */
  bytes?: number
  /** Values skipped or refused for their size (memcachedStore). */
  tooLarge?: number
}

type Next = (error?: unknown) => void

/** The middleware, which is also the handle of its cache. */
export interface ResponseCache {
  (req: IncomingMessage, res: ServerResponse, next: Next): void
  /** Remove every entry whose primary key matches `pattern` (`*` is the only wildcard), all variants included. */
  invalidate(pattern: string): Promise<number>
  /** Remove one primary key, all its variants included. */
  delete(key: string): Promise<number>
  /** Remove every entry of this cache's store. */
  clear(): Promise<void>
  stats(): CacheStats
  /** Stop using the store and close what the cache opened. */
  close(): Promise<void>
}

/**
 * Per-request state by request, so cacheRoute() can find it. Not a property of the request:
 * Express gives each request object its own hidden class (it swaps the prototype), so every
 * property added to one builds a new class, measured at 2–4 µs plus the garbage it leaves.
 */
export const contexts = new WeakMap<IncomingMessage, Context>()
/** Marks the internal request a background refresh sends through the app. */
const kRefresh = Symbol('cachet.refresh')

/**
 * Methods defined as safe (RFC 9110 §9.2.1 and the IANA method registry): answered by the app,
 * never cached here, and never a reason to invalidate.
 */
const SAFE_METHODS = new Set(['OPTIONS', 'TRACE', 'PROPFIND', 'REPORT', 'SEARCH'])

/** Every open cache of the process, for the module-level invalidate(). */
export const openCaches = new Set<ResponseCache>()

/** What a coalesced request receives from the one that ran the handler. */
interface FlightResult {
  entry: ResponseEntry
  /** Vary field names of the response, with the variant part it was stored under. */
  vary: string[]
  variant: string
}

interface Flight {
  promise: Promise<FlightResult | undefined>
  settle(result: FlightResult | undefined): void
}

export interface Context {
  cache: Instance
  req: IncomingMessage
  res: ServerResponse
  next: Next
  url: string
  /** Storage key of the response without its variant part: `posts:GET#host`. */
  headKey: string
  rules: RequestRules
  route: RouteConfig | undefined
  /** The Vary record found at `headKey`, if any. */
  varyRecord: VaryEntry | undefined
  /** A stored response that may still serve: for revalidation or stale-if-error. */
  stale: ResponseEntry | undefined
  /** When the stale entry may serve if the handler fails (stale-if-error window open). */
  staleOnError: boolean
  /** The client's conditional headers, held aside while the handler runs. */
  conditionals: { 'if-none-match'?: string; 'if-modified-since'?: string } | undefined
  flight: Flight | undefined
  /** Token of the store's shared lock while this request computes the key for every process. */
  lockToken: string | undefined
  /** When the request reached the cache: its store calls share one storeTimeout from here. */
  arrived: number
  /** The response watcher is installed (once per request). */
  watching: boolean
  /** A stored response is being written through the watcher: nothing to decide or store. */
  replaying: boolean
  /** The handler is revalidating `stale` with its validators. */
  revalidating: boolean
  requestTime: number
  /** The key's last response was not storable: no coalescing, and the request reaches the app as sent. */
  pass: boolean
  /** The storage's invalidation epoch when the handler started (see Storage.invalidatedSince). */
  epoch: number
  /** The storage decision and the response head, kept until the body is complete. */
  pending: { decision: StoreDecision; status: number; headers: string[] } | undefined
}

type StoreDecision = Extract<ReturnType<typeof storageDecision>, { store: true }>

interface Instance {
  config: Config
  storage: Storage
  counters: Pick<CacheStats, 'hits' | 'misses' | 'bypasses' | 'stale' | 'revalidated' | 'errors'>
  flights: Map<string, Flight>
  refreshing: Set<string>
  /** Pending Vary-record updates per head key, chained so none overwrites another. */
  varyUpdates: Map<string, Promise<void>>
  /** Shared locks this process holds but failed to release, by lock name. */
  orphanLocks: Map<string, string>
  /**
   * When a lock call last failed or answered too late (0: never). Its reply may have been lost
   * after the lock was taken, leaving a lock nobody can release until it expires.
   */
  lockFailedAt: number
  report(error: Error, req?: IncomingMessage): void
}

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
  const instance: Instance = {
    config,
    counters,
    flights: new Map(),
    refreshing: new Set(),
    varyUpdates: new Map(),
    orphanLocks: new Map(),
    lockFailedAt: 0,
    storage: undefined as unknown as Storage,
    report(error, req) {
      counters.errors++
      debug('error: %s', error.message)
      if (config.onError === undefined) return
      try {
        config.onError(error, req)
      } catch (hookError) {
        debug('onError threw: %s', asError(hookError).message)
      }
    },
  }
  instance.storage = new Storage({
    store: config.store,
    coder: config.coder,
    timeout: config.storeTimeout,
    // A write behind a running invalidation is background work: it may wait as long as a waiter.
    sweepWait: config.lockTimeout,
    now: config.now,
    report: (error) => instance.report(error),
  })

  const middleware = function responseCache(req: IncomingMessage, res: ServerResponse, next: Next): void {
    handle(instance, req, res, next)
  } as ResponseCache

  middleware.invalidate = (pattern) => invalidatePattern(instance, pattern)
  middleware.delete = (key) => {
    assertPattern(key, 'key')
    return removeKey(instance, key)
  }
  middleware.clear = () => instance.storage.clear()
  middleware.stats = () => {
    const { landed, failed, refused } = instance.storage.writes
    return { ...counters, stores: landed, storeFailures: failed, storeRefused: refused, ...config.store.stats?.() }
  }
  middleware.close = async () => {
    openCaches.delete(middleware)
    await config.store.close?.()
  }
  openCaches.add(middleware)
  return middleware
}

// -------------------------------------------------------------------------------------------
// 1. Arrival: bypass what may not be cached, build the key, look it up.

function handle(cache: Instance, req: IncomingMessage, res: ServerResponse, next: Next): void {
  const { config } = cache
  const method = req.method
  if (method !== 'GET' && method !== 'HEAD') {
    // RFC 9110 §9.2.1: only an unsafe method may change the resource, and so invalidate it.
    if (method !== undefined && SAFE_METHODS.has(method)) return pass(cache, res, next, `method ${method}`)
    return unsafe(cache, req, res, next)
  }

  const bypass = requestBypassReason(method, req.headers)
  if (bypass !== undefined) return pass(cache, res, next, bypass)

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
      return pass(cache, res, next, 'key function threw')
    }
    const checked = checkKey(returned, 'option "key"')
    if (typeof checked !== 'string') {
      cache.report(checked, req)
      return pass(cache, res, next, checked.message)
    }
    primary = checked
  }
  if (primary === undefined) return pass(cache, res, next, 'request target is not a path')
  if (url.length > config.maxKeyLength || (config.key !== undefined && primary.length > config.maxKeyLength)) {
    return pass(cache, res, next, 'URL longer than maxKeyLength')
  }
  const headKey = storageKey(primary, requestHost(req, config.host), spelling)

  const rules = hasRequestDirectives(req.headers)
    ? requestRules(parseCacheControl(req.headers['cache-control']), req.headers.pragma, req.headers['cache-control'] !== undefined)
    : NO_REQUEST_RULES

  const refresh = (req as { [kRefresh]?: ResponseEntry })[kRefresh]
  if (refresh !== undefined) {
    // A background refresh (stale-while-revalidate) runs the handler; it never serves from storage.
    const ctx = newContext(cache, req, res, next, url, headKey, rules)
    ctx.stale = refresh
    return runHandler(ctx)
  }

  const found = lookup(cache, headKey, req)
  if (!isPromise(found)) return respond(cache, req, res, next, url, headKey, rules, found)
  const arrived = config.now()
  found.then(
    (result) => respond(cache, req, res, next, url, headKey, rules, result, undefined, arrived),
    (error) => {
      cache.report(asError(error), req)
      respond(cache, req, res, next, url, headKey, rules, NOT_FOUND, undefined, arrived)
    },
  )
}

interface Found {
  entry: ResponseEntry | undefined
  vary: VaryEntry | undefined
  /** The key's last response was not storable (hit-for-pass): go to the app at once, without coalescing. */
  pass?: true
}

/** Read the head key, and the variant it points to when the response varies. */
function lookup(cache: Instance, headKey: string, req: IncomingMessage): Maybe<Found> {
  const first = cache.storage.read(headKey)
  if (!isPromise(first)) return follow(cache, headKey, req, first, cache.config.storeTimeout)
  // One storeTimeout for the whole lookup: the variant read gets what the head read left.
  const started = cache.config.now()
  return first.then((entry) => follow(cache, headKey, req, entry, cache.config.storeTimeout - (cache.config.now() - started)))
}

function follow(cache: Instance, headKey: string, req: IncomingMessage, entry: Entry | undefined, budget: number): Maybe<Found> {
  if (entry === undefined) return NOT_FOUND
  if (entry.kind === 'response') return { entry, vary: undefined }
  if (entry.kind === 'pass') return entry.expires > cache.config.now() ? PASS : NOT_FOUND
  if (entry.kind !== 'vary') return NOT_FOUND // a value (createCache) stored under a response key
  if (budget <= 0) return NOT_FOUND
  const variant = cache.storage.read(headKey + '#' + variantPart(entry.vary, varyHeaders(req, entry.vary)), false, budget)
  if (!isPromise(variant)) return { entry: variant?.kind === 'response' ? variant : undefined, vary: entry }
  return variant.then((v) => ({ entry: v?.kind === 'response' ? v : undefined, vary: entry }))
}

const NOT_FOUND: Found = Object.freeze({ entry: undefined, vary: undefined })
const PASS: Found = Object.freeze({ entry: undefined, vary: undefined, pass: true })

// -------------------------------------------------------------------------------------------
// 2. Decide: hit, 304, stale, revalidate or miss.

function respond(
  cache: Instance,
  req: IncomingMessage,
  res: ServerResponse,
  next: Next,
  url: string,
  headKey: string,
  rules: RequestRules,
  found: Found,
  existing?: Context,
  arrived?: number,
): void {
  const { config } = cache
  const entry = found.entry
  // cacheRoute() restarts a request whose watcher is installed: a replay must pass through it.
  if (existing !== undefined) existing.replaying = entry !== undefined
  if (entry !== undefined) {
    const now = config.now()
    const age = currentAge(entry, now)
    const freshFor = entry.lifetime - age
    const acceptable = !rules.noCache && age <= rules.maxAge && freshFor >= rules.minFresh
    if (freshFor > 0 && acceptable) {
      if (replay(cache, req, res, headKey, found, entry, age, 'HIT')) return
      return respond(cache, req, res, next, url, headKey, rules, { entry: undefined, vary: found.vary }, existing)
    }
    const staleness = -freshFor
    if (freshFor <= 0 && !rules.noCache && age <= rules.maxAge && !entry.mustRevalidate) {
      if (staleness <= rules.maxStale && replay(cache, req, res, headKey, found, entry, age, 'STALE')) return
      if (staleness < entry.staleWhileRevalidate && replay(cache, req, res, headKey, found, entry, age, 'STALE')) {
        startRefresh(cache, req, url, headKey, found.vary, entry)
        return
      }
    }
    const ctx = contextFor(cache, req, res, next, url, headKey, rules, existing, found, arrived)
    ctx.stale = entry
    ctx.staleOnError = !entry.mustRevalidate && freshFor <= 0 && staleness < entry.staleIfError
    if (rules.onlyIfCached) return gatewayTimeout(cache, res)
    return runHandler(ctx)
  }
  if (rules.onlyIfCached) return gatewayTimeout(cache, res)
  miss(contextFor(cache, req, res, next, url, headKey, rules, existing, found, arrived))
}

/** cacheRoute() with a key of its own: look the request up again under that key. */
export function restartUnderKey(ctx: Context, headKey: string, next: Next): void {
  endFlight(ctx, undefined)
  restoreConditionals(ctx)
  ctx.conditionals = undefined
  ctx.headKey = headKey
  ctx.next = next
  ctx.stale = undefined
  ctx.staleOnError = false
  ctx.revalidating = false
  ctx.varyRecord = undefined
  const { cache, req, res, url, rules } = ctx
  const found = lookup(cache, headKey, req)
  if (!isPromise(found)) return respond(cache, req, res, next, url, headKey, rules, found, ctx)
  found.then(
    (result) => respond(cache, req, res, next, url, headKey, rules, result, ctx),
    () => respond(cache, req, res, next, url, headKey, rules, { entry: undefined, vary: undefined }, ctx),
  )
}

/**
 * Serve a stored entry; false when it cannot be written (Node refuses a header it holds), in
 * which case the entry is reported, deleted, and the request goes on as a miss.
 */
function replay(
  cache: Instance,
  req: IncomingMessage,
  res: ServerResponse,
  headKey: string,
  found: Found,
  entry: ResponseEntry,
  age: number,
  label: 'HIT' | 'STALE',
): boolean {
  try {
    writeEntry(cache, req, res, entry, { ageMs: age, label, route: undefined })
  } catch (error) {
    if (res.headersSent) throw error
    cache.report(new CorruptEntryError(`cannot be replayed (${asError(error).message})`), req)
    cache.storage.remove(found.vary === undefined ? headKey : headKey + '#' + variantPart(found.vary.vary, varyHeaders(req, found.vary.vary)))
    return false
  }
  if (label === 'HIT') cache.counters.hits++
  else cache.counters.stale++
  return true
}

/** How a stored response is replayed: its age, the outcome it reports, and for which route. */
interface Replay {
  ageMs: number
  label: 'HIT' | 'STALE'
  route: RouteConfig | undefined
  /** Answered with the response another request for the key just produced. */
  collapsed?: boolean
}

/**
 * Replay a stored response: a 304 when the request's validators match it, a 206 or 416 for a
 * Range request (RFC 9110 §14, from a stored 200), else the whole response. The prepared head's
 * slots take `Age`, the status header and `Cache-Status` (RFC 9211: the stored members, then ours).
 */
function writeEntry(cache: Instance, req: IncomingMessage, res: ServerResponse, entry: ResponseEntry, how: Replay): void {
  const { config } = cache
  const p = prepare(entry)
  let status = entry.status
  let headers = p.head
  let body: Uint8Array | undefined = entry.body
  if (status >= 200 && status < 300 && notModified(req.headers, p)) {
    status = 304
    headers = notModifiedHeaders(entry, p)
    body = undefined
  } else if (req.headers.range !== undefined && req.method === 'GET') {
    const answer = rangeResponse(entry, { range: req.headers.range, ifRange: firstValue(req.headers['if-range']) })
    if (answer !== undefined) {
      status = answer.status
      headers = rangeHead(headers, answer)
      body = answer.body
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

/** RFC 9110 §13.1.1–2: If-None-Match (weak comparison, lists, `*`), else If-Modified-Since. */
function notModified(headers: IncomingHttpHeaders, p: Prepared): boolean {
  if (headers['if-none-match'] === undefined && headers['if-modified-since'] === undefined) return false
  return fresh({ 'if-none-match': headers['if-none-match'], 'if-modified-since': headers['if-modified-since'] }, {
    etag: p.etag,
    'last-modified': p.lastModified,
  })
}

// -------------------------------------------------------------------------------------------
// 3. Miss: coalesce with a request already computing this key, or run the handler.

function miss(ctx: Context): void {
  const { cache, req } = ctx
  // Only a plain GET leads or joins a flight: a HEAD stores nothing, an authorised request may
  // get an answer the others must not see, a Range request a part of one, and a key whose last
  // response was not storable would make everyone wait for nothing (hit-for-pass).
  if (req.method !== 'GET' || req.headers.authorization !== undefined || req.headers.range !== undefined || ctx.pass) {
    return runHandler(ctx)
  }
  const flight = cache.flights.get(ctx.headKey)
  if (flight === undefined) return lead(ctx)

  let settled = false
  const timer = setTimeout(() => {
    settled = true
    debug('coalescing: waited lockTimeout for %s, going to the origin', ctx.headKey)
    runHandler(ctx)
  }, cache.config.lockTimeout)
  timer.unref?.()
  flight.promise.then((result) => {
    if (settled) return
    settled = true
    clearTimeout(timer)
    if (result !== undefined && variantPart(result.vary, varyHeaders(req, result.vary)) === result.variant && !ctx.rules.noCache) {
      cache.counters.hits++
      return writeEntry(cache, req, ctx.res, result.entry, { ageMs: currentAge(result.entry, cache.config.now()), label: 'HIT', route: ctx.route, collapsed: true })
    }
    // The leader's response is not shareable (or not for this variant): go to the origin now.
    runHandler(ctx)
  })
}

/**
 * First request for a key in this process: the others here wait on its flight. With a store
 * that offers a shared lock (Redis), it also takes the lock, so one process computes the
 * response while the others poll the store for it (nginx's proxy_cache_lock, across processes).
 */
function lead(ctx: Context): void {
  const { cache } = ctx
  startFlight(ctx)
  const store = cache.config.store
  // No shared lock while the store is failing or has just failed: a lock whose reply or unlock
  // was lost stays held until it expires, and everyone would poll it. In-process coalescing
  // (the flight above) still holds.
  if (typeof store.lock !== 'function' || typeof store.unlock !== 'function' || storeUnsettled(cache)) return runHandler(ctx)
  // A lock this process took and could not release (the store dropped the unlock) is still
  // ours: lead with it instead of polling our own lock until it expires.
  const orphan = cache.orphanLocks.get(lockName(ctx))
  if (orphan !== undefined) {
    cache.orphanLocks.delete(lockName(ctx))
    ctx.lockToken = orphan
    return runHandler(ctx)
  }
  // The lock comes out of what the lookup left of the request's storeTimeout.
  const budget = cache.config.storeTimeout - (cache.config.now() - ctx.arrived)
  if (budget < cache.config.storeTimeout / 4) return runHandler(ctx)
  const deadline = cache.config.now() + cache.config.lockTimeout
  tryLock(ctx, budget).then((token) => {
    if (token === undefined) return runHandler(ctx) // the lock itself failed: go on alone
    if (token !== null) {
      ctx.lockToken = token
      return runHandler(ctx)
    }
    pollForEntry(ctx, deadline, POLL_FIRST)
  })
}

const MAX_ORPHAN_LOCKS = 1000
const POLL_FIRST = 10
const POLL_MAX = 200

/** Another process holds the lock: read the store until its response lands or the lock frees. */
function pollForEntry(ctx: Context, deadline: number, delay: number): void {
  const { cache, req } = ctx
  const timer = setTimeout(() => {
    const found = lookup(cache, ctx.headKey, req)
    const check = (f: Found) => {
      const entry = f.entry
      const now = cache.config.now()
      if (entry !== undefined && currentAge(entry, now) < entry.lifetime) {
        if (replay(cache, req, ctx.res, ctx.headKey, f, entry, currentAge(entry, now), 'HIT')) {
          const variant = f.vary === undefined ? '' : variantPart(f.vary.vary, varyHeaders(req, f.vary.vary))
          return endFlight(ctx, { entry, vary: f.vary?.vary ?? [], variant })
        }
        return runHandler(ctx)
      }
      if (now >= deadline || storeUnsettled(cache)) {
        debug('coalescing: lock for %s still held after lockTimeout (or the store is failing), going to the origin', ctx.headKey)
        return runHandler(ctx)
      }
      tryLock(ctx).then((token) => {
        if (token === null) return pollForEntry(ctx, deadline, Math.min(delay * 2, POLL_MAX))
        // The holder finished without storing (its response was not shareable): do not queue
        // behind each other for it, every waiter goes to the origin now.
        if (token !== undefined) void cache.config.store.unlock!(lockName(ctx), token).catch(() => undefined)
        runHandler(ctx)
      })
    }
    if (isPromise(found)) found.then(check, () => runHandler(ctx))
    else check(found)
  }, delay)
  timer.unref?.()
}

function storeUnsettled(cache: Instance): boolean {
  const { lockTimeout, now } = cache.config
  return !cache.storage.available || cache.storage.failedWithin(lockTimeout) ||
    (cache.lockFailedAt !== 0 && now() - cache.lockFailedAt < lockTimeout)
}

/** A lock we hold but could not release: the next miss here reuses it; other processes wait at most lockTimeout. */
function rememberOrphan(cache: Instance, name: string, token: string): void {
  if (cache.orphanLocks.size >= MAX_ORPHAN_LOCKS) cache.orphanLocks.clear()
  cache.orphanLocks.set(name, token)
}

function lockName(ctx: Context): string {
  return ctx.headKey
}

/** The lock's token, `null` when someone else holds it, undefined when the store failed. */
function tryLock(ctx: Context, budget = ctx.cache.config.storeTimeout): Promise<string | null | undefined> {
  const { cache } = ctx
  return new Promise((resolve) => {
    let late = false
    const timer = setTimeout(() => {
      late = true
      cache.lockFailedAt = cache.config.now()
      resolve(undefined)
    }, budget)
    timer.unref?.()
    const name = lockName(ctx)
    cache.config.store.lock!(name, cache.config.lockTimeout).then(
      (token) => {
        clearTimeout(timer)
        // Granted after we stopped waiting: give it back, or every process polls until it expires.
        if (late && typeof token === 'string') void cache.config.store.unlock!(name, token).catch(() => rememberOrphan(cache, name, token))
        resolve(token)
      },
      (error) => {
        clearTimeout(timer)
        cache.lockFailedAt = cache.config.now()
        cache.report(asError(error), ctx.req)
        resolve(undefined)
      },
    )
  })
}

function startFlight(ctx: Context): void {
  let settle!: (result: FlightResult | undefined) => void
  const promise = new Promise<FlightResult | undefined>((resolve) => (settle = resolve))
  const key = ctx.headKey
  const flight: Flight = {
    promise,
    settle(result) {
      if (ctx.cache.flights.get(key) === flight) ctx.cache.flights.delete(key)
      settle(result)
    },
  }
  ctx.cache.flights.set(key, flight)
  ctx.flight = flight
}

/** Release the requests waiting on this one, and the shared lock once the entry is written. */
function endFlight(ctx: Context, result: FlightResult | undefined, written?: Maybe<void>): void {
  const flight = ctx.flight
  ctx.flight = undefined
  flight?.settle(result)
  const token = ctx.lockToken
  if (token === undefined) return
  ctx.lockToken = undefined
  const { cache } = ctx
  const name = lockName(ctx)
  const unlock = () =>
    void cache.config.store.unlock!(name, token).catch((error) => {
      cache.report(asError(error), ctx.req)
      rememberOrphan(cache, name, token)
    })
  if (isPromise(written)) written.then(unlock, unlock)
  else unlock()
}

/**
 * Run the handler and watch its response. The client's validators are held aside, so the
 * handler produces the full response that gets stored (RFC 9111 §4.3.2 leaves the 304 to us);
 * a stale entry's validators are sent instead, so the origin can answer 304 (§4.3.1).
 */
function runHandler(ctx: Context): void {
  const { cache, req } = ctx
  ctx.requestTime = cache.config.now()
  ctx.epoch = cache.storage.generation
  // The app sees the request as the client sent it whenever its answer will not be stored
  // anyway: a Range request (its If-Range too, RFC 9110 §13.1.5) and a hit-for-pass key.
  const asSent = req.method !== 'GET' || req.headers.range !== undefined || ctx.pass
  if (!asSent) holdConditionals(ctx)
  ctx.revalidating = ctx.stale !== undefined && !asSent
  if (ctx.revalidating) {
    const p = prepare(ctx.stale!)
    if (p.etag !== undefined) req.headers['if-none-match'] = p.etag
    const lastModified = headerOf(ctx.stale!.headers, 'last-modified')
    if (lastModified !== undefined) req.headers['if-modified-since'] = lastModified
  }
  if (cache.config.surrogate !== undefined) announceSurrogate(req, cache.config.surrogate)
  if (!ctx.watching) watch(ctx)
  if (ctx.staleOnError) staleOnTimeout(ctx)
  contexts.set(req, ctx)
  ctx.next()
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
 * stale entry is sent and the handler's late output is dropped.
 */
function staleOnTimeout(ctx: Context): void {
  const { cache, res, req } = ctx
  const timer = setTimeout(() => {
    if (res.headersSent || ctx.replaying || ctx.stale === undefined || !ctx.staleOnError) return
    debug('stale-if-error: origin took longer than %d ms for %s', cache.config.lockTimeout, ctx.headKey)
    cache.counters.stale++
    endFlight(ctx, undefined)
    restoreConditionals(ctx)
    ctx.replaying = true
    ctx.pending = undefined
    writeEntry(cache, req, res, ctx.stale, { ageMs: currentAge(ctx.stale, cache.config.now()), label: 'STALE', route: ctx.route })
    detach(res)
  }, cache.config.lockTimeout)
  timer.unref?.()
  res.once('finish', () => clearTimeout(timer))
  res.once('close', () => clearTimeout(timer))
}

/** The response went out without the handler: whatever it still sets or writes goes nowhere. */
function detach(res: ServerResponse): void {
  const ignore = function (this: ServerResponse) {
    return this
  }
  res.setHeader = ignore as unknown as ServerResponse['setHeader']
  res.appendHeader = ignore as unknown as ServerResponse['appendHeader']
  res.removeHeader = ignore as unknown as ServerResponse['removeHeader']
  res.writeHead = ignore as unknown as ServerResponse['writeHead']
}

/** Install the response watcher once per request; its decisions read the context's current state. */
function watch(ctx: Context): void {
  const { cache, req } = ctx
  ctx.watching = true
  capture(ctx.res, cache.config.maxBodySize, {
    head(res, completeBody): HeadDecision {
      if (ctx.replaying) return { action: 'pass', capture: false }
      const { config } = cache
      const now = config.now()
      const statusHeader = statusHeaderFor(config, ctx.route)
      const status = res.statusCode
      const surrogate = config.surrogate === undefined ? undefined : takeSurrogateControl(res, config.surrogate)
      const targeted = config.targets.length === 0 ? undefined : takeTargeted(res, config)

      // Revalidation answered 304: freshen the stored entry and send it (RFC 9111 §4.3.4).
      if (ctx.revalidating && status === 304) {
        const updated = freshen(ctx, res, now, { surrogate, targeted })
        cache.counters.revalidated++
        endFlight(ctx, updated && { entry: updated, vary: ctx.varyRecord?.vary ?? [], variant: variantOf(ctx) })
        return replaceWith(ctx, res, updated ?? ctx.stale!, 'REVALIDATED', status)
      }
      // stale-if-error (RFC 5861 §4): a server error is answered with the stale entry.
      if (ctx.staleOnError && status >= 500 && ctx.stale !== undefined) {
        cache.counters.stale++
        endFlight(ctx, undefined)
        debug('stale-if-error: origin answered %d for %s', status, ctx.headKey)
        return replaceWith(ctx, res, ctx.stale, 'STALE', status)
      }

      const decision = req.method !== 'GET'
        ? ({ store: false, reason: 'HEAD is answered from a stored GET only', bypass: false } as const)
        : ctx.route?.ttl === 0
          ? ({ store: false, reason: 'route is marked cacheRoute(false)', bypass: true } as const)
          : isErrorPage(res)
            ? ({ store: false, reason: 'error page from next(err) or no matching route', bypass: false } as const)
            : storageDecision({
              status,
              headers: res.getHeaders() as Record<string, string | string[] | number | undefined>,
              requestHeaders: req.headers,
              requestCC: ctx.rules === NO_REQUEST_RULES ? {} : parseCacheControl(req.headers['cache-control']),
              statusCodes: config.statusCodes,
              storeSetCookie: config.storeSetCookie,
              allowCookies: ctx.route?.allowCookies ?? false,
              freshness: freshnessConfig(ctx),
              now,
              surrogate,
              targeted,
            })
      if (!decision.store) {
        debug('not stored: %s (%s)', decision.reason, ctx.headKey)
        endFlight(ctx, undefined)
        rememberPass(ctx, decision.reason, now)
        const label = decision.bypass ? 'BYPASS' : 'MISS'
        if (label === 'BYPASS') cache.counters.bypasses++
        else cache.counters.misses++
        mark(cache, res, ctx.route, label, { fwd: decision.bypass ? 'bypass' : forwardReason(ctx), detail: decision.reason })
        // The client's own validators were held aside: answer them as the app would have.
        if (hasConditionals(ctx.conditionals) && status >= 200 && status < 300 && clientNotModified(ctx.conditionals, res)) {
          toNotModifiedAsApp(res)
          return { action: 'replace', capture: false, body: undefined }
        }
        return { action: 'pass', capture: false }
      }
      cache.counters.misses++
      if (completeBody !== undefined && !res.hasHeader('etag') && status >= 200 && status < 300 && completeBody.byteLength > 0) {
        // The whole body is known before the head goes out: give this response the ETag the
        // stored entry will carry, so the client can revalidate it against any later hit.
        res.setHeader('ETag', etag(Buffer.from(completeBody.buffer, completeBody.byteOffset, completeBody.byteLength), { weak: true }))
      }
      // The head is kept before the cache marks it: its own status header and Cache-Status member
      // describe this response, not the stored one.
      ctx.pending = { decision, status, headers: rawHeaders(res) }
      mark(cache, res, ctx.route, 'MISS', { fwd: forwardReason(ctx), stored: true, ttl: Math.floor(decision.lifetime / 1000) })
      // The client's own conditional request, answered against the response just produced.
      if (hasConditionals(ctx.conditionals) && status >= 200 && status < 300 && clientNotModified(ctx.conditionals, res)) {
        toNotModified(res, statusHeader)
        return { action: 'replace', capture: true, body: undefined }
      }
      return { action: 'pass', capture: true }
    },
    overflow() {
      debug('not stored: body larger than maxBodySize (%s)', ctx.headKey)
      ctx.pending = undefined
      endFlight(ctx, undefined)
    },
    done(body) {
      // req.headers keeps what the handler saw: loggers and the app may read it after end().
      const pending = ctx.pending
      ctx.pending = undefined
      if (pending === undefined || body === undefined || ctx.replaying) return endFlight(ctx, undefined)
      // RFC 9111 §3.3–3.4: a body that is not the length its head declared is incomplete (or
      // has more than the message): it went to the client as the app wrote it, and is not stored.
      const declared = headerOf(pending.headers, 'content-length')
      if (declared !== undefined && Number(declared) !== body.byteLength) {
        debug('not stored: body of %d bytes, Content-Length %s (%s)', body.byteLength, declared, ctx.headKey)
        return endFlight(ctx, undefined)
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
      })
      save(ctx, entry, decision.vary)
    },
    aborted() {
      ctx.pending = undefined
      endFlight(ctx, undefined)
    },
  })
}

/** The directives meant for this cache alone, taken off the response before Cache-Control is read. */
interface CacheControlFor {
  surrogate: SurrogateControl | undefined
  targeted: Directives | undefined
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

function freshnessConfig(ctx: Context) {
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
 * Write a stored response instead of the handler's 304 (REVALIDATED) or 5xx (STALE, under
 * stale-if-error): status and headers replaced in place; `forwarded` is the status the app sent.
 */
function replaceWith(ctx: Context, res: ServerResponse, entry: ResponseEntry, label: 'REVALIDATED' | 'STALE', forwarded: number): HeadDecision {
  for (const name of res.getHeaderNames()) res.removeHeader(name)
  const { config } = ctx.cache
  const now = config.now()
  const p = prepare(entry)
  const useNotModified = entry.status >= 200 && entry.status < 300 && hasConditionals(ctx.conditionals) &&
    notModified(ctx.conditionals as IncomingHttpHeaders, p)
  const headers = useNotModified ? notModifiedHeaders(entry, p) : p.head
  setHeaderList(res, headers.slice(0, -SLOTS))
  const age = currentAge(entry, now)
  res.setHeader('Age', String(Math.floor(age / 1000)))
  if (p.upstreamStatus !== undefined) res.setHeader('Cache-Status', p.upstreamStatus)
  mark(ctx.cache, res, ctx.route, label, { fwd: 'stale', fwdStatus: forwarded, ttl: Math.floor((entry.lifetime - age) / 1000) })
  res.statusCode = useNotModified ? 304 : entry.status
  return { action: 'replace', capture: false, body: useNotModified || ctx.req.method === 'HEAD' ? undefined : entry.body }
}

/** Apply a 304's headers to the stored entry and store the result (RFC 9111 §4.3.4). */
function freshen(ctx: Context, res: ServerResponse, now: number, control: CacheControlFor): ResponseEntry | undefined {
  const stale = ctx.stale!
  const update = rawHeaders(res)
  // RFC 9110 §6.6.1, RFC 9111 §4.3.4: a 304 without Date is dated when it was received (Node
  // adds one only on the wire, after this), or the entry would keep its old Date and age on.
  if (headerOf(update, 'date') === undefined) update.push('Date', new Date(now).toUTCString())
  const headers = freshenHeaders(stale.headers, update)
  const targets = ctx.cache.config.targets
  const asObject: OutgoingHttpHeaders = {}
  for (let i = 0; i < headers.length; i += 2) asObject[headers[i].toLowerCase()] = headers[i + 1]
  const decision = storageDecision({
    status: stale.status,
    headers: asObject as Record<string, string>,
    requestHeaders: ctx.req.headers,
    requestCC: {},
    statusCodes: ctx.cache.config.statusCodes,
    storeSetCookie: ctx.cache.config.storeSetCookie,
    allowCookies: ctx.route?.allowCookies ?? false,
    freshness: freshnessConfig(ctx),
    now,
    surrogate: control.surrogate,
    // The 304's targeted field, else the one stored with the response (when it is forwarded).
    targeted: control.targeted ?? (targets.length === 0 ? undefined : targetedDirectives((name) => asObject[name], targets)?.directives),
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
    statusHeader: statusHeaderFor(ctx.cache.config, ctx.route),
    routeStatusHeader: ctx.route?.statusHeader ?? stale.statusHeader,
  })
  save(ctx, entry, decision.vary)
  return entry
}

// -------------------------------------------------------------------------------------------
// 4. Store: the entry, and the Vary record that points to it.

/** Keep stale entries a while after expiry, for revalidation and stale serving. */
const RETAIN_WITH_VALIDATOR = 60_000

function retention(entry: ResponseEntry): number {
  const validator = headerOf(entry.headers, 'etag') !== undefined || headerOf(entry.headers, 'last-modified') !== undefined
  const extra = Math.max(entry.staleWhileRevalidate, entry.staleIfError, validator ? Math.max(entry.lifetime, RETAIN_WITH_VALIDATOR) : 0)
  return entry.lifetime + extra
}

function save(ctx: Context, entry: ResponseEntry, vary: string[]): void {
  const { cache } = ctx
  const ttl = retention(entry)
  if (ttl <= 0) return endFlight(ctx, undefined)
  // An invalidation that began while this response was computed may be about the data it was
  // made from: storing it now would bring back what the invalidation removed.
  if (cache.storage.invalidatedSince(ctx.headKey, ctx.epoch)) {
    debug('not stored: invalidated while it was computed (%s)', ctx.headKey)
    return endFlight(ctx, undefined)
  }
  const result: FlightResult = { entry, vary, variant: variantPart(vary, varyHeaders(ctx.req, vary)) }
  if (vary.length === 0) return endFlight(ctx, result, cache.storage.write(ctx.headKey, entry, ttl))
  // A varying response: the head key holds the list of variants, each variant its own key.
  const variantKey = ctx.headKey + '#' + result.variant
  // The record lists variants oldest first. Only a record that is written evicts: the
  // provisional one below only makes this process's own writes visible at once.
  const recordOf = (base: Entry | undefined, evict: boolean): VaryEntry => {
    const now = cache.config.now()
    const variants: string[] = []
    let expires = now + ttl
    if (base?.kind === 'vary' && sameList(base.vary, vary)) {
      for (const k of base.variants) if (k !== variantKey) variants.push(k)
      expires = Math.max(expires, base.expires)
    }
    variants.push(variantKey)
    while (variants.length > cache.config.maxVariants) {
      const dropped = variants.shift()!
      if (evict) cache.storage.remove(dropped)
    }
    return { kind: 'vary', vary, variants, expires }
  }
  const written = cache.storage.write(variantKey, entry, ttl)
  if (!isPromise(written)) {
    // A store that holds objects: nothing is in flight, and the current record is at hand.
    const record = recordOf(cache.storage.peek(ctx.headKey), true)
    ctx.varyRecord = record
    cache.storage.write(ctx.headKey, record, record.expires - cache.config.now())
    return endFlight(ctx, result)
  }
  // Seen at once in this process: the variant and a record built from what is known here.
  const provisional = recordOf(cache.storage.peek(ctx.headKey) ?? ctx.varyRecord, false)
  ctx.varyRecord = provisional
  cache.storage.stage(ctx.headKey, provisional)
  // Then the store's copy (other processes add variants too) gains this variant and is written
  // back. Updates of one key run one after another in this process, each adding only its own
  // variant, so the list stays in the order the variants were stored; across processes the cap
  // holds approximately (the last writer wins).
  const update = (): Promise<void> => {
    const merge = (stored: Entry | undefined) => {
      const record = recordOf(stored, true)
      return cache.storage.write(ctx.headKey, record, record.expires - cache.config.now())
    }
    return Promise.resolve(cache.storage.read(ctx.headKey, true)).then(merge)
  }
  const previous = cache.varyUpdates.get(ctx.headKey)
  const done = (previous === undefined ? update() : previous.then(update, update)).then(() => written)
  cache.varyUpdates.set(ctx.headKey, done)
  const forget = () => {
    if (cache.varyUpdates.get(ctx.headKey) === done) cache.varyUpdates.delete(ctx.headKey)
  }
  done.then(forget, forget)
  endFlight(ctx, result, done)
}

// -------------------------------------------------------------------------------------------
// 5. Stale-while-revalidate: one background refresh per key, sent through the app itself.

/**
 * Refresh an entry without a waiting client: an internal GET for the same URL and headers is
 * sent through the server's own request handler, answered into a response that goes nowhere,
 * and stored as any miss would be. One refresh per key at a time.
 */
function startRefresh(cache: Instance, req: IncomingMessage, url: string, headKey: string, vary: VaryEntry | undefined, entry: ResponseEntry): void {
  const key = vary === undefined ? headKey : headKey + '#' + variantPart(vary.vary, varyHeaders(req, vary.vary))
  if (cache.refreshing.has(key)) return
  const app = appOf(req)
  if (app === undefined) {
    debug('stale-while-revalidate: no request handler found to refresh %s', key)
    return
  }
  cache.refreshing.add(key)
  const done = () => cache.refreshing.delete(key)
  // A socket of its own that discards what is written: the client's socket is never touched.
  const socket = new Writable({ write: (_chunk, _encoding, callback) => callback() })
  const fake = new IncomingMessage(socket as unknown as import('node:net').Socket)
  fake.method = 'GET'
  fake.url = url
  fake.httpVersionMajor = 1
  fake.httpVersionMinor = 1
  fake.httpVersion = '1.1'
  // The same header fields as the request it refreshes for: the response is stored under the
  // variant those fields select (Vary), so a refresh for one user stays that user's.
  fake.headers = { ...req.headers }
  delete fake.headers['if-none-match']
  delete fake.headers['if-modified-since']
  delete fake.headers.range
  delete fake.headers['if-range']
  fake.rawHeaders = []
  for (const [name, value] of Object.entries(fake.headers)) {
    for (const line of Array.isArray(value) ? value : [value ?? '']) fake.rawHeaders.push(name, line)
  }
  fake.complete = true
  fake.push(null)
  ;(fake as { app?: unknown }).app = (req as { app?: unknown }).app
  ;(fake as { [kRefresh]?: ResponseEntry })[kRefresh] = entry
  const res = new ServerResponse(fake)
  res.assignSocket(socket as unknown as import('node:net').Socket)
  const timer = setTimeout(() => {
    done()
    res.destroy()
  }, cache.config.lockTimeout)
  timer.unref?.()
  res.once('finish', () => {
    clearTimeout(timer)
    done()
  })
  res.once('close', () => {
    clearTimeout(timer)
    done()
  })
  try {
    app(fake, res)
  } catch (error) {
    clearTimeout(timer)
    done()
    cache.report(asError(error), req)
  }
}

type App = (req: IncomingMessage, res: ServerResponse) => void

function appOf(req: IncomingMessage): App | undefined {
  const server = (req.socket as { server?: { listeners(event: string): unknown[] } } | undefined)?.server
  const listener = server?.listeners('request')[0]
  return typeof listener === 'function' ? (listener as App) : undefined
}

// -------------------------------------------------------------------------------------------
// 6. Unsafe methods and invalidation.

/**
 * RFC 9111 §4.4: a successful unsafe request invalidates the stored responses for its target,
 * and for same-origin Location / Content-Location. Here that is the path with every query
 * string. The response is held back until the invalidation is done, so a client that reads it
 * and then asks again never sees the old entry.
 */
function unsafe(cache: Instance, req: IncomingMessage, res: ServerResponse, next: Next): void {
  cache.counters.bypasses++
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
  const work = [...patterns].map((pattern) => cache.storage.removeMatching(pattern))
  return Promise.all(work).then(
    () => undefined,
    (error) => cache.report(asError(error), req),
  )
}

/**
 * Remove everything under a primary-key pattern: the keys themselves carry `#secondary` parts.
 * Resolves how many entries were removed once no reader can find them; rejects when it could
 * not be done — a pattern the store cannot honour, a store that failed, or one that did not
 * answer — so the caller can retry or alert instead of reading "nothing matched".
 */
export async function invalidatePattern(cache: Instance, pattern: string): Promise<number> {
  assertPattern(pattern)
  return guarded(cache, cache.storage.removeMatching(pattern.endsWith('*') ? pattern : `${pattern}#*`))
}

async function removeKey(cache: Instance, key: string): Promise<number> {
  if (!isLiteral(key)) throw new TypeError(`key must not contain "*", got ${JSON.stringify(key)}; use invalidate() for patterns`)
  return guarded(cache, cache.storage.removeMatching(`${key}#*`))
}

/**
 * Settle an invalidation within bounds. A deletion over many keys may rightly take a while, so
 * the whole is bounded by lockTimeout; a store that does not answer at all is found out sooner
 * by one round trip bounded by storeTimeout, made alongside it.
 */
function guarded(cache: Instance, work: Promise<number>): Promise<number> {
  return new Promise((resolve, reject) => {
    let settled = false
    const fail = (error: unknown) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      const err = asError(error)
      if (!(err instanceof TypeError) && err.name !== 'UnsupportedPatternError') cache.report(err)
      reject(err)
    }
    const timer = setTimeout(() => fail(new StoreTimeoutError('invalidate', cache.config.lockTimeout)), cache.config.lockTimeout)
    timer.unref?.()
    cache.storage.ping().catch(fail)
    work.then((n) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve(n)
    }, fail)
  })
}

// -------------------------------------------------------------------------------------------
// Small pieces.

/** The request's context after a lookup: the one cacheRoute() restarted, or a new one. */
function contextFor(
  cache: Instance,
  req: IncomingMessage,
  res: ServerResponse,
  next: Next,
  url: string,
  headKey: string,
  rules: RequestRules,
  existing: Context | undefined,
  found: Found,
  arrived: number | undefined,
): Context {
  let ctx: Context
  if (existing === undefined) {
    ctx = newContext(cache, req, res, next, url, headKey, rules)
  } else {
    ctx = existing
    ctx.replaying = false
  }
  if (arrived !== undefined) ctx.arrived = arrived
  ctx.varyRecord = found.vary
  ctx.pass = found.pass === true
  return ctx
}

function newContext(
  cache: Instance,
  req: IncomingMessage,
  res: ServerResponse,
  next: Next,
  url: string,
  headKey: string,
  rules: RequestRules,
): Context {
  return {
    cache,
    req,
    res,
    next,
    url,
    headKey,
    rules,
    route: undefined,
    varyRecord: undefined,
    stale: undefined,
    staleOnError: false,
    conditionals: undefined,
    flight: undefined,
    lockToken: undefined,
    arrived: cache.config.now(),
    watching: false,
    replaying: false,
    revalidating: false,
    requestTime: 0,
    pass: false,
    epoch: cache.storage.generation,
    pending: undefined,
  }
}

function pass(cache: Instance, res: ServerResponse, next: Next, reason: string): void {
  debug('bypass: %s', reason)
  cache.counters.bypasses++
  mark(cache, res, undefined, 'BYPASS', { fwd: 'bypass', detail: reason })
  next()
}

function gatewayTimeout(cache: Instance, res: ServerResponse): void {
  // RFC 9111 §5.2.1.7: only-if-cached with nothing usable stored → 504.
  cache.counters.misses++
  res.statusCode = 504
  mark(cache, res, undefined, 'MISS', { detail: 'only-if-cached' })
  res.setHeader('Content-Length', '0')
  res.end()
}

/**
 * Express and Connect answer `next(err)` (and "no route matched") through finalhandler, which
 * marks its page with exactly these two headers. Such a page is not the resource: never stored.
 */
function isErrorPage(res: ServerResponse): boolean {
  return res.getHeader('content-security-policy') === "default-src 'none'" && res.getHeader('x-content-type-options') === 'nosniff'
}

/**
 * Say what the cache did with a response being produced: the status header (`X-Cache`) and our
 * member of `Cache-Status` (RFC 9211), appended to what the app or an upstream cache set.
 */
function mark(cache: Instance, res: ServerResponse, route: RouteConfig | undefined, label: CacheStatus, status: CacheStatusParams): void {
  const header = statusHeaderFor(cache.config, route)
  if (header !== false) res.setHeader(header, label)
  const name = cache.config.cacheStatus
  if (name !== false) res.setHeader('Cache-Status', appendCacheStatus(res.getHeader('cache-status'), cacheStatusMember(name, status)))
}

/** RFC 9211 §2.2: why a request went to the app. */
function forwardReason(ctx: Context): ForwardReason {
  if (ctx.stale !== undefined) return 'stale'
  if (ctx.rules.noCache) return 'request'
  return ctx.varyRecord === undefined ? 'uri-miss' : 'vary-miss'
}

function statusHeaderFor(config: Config, route: RouteConfig | undefined): string | false {
  return route?.statusHeader ?? config.statusHeader
}

function hasRequestDirectives(headers: IncomingHttpHeaders): boolean {
  return headers['cache-control'] !== undefined || headers.pragma !== undefined
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

/** Conditional request fields the cache holds aside while the handler runs (see holdConditionals). */
const HELD_CONDITIONALS = ['if-none-match', 'if-modified-since'] as const

/**
 * The request's values of the headers a response varies on: exactly what the handler reads in
 * `req.headers`, where Node has already kept the first line of single-value fields (User-Agent,
 * Authorization, …) and joined the lines of list fields with `, `. Keyed by anything else (the
 * raw lines, say), a client that splits a header into two lines would reach, or plant, the
 * variant of a client who sends the joined value. Conditional fields held aside are read from
 * where they are held.
 */
function varyHeaders(req: IncomingMessage, names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = Object.create(null)
  if (names.length === 0) return out
  const held = contexts.get(req)?.conditionals
  const headers = req.headers
  for (const name of names) {
    const value = held !== undefined && (HELD_CONDITIONALS as readonly string[]).includes(name)
      ? held[name as (typeof HELD_CONDITIONALS)[number]]
      : Object.prototype.hasOwnProperty.call(headers, name) ? headers[name] : undefined
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : value
  }
  return out
}

function holdConditionals(ctx: Context): void {
  const h = ctx.req.headers
  ctx.conditionals = {}
  if (h['if-none-match'] !== undefined) ctx.conditionals['if-none-match'] = h['if-none-match']
  if (h['if-modified-since'] !== undefined) ctx.conditionals['if-modified-since'] = h['if-modified-since']
  delete h['if-none-match']
  delete h['if-modified-since']
}

/** Put the client's validators back, removing any the cache sent for revalidation. */
function restoreConditionals(ctx: Context): void {
  const held = ctx.conditionals
  if (held === undefined) return
  const h = ctx.req.headers
  delete h['if-none-match']
  delete h['if-modified-since']
  if (held['if-none-match'] !== undefined) h['if-none-match'] = held['if-none-match']
  if (held['if-modified-since'] !== undefined) h['if-modified-since'] = held['if-modified-since']
}

function hasConditionals(held: Context['conditionals']): held is NonNullable<Context['conditionals']> {
  return held !== undefined && (held['if-none-match'] !== undefined || held['if-modified-since'] !== undefined)
}

function clientNotModified(conditionals: NonNullable<Context['conditionals']>, res: ServerResponse): boolean {
  const tag = res.getHeader('etag')
  const lastModified = res.getHeader('last-modified') ?? res.getHeader('date')
  return fresh(conditionals, {
    etag: typeof tag === 'string' ? tag : undefined,
    'last-modified': typeof lastModified === 'string' ? lastModified : undefined,
  })
}

/**
 * Turn the response being produced into the 304 a cache sends (RFC 9110 §15.4.5): the fields a
 * stored 304 carries (the same list as a hit's, see entry.ts) and the cache's status header.
 */
function toNotModified(res: ServerResponse, statusHeader: string | false): void {
  const own = statusHeader === false ? undefined : statusHeader.toLowerCase()
  for (const name of res.getHeaderNames()) if (!NOT_MODIFIED_FIELDS.has(name) && name !== own) res.removeHeader(name)
  res.statusCode = 304
}

/**
 * Turn a response that is not stored into the 304 the app itself would have sent had it seen
 * the client's validators (Express `res.send`): every field kept but those of the body.
 */
function toNotModifiedAsApp(res: ServerResponse): void {
  for (const name of ['content-type', 'content-length', 'transfer-encoding']) res.removeHeader(name)
  res.statusCode = 304
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
  if (ctx.pass || ctx.req.method !== 'GET' || ctx.stale !== undefined || ctx.varyRecord !== undefined) return
  if (reason.startsWith('request') || ctx.req.headers.authorization !== undefined) return
  const marker: PassEntry = { kind: 'pass', expires: now + PASS_TTL }
  ctx.pass = true
  ctx.cache.storage.write(ctx.headKey, marker, PASS_TTL)
}

/**
 * cacheRoute(false) reached: nothing will be stored, so the requests waiting for this one go
 * now, and the app sees the request as the client sent it (its own validators, no revalidation).
 */
export function leaveUncached(ctx: Context): void {
  endFlight(ctx, undefined)
  restoreConditionals(ctx)
  ctx.conditionals = undefined
  ctx.revalidating = false
  ctx.staleOnError = false
  ctx.stale = undefined
}

/** The response's headers as a flat list, names in the letter case the app used. */
function rawHeaders(res: ServerResponse): string[] {
  const out: string[] = []
  // getRawHeaderNames (Node ≥ 15) keeps the letter case the app used.
  for (const name of (res as unknown as { getRawHeaderNames(): string[] }).getRawHeaderNames()) {
    const value = res.getHeader(name)
    if (value === undefined) continue
    if (Array.isArray(value)) for (const v of value) out.push(name, v)
    else out.push(name, String(value))
  }
  return out
}

/** Set a replay head on a response being produced: each field once, repeated lines as an array. */
function setHeaderList(res: ServerResponse, headers: ReplayHead): void {
  for (let i = 0; i < headers.length; i += 2) res.setHeader(headers[i] as string, headers[i + 1])
}

function headerOf(headers: readonly string[], lowerName: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i].toLowerCase() === lowerName) return headers[i + 1]
  return undefined
}

function variantOf(ctx: Context): string {
  return ctx.varyRecord === undefined ? '' : variantPart(ctx.varyRecord.vary, varyHeaders(ctx.req, ctx.varyRecord.vary))
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i])
}
