/** Shared types: the Store and Coder contracts and the shape of a cached entry. */

/** A value or a promise of it: store methods may be synchronous or asynchronous. */
export type MaybePromise<T> = T | Promise<T>

/**
 * Where entries live. Bytes in, bytes out: the coder does the encoding.
 *
 * | method | status |
 * | --- | --- |
 * | `get`, `set`, `delete`, `deleteMatching` | Required |
 * | `clear` | Recommended: removes only this store's own keys (its prefix) |
 * | `close` | Recommended: closes only what the store opened itself |
 * | `stats` | Optional: entries and bytes, when the store can tell cheaply |
 * | `lock`, `unlock` | Optional: a lock shared by every process, for coalescing misses across processes |
 * | `setIf` | Optional: compare-and-set, so that marks written by several processes at once are all kept |
 *
 * Keys reach the store without any prefix; a store adds its own. Patterns use one glob syntax
 * (see `pattern.ts`): `*` matches any run of characters, every other character is literal.
 */
export interface Store {
  /** A short name for logs and errors, e.g. `'memory'`, `'redis'`. */
  readonly name?: string
  /**
   * True when `get` answers from a local tier kept coherent with the other processes (see
   * redisStore's and memcachedStore's `local`). Informational: the cache works the same either way.
   */
  readonly localTier?: boolean
  /** The bytes stored under `key`, or `undefined`/`null` when there are none (or they expired). */
  get(key: string): MaybePromise<Uint8Array | undefined | null>
  /**
   * Optional: what `get` answers for each of `keys`, in order, read in one round trip. A hit reads
   * its entry and the small marks that judge it (tag and purge records) together through it; a
   * store without it gets one `get` per key, sent together.
   */
  getMany?(keys: readonly string[]): MaybePromise<readonly (Uint8Array | undefined | null)[]>
  /** Store `value` under `key` for `ttlMs` milliseconds (always > 0). */
  set(key: string, value: Uint8Array, ttlMs: number): MaybePromise<unknown>
  /**
   * Optional: store `value` under `key` for `ttlMs` only while the key holds exactly `expected`
   * (byte for byte, as `get` answers it; `null`: nothing), atomically with respect to every
   * process sharing the backend. Resolves `true` when stored, else what the key holds now
   * (`null`: nothing) for the caller to try again from. The cache writes its tag and purge marks
   * through it: without it, two processes marking one tag at once can leave the earlier time.
   */
  setIf?(key: string, expected: Uint8Array | null, value: Uint8Array, ttlMs: number): MaybePromise<true | Uint8Array | null>
  /** Remove one key. Resolves whether it existed, where the store can tell. */
  delete(key: string): MaybePromise<unknown>
  /** Remove every key matching `pattern`; resolves how many were removed. */
  deleteMatching(pattern: string): MaybePromise<number>
  /** Remove every key of this store (its own prefix only). */
  clear?(): MaybePromise<unknown>
  /** Release what the store opened itself. */
  close?(): MaybePromise<unknown>
  /** Size figures for `cache.stats()`. */
  stats?(): { entries?: number; bytes?: number }
  /**
   * Take a lock named `key` for `ttlMs`, shared by every process using the store. Resolves a
   * token for `unlock`, or `null` when another holder has it.
   */
  lock?(key: string, ttlMs: number): Promise<string | null>
  /** Release a lock taken with `lock`, only if `token` still holds it. */
  unlock?(key: string, token: string): Promise<unknown>
}

/** Turns entries into bytes and back. `decode` throws on anything it cannot read. */
export interface Coder {
  readonly name: string
  encode(entry: Entry): Uint8Array
  decode(bytes: Uint8Array): Entry
}

/** Version of the entry layout; an entry written with another version decodes as a miss. */
export const FORMAT_VERSION = 3

