/** Options of responseCache() and cacheRoute(), validated and resolved once, at construction. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { checkCacheStatusName } from './cache-status.js'
import { paramFilter, type ParamFilter } from './key.js'
import {
  assertKnownOptions,
  assertOptionsObject,
  boolean,
  checkCoder,
  checkStore,
  describe,
  fraction,
  integer,
  optionalFunction,
  parseDuration,
  positiveDuration,
} from './validate.js'
import { memoryStore } from './stores/memory.js'
import { jsonCoder } from './coders/json.js'
import type { Coder, Store } from './types.js'

/** A duration: a number of seconds, or a string with a unit: `'500ms'`, `'30s'`, `'5m'`, `'1h'`, `'1d'`. */
export type Duration = number | string

/**
 * Computes the primary cache key of a request (replaces the default `posts:42:GET?a=1`). It must
 * return a non-empty string synchronously: async key functions are not supported. Anything else
 * (a Promise, `undefined`, a number…) serves that request uncached (`X-Cache: BYPASS`) and goes
 * to `onError`; a throw does the same. The key is used as returned: no normalisation, and
 * `ignoreParams` / `onlyParams` do not apply.
 */
export type KeyFunction = (req: IncomingMessage) => string

/** Receives every store, coder and entry failure; the request itself is served uncached. */
export type ErrorHandler = (error: Error, req?: IncomingMessage) => void

export interface CacheOptions {
  /** Where entries live. @default memoryStore() */
  store?: Store
  /** How entries become bytes for stores that hold bytes. @default jsonCoder() */
  coder?: Coder
  /**
   * Freshness for responses whose own headers say nothing (`Cache-Control: max-age`/`s-maxage`,
   * `Expires`). Without it (spec mode) only the response's headers, or a route's cacheRoute()
   * ttl, make a response storable. @default undefined
   */
  ttl?: Duration
  /** Custom primary key (see {@link KeyFunction}). @default the path-segment key of README "Keys and invalidation" */
  key?: KeyFunction
  /**
   * The host part of every key. By default the request's Host (with its port), so one client
   * cannot poison another host's entries. A string pins it to that name (a single-site app, or
   * tests that connect on a new port each time); `false` leaves it out. X-Forwarded-Host,
   * X-Forwarded-Proto and Forwarded stay keyed whatever this says. @default the request's Host
   */
  host?: string | false
  /**
   * Query parameters left out of the default key, by decoded name; `*` is the only wildcard:
   * `['utm_*', 'gclid', 'fbclid']`. The app still sees them. Not with `onlyParams`, and not
   * applied to a custom `key`. @default [] (every parameter is keyed)
   */
  ignoreParams?: string[]
  /**
   * Key on these query parameters only (decoded names, `*` wildcard); every other parameter is
   * left out of the default key. Not with `ignoreParams`, and not applied to a custom `key`.
   * @default undefined (every parameter is keyed)
   */
  onlyParams?: string[]
  /** Largest body stored, in bytes; larger responses stream through uncached. @default 1_048_576 */
  maxBodySize?: number
  /** Longest request URL (and custom key) looked up; longer requests bypass. @default 4096 */
  maxKeyLength?: number
  /** Statuses that may be stored. @default [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501] */
  statusCodes?: number[]
  /** Name of the header that reports HIT/MISS/BYPASS/STALE/REVALIDATED; `false` to omit it. @default 'X-Cache' */
  statusHeader?: string | false
  /** Longest a store call may take before the request goes on uncached. @default '200ms' */
  storeTimeout?: Duration
  /**
   * Longest a request waits for another request computing the same key; also how long the
   * origin may take when a stale entry could answer under `stale-if-error`. @default '5s'
   */
  lockTimeout?: Duration
  /** Most variants kept per key for responses with `Vary`. @default 32 */
  maxVariants?: number
  /** Fraction of `Date − Last-Modified` used as heuristic freshness (RFC 9111 §4.2.2); 0 turns it off. @default 0.1 */
  heuristicFraction?: number
  /** Cap on heuristic freshness. @default '1h' */
  maxHeuristicTtl?: Duration
  /** Store responses with `Set-Cookie` (the cookie itself is never stored or replayed). @default false */
  storeSetCookie?: boolean
  /**
   * Act as a surrogate (W3C Edge Architecture): announce `Surrogate-Capability: <token>="Surrogate/1.0"`
   * to the app and obey the `Surrogate-Control` directives meant for this cache (`max-age`,
   * `no-store`, `stale-while-revalidate`, `stale-if-error`) in preference to `Cache-Control`,
   * removing them from the response. `true` uses the device token `cachet`; a string names
   * another. Off by default, so a CDN in front still sees the app's `Surrogate-Control`. @default false
   */
  surrogate?: boolean | string
  /**
   * The member name cachet adds to `Cache-Status` (RFC 9211) on every response that passed
   * through it, appended to any `Cache-Status` the app or an upstream cache set
   * (`cachet; hit; ttl=25`, `cachet; fwd=uri-miss; stored; ttl=30`); `false` adds none.
   * @default 'cachet'
   */
  cacheStatus?: string | false
  /**
   * Targeted cache-control fields (RFC 9213) cachet obeys, in precedence order, e.g.
   * `['cachet-cache-control', 'cdn-cache-control']`: the first one present and valid (a
   * Structured Field dictionary) replaces `Cache-Control` for cachet's own storage and freshness
   * decisions; clients still receive `Cache-Control` as the app sent it. @default []
   */
  targets?: string[]
  /**
   * Which targeted fields are removed from what clients receive (and from the stored response):
   * `true` all of `targets`, `false` none, or a list of names. A field meant for caches after
   * cachet (`CDN-Cache-Control`) is usually forwarded. @default ['cachet-cache-control']
   */
  removeTargets?: boolean | string[]
  /**
   * Keep the `Surrogate-Key` and `Cache-Tag` response headers on what clients receive (to pass
   * them on to a CDN in front); by default they are taken off and kept only with the entry.
   * @default false
   */
  forwardTags?: boolean
  /**
   * Called with every invalidation this cache runs — patterns, tags, soft or hard, and the ones
   * unsafe requests cause — so an app can forward it (to a CDN's purge API, say). Errors it
   * throws go to `onError`. @default undefined
   */
  onInvalidate?: (event: InvalidationEvent) => void
  /**
   * Store responses compressed, in this content coding, and serve each request the form its
   * Accept-Encoding takes: the stored bytes as they are, or a copy decoded (or re-encoded in the
   * other coding) from them. One entry per response, not one per encoding. Only responses worth
   * it: 200 or 203, a compressible Content-Type, at least `compressMinBytes`, no Content-Encoding
   * of their own, no `Cache-Control: no-transform`, no `Vary` on Accept-Encoding. See README
   * "Compressed storage" for when it pays. @default false
   */
  compress?: 'br' | 'gzip' | false
  /** Smallest body `compress` compresses, in bytes. @default 1024 */
  compressMinBytes?: number
  /** Called with each store, coder or entry failure. @default debug output only */
  onError?: ErrorHandler
  /** Clock in epoch ms (tests move it instead of sleeping). @default Date.now */
  now?: () => number
}

