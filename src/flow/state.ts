/** What the request flow works on: the cache instance, the per-request object and its phase, and the public result types. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import createDebug from 'debug'
import type { RequestMessage } from '../diagnostics.js'
import type { Config, RouteConfig } from '../options.js'
import type { RequestRules, StorageDecision } from '../policy.js'
import type { Storage } from '../storage.js'
import type { ResponseEntry, VaryEntry } from '../types.js'

export const debug = createDebug('cachet')

export type Next = (error?: unknown) => void

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

/** The counters a cache keeps itself; the write counts come from its storage. */
export type Counters = Pick<CacheStats, 'hits' | 'misses' | 'bypasses' | 'stale' | 'revalidated' | 'errors'>

/** What a coalesced request receives from the one that ran the handler. */
export interface FlightResult {
  entry: ResponseEntry
  /** Vary field names of the response, with the variant part it was stored under. */
  vary: string[]
  variant: string
}

/** The requests of this process waiting for one request computing their key. */
export interface Flight {
  promise: Promise<FlightResult | undefined>
  settle(result: FlightResult | undefined): void
}

/** One cache: its configuration, storage gateway, counters, and what its requests share. */
export interface Instance {
  config: Config
  storage: Storage
  counters: Counters
  flights: Map<string, Flight>
  refreshing: Set<string>
  /** Pending Vary-record updates per head key, chained so none overwrites another. */
  varyUpdates: Map<string, Promise<void>>
  report(error: Error, req?: IncomingMessage): void
}

/**
 * Where a request is. Each phase carries only what exists in it, so the type checker knows, say,
 * that a request revalidates a stored entry only while it is revalidating.
 */
export type Phase =
  /** Looking the key up; nothing has been sent. */
  | { readonly name: 'lookup' }
  /** A stored response is being written: nothing is decided or stored from what goes out. */
  | { readonly name: 'replaying' }
  /**
   * The app produces the response. `stale` is a stored entry that was found but not used (a HEAD
   * or Range request, say); `fallback` says it may answer instead under stale-if-error.
   */
  | { readonly name: 'computing'; readonly stale: ResponseEntry | undefined; readonly fallback: boolean }
  /** The app was sent `stale`'s validators (RFC 9111 §4.3.1); a 304 freshens it. */
  | { readonly name: 'revalidating'; readonly stale: ResponseEntry; readonly fallback: boolean }

export const LOOKUP: Phase = Object.freeze({ name: 'lookup' })
export const REPLAYING: Phase = Object.freeze({ name: 'replaying' })

/** The storage decision and the response head, kept until the body is complete. */
export interface Pending {
  decision: Extract<StorageDecision, { store: true }>
  status: number
  headers: string[]
  /** The response's cache tags (Surrogate-Key, Cache-Tag, the route's). */
  tags: string[] | undefined
  /** Store it compressed (the `compress` option) if its body is large enough. */
  compress: boolean
}

/** The client's conditional fields, held aside while the app runs. */
export interface Held {
  'if-none-match'?: string
  'if-modified-since'?: string
}

/**
 * One request through the cache, created before its lookup. `restart()` (cacheRoute() with a
 * key of its own) and `settle()` (releasing waiters and the shared lock) are its only ways to
 * change course; see src/flow/coalesce.ts and src/middleware.ts.
 */
export interface Context {
  readonly cache: Instance
  readonly req: IncomingMessage
  readonly res: ServerResponse
  next: Next
  readonly url: string
  /** Storage key of the response without its variant part: `posts:GET#host`. */
  headKey: string
  readonly rules: RequestRules
  route: RouteConfig | undefined
  phase: Phase
  /** The Vary record found at `headKey`, if any. */
  varyRecord: VaryEntry | undefined
  /** The key's last response was not storable: no coalescing, and the app sees the request as sent. */
  pass: boolean
  conditionals: Held | undefined
  flight: Flight | undefined
  /** Token of the store's shared lock while this request computes the key for every process. */
  lockToken: string | undefined
  /** When the request reached the cache: its store calls share one storeTimeout from here. */
  arrived: number
  /** The response watcher is installed (once per request). */
  watched: boolean
  /** When the app was asked (RFC 9111 §4.2.3 request_time). */
  requestTime: number
  /** The storage's invalidation epoch when the app was asked (see Storage.invalidatedSince). */
  epoch: number
  pending: Pending | undefined
  /** The request's diagnostics_channel trace, when anyone listens (src/diagnostics.ts). */
  trace: RequestMessage | undefined
}

/**
 * Per-request state by request, so cacheRoute() can find it. Not a property of the request:
 * Express gives each request object its own hidden class (it swaps the prototype), so every
 * property added to one builds a new class, measured at 2–4 µs plus the garbage it leaves.
 */
export const contexts = new WeakMap<IncomingMessage, Context>()

/** A request's context, before its lookup. */
export function newContext(
  cache: Instance,
  req: IncomingMessage,
  res: ServerResponse,
  next: Next,
  where: { url: string; headKey: string; rules: RequestRules },
): Context {
  return {
    cache,
    req,
    res,
    next,
    url: where.url,
    headKey: where.headKey,
    rules: where.rules,
    route: undefined,
    phase: LOOKUP,
    varyRecord: undefined,
    pass: false,
    conditionals: undefined,
    flight: undefined,
    lockToken: undefined,
    arrived: cache.config.now(),
    watched: false,
    requestTime: 0,
    epoch: cache.storage.generation,
    pending: undefined,
    trace: undefined,
  }
}

/** The stored entry a request found but did not serve, in the phases that have one. */
export function staleOf(ctx: Context): ResponseEntry | undefined {
  return ctx.phase.name === 'computing' || ctx.phase.name === 'revalidating' ? ctx.phase.stale : undefined
}

/** The route pattern Express matched (`/posts/:id`), for labels that must stay few: never the URL. */
export function routeOf(req: IncomingMessage): string | undefined {
  const path = (req as { route?: { path?: unknown } }).route?.path
  return typeof path === 'string' ? path : undefined
}

/** The first value of a field in a flat `[name, value, …]` list. */
export function headerOf(headers: readonly string[], lowerName: string): string | undefined {
  for (let i = 0; i < headers.length; i += 2) if (headers[i].toLowerCase() === lowerName) return headers[i + 1]
  return undefined
}

/** The response's headers as a flat list, names in the letter case the app used. */
export function rawHeaders(res: ServerResponse): string[] {
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