/**
 * Version of a response entry stored compressed (`ResponseEntry.encoding`). Its own number, so a
 * reader that predates compressed storage sees a version it does not know (a miss) instead of
 * replaying compressed bytes without Content-Encoding; every other entry keeps FORMAT_VERSION,
 * readable by both.
 */
export const COMPRESSED_FORMAT_VERSION = 4

/** A stored response. Times are epoch milliseconds; durations are milliseconds. */
export interface ResponseEntry {
  kind: 'response'
  status: number
  /**
   * Flat `[name, value, name, value, …]`, names in the app's letter case, in order. Never holds
   * `Content-Length`: a replay sends the length of `body`.
   */
  headers: string[]
  body: Uint8Array
  /** When the response was received (RFC 9111 §4.2.3 response_time). */
  responseTime: number
  /** corrected_initial_age of RFC 9111 §4.2.3. */
  initialAge: number
  /** Freshness lifetime; 0 means "revalidate before every reuse". */
  lifetime: number
  /** stale-while-revalidate window after expiry (0: none). */
  staleWhileRevalidate: number
  /** stale-if-error window after expiry (0: none). */
  staleIfError: number
  /** Serving stale is forbidden (must-revalidate, proxy-revalidate, s-maxage, no-cache). */
  mustRevalidate: boolean
  /**
   * The status header a route chose with cacheRoute({ statusHeader }): hits are answered before
   * routing, so the entry carries it. Undefined: the cache's own setting.
   */
  statusHeader?: string | false
  /** Cache tags (Surrogate-Key, Cache-Tag, cacheRoute({ tags })) that invalidateTags() reaches. */
  tags?: string[]
  /** When the request that produced a tagged entry reached the app: tag invalidations from then on cover it. */
  since?: number
  /**
   * The content coding `body` is stored in (the `compress` option); absent: as the app sent it.
   * `headers` then describe the identity form (no Content-Encoding; the ETag is the identity
   * form's), and each replay picks the form the request accepts (src/compress.ts).
   */
  encoding?: 'br' | 'gzip'
}

/**
 * Stands at a key whose response varies: names the request headers (lower case, sorted) that
 * select the variant, and the variant keys currently held (oldest first) so a cap can be kept.
 */
export interface VaryEntry {
  kind: 'vary'
  vary: string[]
  variants: string[]
  /** When this record itself expires (epoch ms); it outlives the variants it points to. */
  expires: number
}

/**
 * Stands at a key whose last response was not storable (Varnish's hit-for-pass): requests for it
 * go to the app at once instead of waiting for each other, until `expires` (epoch ms) or until a
 * storable response replaces it.
 */
export interface PassEntry {
  kind: 'pass'
  expires: number
}

/**
 * A value stored by `createCache()` / `cached()` under a key as given (no `#` parts). Times are
 * epoch milliseconds. Fresh until `expires`; from then until `staleUntil` it may be served while
 * one recompute runs (stale-while-revalidate); the store drops it at `staleUntil`.
 */
export interface ValueEntry {
  kind: 'value'
  /** The value itself (absent when `rejection` is set). */
  value: unknown
  /** When it was stored. */
  storedAt: number
  /** End of freshness. */
  expires: number
  /** End of the stale-while-revalidate window (`expires` when there is none). */
  staleUntil: number
  /** A cached rejection (negative caching, only when asked for): the error's name and message. */
  rejection?: { name: string; message: string }
  /** Cache tags that invalidateTags() reaches. */
  tags?: string[]
  /** When the computation that produced a tagged value began: tag invalidations from then on cover it. */
  since?: number
}

/**
 * Records when a cache tag was last invalidated, hard and soft: an entry carrying the tag whose
 * request reached the app no later than that is gone (hard) or stale (soft).
 */
export interface TagMark {
  kind: 'mark'
  /** Last hard invalidation (epoch ms; 0: never). */
  hard: number
  /** Last soft invalidation (epoch ms; 0: never). */
  soft: number
}

export type Entry = ResponseEntry | VaryEntry | ValueEntry | PassEntry | TagMark