export interface RouteOptions {
  /** Primary key for this route (see {@link KeyFunction}: synchronous, a non-empty string). */
  key?: KeyFunction
  /** Header name override for this route. */
  statusHeader?: string | false
  /**
   * Let the ttl fallback store responses to requests that carry `Cookie` (by default those are
   * stored only when the response's own headers allow it). @default false
   */
  allowCookies?: boolean
  /**
   * The route ttl takes precedence over the response's own freshness (`max-age=0` from
   * `express.static`, `Expires`, `s-maxage`) for what this cache stores; never over
   * `no-store`, `private`, `Set-Cookie`, `Vary: *` or the Authorization rule. Clients still
   * receive the app's headers unchanged. `no-cache` and `must-revalidate` make the entry
   * revalidate once the route ttl ends instead of serving it stale. @default false
   */
  override?: boolean
  /**
   * Cache tags for this route's responses, next to any `Surrogate-Key` / `Cache-Tag` header the
   * app sets: `cacheRoute('5m', { tags: (req) => [\`post:${req.params.id}\`] })`. Synchronous.
   */
  tags?: TagFunction
}

/** Computes a response's cache tags from the request and the response being produced. */
export type TagFunction = (req: IncomingMessage, res: ServerResponse) => readonly string[]

/** What an invalidation reached: passed to the `onInvalidate` option, e.g. to purge a CDN too. */
export interface InvalidationEvent {
  /** Key patterns invalidated (`posts:*`), for pattern invalidations and unsafe requests. */
  patterns?: string[]
  /** Cache tags invalidated. */
  tags?: string[]
  /** Marked stale instead of removed. */
  soft: boolean
  /** What asked for it. */
  source: 'invalidate' | 'invalidateTags' | 'delete' | 'clear' | 'request'
}

/** The resolved, frozen configuration the middleware runs on. Durations in ms. */
export interface Config {
  store: Store
  coder: Coder
  ttl: number | undefined
  key: KeyFunction | undefined
  /** Pinned host part, `false` for none, undefined for the request's Host. */
  host: string | false | undefined
  /** Which query parameters the default key keeps; undefined keeps all. */
  keepParam: ParamFilter | undefined
  maxBodySize: number
  maxKeyLength: number
  statusCodes: ReadonlySet<number>
  statusHeader: string | false
  storeTimeout: number
  lockTimeout: number
  maxVariants: number
  heuristicFraction: number
  maxHeuristicTtl: number
  storeSetCookie: boolean
  /** Surrogate device token, when the cache acts as a surrogate. */
  surrogate: string | undefined
  /** Cache-Status member name, or false for none. */
  cacheStatus: string | false
  /** Targeted field names (lower case), in precedence order. */
  targets: readonly string[]
  /** Targeted field names (lower case) removed from the response. */
  removeTargets: ReadonlySet<string>
  forwardTags: boolean
  /** The content coding responses are stored in, or false to store them as sent. */
  compress: 'br' | 'gzip' | false
  compressMinBytes: number
  onInvalidate: ((event: InvalidationEvent) => void) | undefined
  onError: ErrorHandler | undefined
  now: () => number
}

export interface RouteConfig {
  /** ms; 0 means "never cache this route". */
  ttl: number
  key: KeyFunction | undefined
  statusHeader: string | false | undefined
  allowCookies: boolean
  /** The route ttl wins over the response's freshness fields (RouteOptions.override). */
  override: boolean
  tags: TagFunction | undefined
}

export { parseDuration }

export const DEFAULT_STATUS_CODES = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]

const KNOWN_OPTIONS = new Set([
  'store',
  'coder',
  'ttl',
  'key',
  'host',
  'ignoreParams',
  'onlyParams',
  'maxBodySize',
  'maxKeyLength',
  'statusCodes',
  'statusHeader',
  'storeTimeout',
  'lockTimeout',
  'maxVariants',
  'heuristicFraction',
  'maxHeuristicTtl',
  'storeSetCookie',
  'surrogate',
  'onError',
  'now',
  'cacheStatus',
  'targets',
  'removeTargets',
  'forwardTags',
  'onInvalidate',
  'compress',
  'compressMinBytes',
])

/** Validate `options` and resolve every default; throws a TypeError naming the bad option. */
export function resolveOptions(options: CacheOptions = {}): Config {
  assertOptionsObject('responseCache', options)
  assertKnownOptions('responseCache', options, KNOWN_OPTIONS)
  const o = options
  return Object.freeze({
    store: o.store === undefined ? memoryStore() : checkStore(o.store),
    coder: o.coder === undefined ? jsonCoder() : checkCoder(o.coder),
    ttl: o.ttl === undefined ? undefined : parseDuration(o.ttl, 'option "ttl"'),
    key: optionalFunction('key', o.key) as KeyFunction | undefined,
    host: hostOption(o.host),
    keepParam: keepParam(o.ignoreParams, o.onlyParams),
    maxBodySize: integer('maxBodySize', o.maxBodySize, 1_048_576, 0),
    maxKeyLength: integer('maxKeyLength', o.maxKeyLength, 4096, 1),
    statusCodes: new Set(statusCodes(o.statusCodes)),
    statusHeader: headerName('statusHeader', o.statusHeader, 'X-Cache'),
    storeTimeout: o.storeTimeout === undefined ? 200 : positiveDuration('storeTimeout', o.storeTimeout),
    lockTimeout: o.lockTimeout === undefined ? 5000 : positiveDuration('lockTimeout', o.lockTimeout),
    maxVariants: integer('maxVariants', o.maxVariants, 32, 1),
    heuristicFraction: fraction('heuristicFraction', o.heuristicFraction, 0.1),
    maxHeuristicTtl: o.maxHeuristicTtl === undefined ? 3_600_000 : parseDuration(o.maxHeuristicTtl, 'option "maxHeuristicTtl"'),
    storeSetCookie: boolean('storeSetCookie', o.storeSetCookie, false),
    surrogate: surrogateToken(o.surrogate),
    cacheStatus:
      o.cacheStatus === undefined || o.cacheStatus === false ? (o.cacheStatus ?? 'cachet') : checkCacheStatusName(o.cacheStatus, 'option "cacheStatus"'),
    ...targetOptions(o.targets, o.removeTargets),
    forwardTags: boolean('forwardTags', o.forwardTags, false),
    compress: compressOption(o.compress),
    compressMinBytes: integer('compressMinBytes', o.compressMinBytes, 1024, 0),
    onInvalidate: optionalFunction('onInvalidate', o.onInvalidate) as Config['onInvalidate'],
    onError: optionalFunction('onError', o.onError) as ErrorHandler | undefined,
    now: (optionalFunction('now', o.now) as (() => number) | undefined) ?? Date.now,
  })
}

const ROUTE_OPTIONS = ['key', 'statusHeader', 'allowCookies', 'override', 'tags']

/** Resolve cacheRoute(ttl, options); `false` and `0` mean "never cache this route". */
export function resolveRoute(ttl: unknown, options: RouteOptions = {}): RouteConfig {
  const ms = ttl === false ? 0 : parseDuration(ttl, 'cacheRoute(ttl)')
  assertOptionsObject('cacheRoute', options)
  assertKnownOptions('cacheRoute', options, ROUTE_OPTIONS)
  return Object.freeze({
    ttl: ms,
    key: optionalFunction('key', options.key, 'cacheRoute option') as KeyFunction | undefined,
    statusHeader: options.statusHeader === undefined ? undefined : headerName('statusHeader', options.statusHeader, 'X-Cache', 'cacheRoute option'),
    allowCookies: boolean('allowCookies', options.allowCookies, false, 'cacheRoute option'),
    override: boolean('override', options.override, false, 'cacheRoute option'),
    tags: optionalFunction('tags', options.tags, 'cacheRoute option') as TagFunction | undefined,
  })
}

const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

function headerName(name: string, value: unknown, fallback: string, what = 'option'): string | false {
  if (value === undefined) return fallback
  if (value === false) return false
  if (typeof value !== 'string' || !FIELD_NAME.test(value)) {
    throw new TypeError(`${what} "${name}" must be a header name or false, got ${describe(value)}`)
  }
  return value
}

function fieldNames(name: string, value: unknown): string[] {
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string' && FIELD_NAME.test(v))) {
    throw new TypeError(`option "${name}" must be an array of header names, got ${describe(value)}`)
  }
  return value.map((v: string) => v.toLowerCase())
}

function targetOptions(targets: unknown, remove: unknown): { targets: readonly string[]; removeTargets: ReadonlySet<string> } {
  const names = targets === undefined ? [] : fieldNames('targets', targets)
  let removed: string[]
  if (remove === undefined) removed = ['cachet-cache-control']
  else if (remove === true) removed = names
  else if (remove === false) removed = []
  else removed = fieldNames('removeTargets', remove)
  return { targets: Object.freeze(names), removeTargets: new Set(removed.filter((n) => names.includes(n))) }
}

function surrogateToken(value: unknown): string | undefined {
  if (value === undefined || value === false) return undefined
  if (value === true) return 'cachet'
  if (typeof value !== 'string' || !FIELD_NAME.test(value)) {
    throw new TypeError(`option "surrogate" must be true, false or a device token (a header token like 'cachet'), got ${describe(value)}`)
  }
  return value
}

function statusCodes(value: unknown): number[] {
  if (value === undefined) return DEFAULT_STATUS_CODES
  if (!Array.isArray(value) || !value.every((s) => Number.isInteger(s) && s >= 200 && s <= 599)) {
    throw new TypeError(`option "statusCodes" must be an array of statuses from 200 to 599, got ${describe(value)}`)
  }
  for (const s of value) {
    if (s === 206 || s === 304) throw new TypeError(`option "statusCodes" cannot include ${s}: partial and 304 responses are never stored`)
  }
  return value
}

function compressOption(value: unknown): 'br' | 'gzip' | false {
  if (value === undefined || value === false) return false
  if (value !== 'br' && value !== 'gzip') throw new TypeError(`option "compress" must be 'br', 'gzip' or false, got ${describe(value)}`)
  return value
}

function hostOption(value: unknown): string | false | undefined {
  if (value === undefined || value === false) return value
  if (typeof value !== 'string' || value.length === 0 || /[\x00-\x20\x7f]/.test(value)) {
    throw new TypeError(`option "host" must be false or a host name (a non-empty string without spaces), got ${describe(value)}`)
  }
  return value
}

function paramNames(name: string, value: unknown): string[] {
  if (!Array.isArray(value) || !value.every((n) => typeof n === 'string' && n.length > 0)) {
    throw new TypeError(`option "${name}" must be an array of non-empty parameter names (\`*\` is a wildcard), got ${describe(value)}`)
  }
  return value
}

function keepParam(ignore: unknown, only: unknown): ParamFilter | undefined {
  if (ignore !== undefined && only !== undefined) {
    throw new TypeError(`options "ignoreParams" and "onlyParams" cannot be used together, got ${describe(ignore)} and ${describe(only)}`)
  }
  if (only !== undefined) return paramFilter(paramNames('onlyParams', only), true)
  if (ignore === undefined) return undefined
  const names = paramNames('ignoreParams', ignore)
  return names.length === 0 ? undefined : paramFilter(names, false)
}
