/** createCache(): a cache of values on the same stores, coders, timeouts and invalidation as responseCache(). */
import { AsyncLocalStorage } from 'node:async_hooks'
import { performance } from 'node:perf_hooks'
import createDebug from 'debug'
import { jsonCoder } from './coders/json.js'
import type { Duration } from './options.js'
import { assertPattern, compilePattern } from './pattern.js'
import {
  assertKnownOptions,
  assertOptionsObject,
  checkCoder,
  checkStore,
  describe,
  optionalFunction,
  parseDuration,
  positiveDuration,
  softOption,
} from './validate.js'
import {
  POLL_FIRST,
  POLL_MAX,
  Storage,
  StoreTimeoutError,
  StoreUnavailableError,
  TIMED_OUT,
  asError,
  checkTags,
  isPromise,
  race,
  releaseFrames,
  type InvalidationState,
  type Maybe,
} from './storage.js'
import { kEntryStore, memoryStore } from './stores/memory.js'
import type { Coder, Entry, Store, ValueEntry } from './types.js'

const debug = createDebug('cachet')

/** Options of createCache(): the vocabulary of responseCache() where they overlap. */
export interface ValueCacheOptions {
  /** Where values live; the same store may serve a `responseCache()` too. @default memoryStore() */
  store?: Store
  /** How values become bytes (see jsonCoder() and msgpackCoder() for the types each keeps). @default jsonCoder() */
  coder?: Coder
  /** How long a value stays fresh, when a call names no ttl of its own. @default '5m' */
  ttl?: Duration
  /**
   * After `ttl`, how long `getOrSet()` / `cached()` still answer with the stale value while one
   * recompute runs in the background. 0: none. @default 0
   */
  staleWhileRevalidate?: Duration
  /** Longest a store call may take before the call goes on without the store. @default '200ms' */
  storeTimeout?: Duration
  /**
   * Longest a miss waits for another caller (in this process or, on a store with `lock`, in
   * another one) computing the same key; also the bound on `invalidate()`. @default '5s'
   */
  lockTimeout?: Duration
  /** Called with each store, coder and entry failure (and each failed background recompute). @default debug output only */
  onError?: (error: Error) => void
  /** Clock in epoch ms (tests move it instead of sleeping). @default Date.now */
  now?: () => number
}

/** Per-call freshness. */
export interface SetOptions {
  /** @default the cache's `ttl` */
  ttl?: Duration
  /** @default the cache's `staleWhileRevalidate` */
  staleWhileRevalidate?: Duration
  /** Cache tags of the value, for `invalidateTags()` (shared with responses on the same store). @default none */
  tags?: readonly string[]
}

/** Options of one getOrSet() call. */
export interface GetOrSetOptions extends SetOptions {
  /**
   * Store a rejection of `compute` for this long, so callers get the same error back without
   * calling it again (only the error's name and message are kept). `false`: a rejection is
   * never stored. @default false
   */
  cacheRejections?: Duration | false
}

/** One value for `warm()`: `value` as it is, or the result of `compute()`. */
export interface WarmEntry {
  key: string
  value?: unknown
  compute?: () => unknown
  /** @default the cache's `ttl` */
  ttl?: Duration
}

/** What warm() did with one entry. */
export interface WarmResult {
  key: string
  /** The value was computed and the store took the write. */
  ok: boolean
  error?: Error
}

/** What health() found. */
export interface HealthReport {
  /** The store answered one read within `storeTimeout`. */
  ok: boolean
  /** How long that read took (or until it was given up), in milliseconds. */
  latencyMs: number
  /** Why it failed: the store's error or a StoreTimeoutError. */
  error?: Error
}

/** Counters of one value cache since it was created. */
export interface ValueCacheStats {
  /** Fresh values returned. */
  hits: number
  /** Lookups that found nothing usable (each led or joined a computation in `getOrSet()`). */
  misses: number
  /** Stale values returned while a recompute ran. */
  stale: number
  /** Misses that joined a computation already running in this process. */
  coalesced: number
  /** Values (and cached rejections) written. */
  sets: number
  /** Store, coder and entry failures (each also went to `onError`). */
  errors: number
  /** Entries held by the store, when it can tell (the memory store can); responses included on a shared store. */
  entries?: number
  bytes?: number
}

/** A cache of values; keys are stored exactly as given. */
export interface ValueCache {
  /** The fresh value under `key`, or `undefined` (missing, stale, expired, or the store failed). */
  get<T = unknown>(key: string): Promise<T | undefined>
  /** Store `value` under `key`; resolves once the store took it (or failed, which goes to `onError`). */
  set(key: string, value: unknown, options?: SetOptions): Promise<void>
  /** Remove one key. */
  delete(key: string): Promise<void>
  /**
   * The value under `key`, or the result of `compute()`, stored. Concurrent misses for a key call
   * `compute` once in this process, and once across processes on a store with `lock`.
   */
  getOrSet<T>(key: string, compute: () => T | Promise<T>, options?: GetOrSetOptions): Promise<T>
  /**
   * Remove every key matching `pattern` (`*` is the only wildcard); resolves how many were
   * removed. `soft` marks them stale instead (resolves 0): served within their stale window
   * while one recompute runs, recomputed otherwise — in this process, and in every process on a
   * store with a local tier (see README "Soft purge").
   */
  invalidate(pattern: string, options?: { soft?: boolean }): Promise<number>
  /**
   * Invalidate every value carrying any of `tags` — and every response carrying them, when a
   * responseCache() shares the store — at constant cost (see README "Cache tags"); `soft` makes
   * the values stale instead (served while one recompute runs, within `staleWhileRevalidate`).
   * Rejects when the store could not record it.
   */
  invalidateTags(tags: readonly string[], options?: { soft?: boolean }): Promise<void>
  /** One read of the store, timed. Never rejects. */
  health(): Promise<HealthReport>
  /** Store many values, `concurrency` at a time; one result per entry, in order. Never rejects once the input is valid. */
  warm(entries: Iterable<WarmEntry>, options?: { /** @default 8 */ concurrency?: number }): Promise<WarmResult[]>
  stats(): ValueCacheStats
  /** Stop using the store; closes it only when the cache created it (no `store` option). */
  close(): Promise<void>
}

/** Resolved freshness of one call, in ms. */
export interface Times {
  ttl: number
  staleWhileRevalidate: number
  /** 0: rejections are not stored. */
  rejections: number
  /** Tags of what is stored: given, or computed from the value (cached()'s `tags`). */
  tags?: readonly string[] | ((value: unknown) => readonly string[])
}

interface Config {
  store: Store
  ownStore: boolean
  coder: Coder
  ttl: number
  staleWhileRevalidate: number
  storeTimeout: number
  lockTimeout: number
  onError: ((error: Error) => void) | undefined
  now: () => number
}

/** A computation running in this process for one key. */
interface Flight {
  promise: Promise<Outcome>
  /** The store's invalidation generation when the lookup that started it began (see Storage `invalidatedSince`). */
  since: number
  /** What it stored, once it has. */
  entry: ValueEntry | undefined
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown }

/** The instance behind a ValueCache handle, for cached(). */
export interface Instance {
  config: Config
  storage: Storage
  counters: Omit<ValueCacheStats, 'entries' | 'bytes'>
  flights: Map<string, Flight>
  /** Counts finished computations, to order them after the lookups that began before them. */
  finishes: number
  /**
   * What finished computations stored, by key, for `storeTimeout` after they finished: a lookup
   * that began before one finished may read the store's older answer (its read was sent first).
   */
  finished: Map<string, { finish: number; entry: ValueEntry }>
  defaults: Times
  report(error: Error): void
}

/** Internal: the instance behind a handle. */
export const kInstance = Symbol('cachet.valueCache')

/** Every value cache not closed yet: the module-level `invalidate()` reaches them all. */
export const openValueCaches = new Set<ValueCache>()

const KNOWN_OPTIONS = ['store', 'coder', 'ttl', 'staleWhileRevalidate', 'storeTimeout', 'lockTimeout', 'onError', 'now']
/** Options of one getOrSet() / set() call, and of cached(). */
const CALL_OPTIONS = ['ttl', 'staleWhileRevalidate', 'cacheRejections', 'tags']
const HEALTH_KEY = 'cachet:health'
/** Errors reported while a warm() write runs, so the write can tell whether it landed. */
const writeErrors = new AsyncLocalStorage<Error[]>()

/**
 * Create a value cache.
 *
 * ```ts
 * const store = redisStore({ client })
 * app.use(responseCache({ store }))
 * const cache = createCache({ store, ttl: '1m' })
 * const posts = await cache.getOrSet('posts:list:1', () => db.posts.list(1))
 * ```
 */
export function createCache(options: ValueCacheOptions = {}): ValueCache {
  const config = resolveValueOptions(options)
  const counters = { hits: 0, misses: 0, stale: 0, coalesced: 0, sets: 0, errors: 0 }
  const instance: Instance = {
    config,
    counters,
    flights: new Map(),
    finishes: 0,
    finished: new Map(),
    defaults: { ttl: config.ttl, staleWhileRevalidate: config.staleWhileRevalidate, rejections: 0 },
    storage: undefined as unknown as Storage,
    report(error) {
      counters.errors++
      releaseFrames(error)
      writeErrors.getStore()?.push(error)
      debug('value cache error: %s', error.message)
      if (config.onError === undefined) return
      try {
        config.onError(error)
      } catch (hookError) {
        debug('onError threw: %s', asError(hookError).message)
      }
    },
  }
  instance.storage = new Storage({
    store: bytesOnly(config.store),
    coder: config.coder,
    timeout: config.storeTimeout,
    sweepWait: config.lockTimeout,
    now: config.now,
    report: (error) => instance.report(error),
  })

  const cache: ValueCache & { [kInstance]: Instance } = {
    [kInstance]: instance,
    get(key) {
      assertKey(key)
      return Promise.resolve(readValue(instance, key)).then(function freshValue(entry) {
        const now = config.now()
        if (entry?.kind === 'value' && entry.rejection === undefined && now < entry.expires) {
          counters.hits++
          return entry.value as never
        }
        counters.misses++
        return undefined
      })
    },
    set(key, value, options) {
      assertKey(key)
      const times = resolveTimes(instance.defaults, options, 'set')
      return Promise.resolve(write(instance, key, { ok: true, value }, times).written)
    },
    delete(key) {
      assertKey(key)
      forgetFinished(instance, (candidate) => candidate === key)
      return Promise.resolve(instance.storage.invalidateKey(key))
    },
    getOrSet(key, compute, options) {
      assertKey(key)
      if (typeof compute !== 'function') throw new TypeError(`getOrSet: compute must be a function, got ${describe(compute)}`)
      return getOrSet(instance, key, compute, resolveTimes(instance.defaults, options, 'getOrSet'))
    },
    invalidate(pattern, options) {
      assertPattern(pattern)
      if (softOption('invalidate', options)) return softInvalidate(instance, pattern)
      return invalidate(instance, pattern)
    },
    async invalidateTags(tags, options) {
      const list = checkTags(tags)
      const soft = softOption('invalidateTags', options)
      try {
        await instance.storage.markTags(list, soft)
      } catch (error) {
        instance.report(asError(error))
        throw error
      }
    },
    health: () => health(instance),
    warm(entries, options) {
      return warm(instance, checkWarm(entries, instance.defaults), concurrencyOf(options))
    },
    stats: () => ({ ...counters, ...config.store.stats?.() }),
    async close() {
      openValueCaches.delete(cache)
      if (config.ownStore) await config.store.close?.()
    },
  }
  openValueCaches.add(cache)
  return cache
}

/** The instance behind a handle made by createCache(); a TypeError for anything else. */
export function instanceOf(cache: unknown, what: string): Instance {
  const instance = (cache as { [kInstance]?: Instance } | null | undefined)?.[kInstance]
  if (instance === undefined) throw new TypeError(`${what} must be a cache made by createCache(), got ${describe(cache)}`)
  return instance
}

// -------------------------------------------------------------------------------------------
// Lookup, coalescing, stale-while-revalidate.

/** Fresh hit, stale hit (plus one background recompute), or a miss that leads or joins a flight. */
export function getOrSet<T>(instance: Instance, key: string, compute: () => T | Promise<T>, times: Times): Promise<T> {
  const call: Call<T> = { key, compute, times, since: { generation: instance.storage.generation, finishes: instance.finishes } }
  const found = readValue(instance, key)
  if (!isPromise(found)) return decide(instance, call, found)
  return found.then((entry) => decide(instance, call, entry))
}

/** One getOrSet() call: its key, how to compute it, its times, and where its lookup began. */
interface Call<T = unknown> {
  key: string
  compute: () => T | Promise<T>
  times: Times
  /** The store's invalidation generation, and how many computations had finished, when the lookup began. */
  since: { generation: number; finishes: number }
}

function decide<T>(instance: Instance, call: Call<T>, found: Entry | undefined): Promise<T> {
  const { key, since } = call
  let entry = found
  const now = instance.config.now()
  if (entry === undefined || entry.kind !== 'value' || now >= entry.expires) {
    // A read sent before a computation here finished answers what the store held then; what
    // that computation stored is newer: use it rather than compute again.
    const done = instance.finished.get(key)
    if (done !== undefined && done.finish > since.finishes) entry = done.entry
  }
  if (entry !== undefined && entry.kind === 'value') {
    if (now < entry.expires) {
      instance.counters.hits++
      return deliver(outcomeOf(entry))
    }
    if (now < entry.staleUntil) {
      instance.counters.stale++
      if (!instance.flights.has(key)) {
        flight(instance, call).then(function refreshed(outcome) {
          if (!outcome.ok) instance.report(asError(outcome.error))
        })
      }
      return deliver(outcomeOf(entry))
    }
  }
  instance.counters.misses++
  const running = instance.flights.get(key)
  if (running !== undefined) {
    instance.counters.coalesced++
    return running.promise.then(deliver<T>)
  }
  return flight(instance, call).then(deliver<T>)
}

function deliver<T>(outcome: Outcome): Promise<T> {
  return outcome.ok ? Promise.resolve(outcome.value as T) : Promise.reject(outcome.error)
}

function outcomeOf(entry: ValueEntry): Outcome {
  if (entry.rejection === undefined) return { ok: true, value: entry.value }
  const error = new Error(entry.rejection.message)
  error.name = entry.rejection.name
  return { ok: false, error }
}

/** Start the one computation of `key` in this process. */
function flight(instance: Instance, call: Call): Promise<Outcome> {
  const { key } = call
  const f: Flight = { promise: undefined as unknown as Promise<Outcome>, since: call.since.generation, entry: undefined }
  f.promise = lead(instance, call, f)
  instance.flights.set(key, f)
  f.promise.then(function landed() {
    if (instance.flights.get(key) === f) instance.flights.delete(key)
    if (f.entry === undefined) return
    const done = { finish: ++instance.finishes, entry: f.entry }
    instance.finished.set(key, done)
    // Every read sent before now has answered (or timed out) within storeTimeout.
    setTimeout(function forget() {
      if (instance.finished.get(key) === done) instance.finished.delete(key)
    }, instance.config.storeTimeout + 1).unref?.()
  })
  return f.promise
}

/**
 * Compute `key` for this process. On a store with `lock` (Redis), take the shared lock first:
 * while another process holds it, read the store (backing off from POLL_FIRST to POLL_MAX ms)
 * until its value lands, the lock frees, or `lockTimeout` passes, as responses do
 * (src/flow/coalesce.ts). A result computed across a matching invalidation (one that began
 * after the lookup that started `f`) goes to the callers but is not stored.
 */
async function lead(instance: Instance, call: Call, f: Flight): Promise<Outcome> {
  const { config, storage } = instance
  const { key, compute, times } = call
  let token: string | undefined
  if (storage.locksUsable(config.lockTimeout)) {
    const deadline = config.now() + config.lockTimeout
    let taken = await storage.lock(key, config.lockTimeout)
    let delay = POLL_FIRST
    while (taken === null) {
      await pause(delay)
      delay = Math.min(delay * 2, POLL_MAX)
      const entry = await readValue(instance, key, true)
      if (entry?.kind === 'value' && config.now() < entry.expires) return outcomeOf(entry)
      if (config.now() >= deadline || !storage.locksUsable(config.lockTimeout)) {
        debug('value cache: lock for %s still held after lockTimeout (or the store is failing), computing', key)
        break
      }
      taken = await storage.lock(key, config.lockTimeout)
      // The holder finished without storing (its computation failed): every waiter computes now.
      if (typeof taken === 'string') {
        storage.unlock(key, taken)
        taken = undefined
      }
    }
    if (typeof taken === 'string') token = taken
  }
  let outcome: Outcome
  const startedAt = config.now()
  try {
    outcome = { ok: true, value: await compute() }
  } catch (error) {
    outcome = { ok: false, error }
  }
  let written: Maybe<void> | undefined = undefined
  if (!storage.invalidatedSince(key, f.since)) ({ entry: f.entry, written } = write(instance, key, outcome, times, startedAt))
  if (token !== undefined) {
    const release = () => storage.unlock(key, token!)
    if (isPromise(written)) void written.then(release)
    else release()
  }
  return outcome
}

/** Store an outcome: a value, or a rejection when `times.rejections` asks for it. */
function write(instance: Instance, key: string, outcome: Outcome, times: Times, startedAt?: number): { entry?: ValueEntry; written?: Maybe<void> } {
  const now = instance.config.now()
  let entry: ValueEntry
  let ttl: number
  if (outcome.ok) {
    ttl = times.ttl + times.staleWhileRevalidate
    entry = { kind: 'value', value: outcome.value, storedAt: now, expires: now + times.ttl, staleUntil: now + ttl }
    const tags = tagsOf(instance, times, outcome.value)
    if (tags !== undefined) {
      const since = startedAt ?? now
      // A tag invalidated while the value was computed: the value may predate it.
      if (instance.storage.tagsInvalidatedSince(tags, since)) return {}
      entry.tags = tags
      entry.since = since
    }
  } else {
    if (times.rejections === 0) return {}
    ttl = times.rejections
    const error = asError(outcome.error)
    entry = {
      kind: 'value',
      value: undefined,
      storedAt: now,
      expires: now + ttl,
      staleUntil: now + ttl,
      rejection: { name: error.name, message: error.message },
    }
  }
  instance.counters.sets++
  return { entry, written: instance.storage.write(key, entry, ttl, startedAt) }
}

/** The value's tags: the call's, or computed from the value; a tags function that fails is reported and gives none. */
function tagsOf(instance: Instance, times: Times, value: unknown): string[] | undefined {
  let tags: readonly string[] | undefined
  try {
    tags = typeof times.tags === 'function' ? times.tags(value) : times.tags
  } catch (error) {
    instance.report(asError(error))
    return undefined
  }
  if (tags === undefined) return undefined
  if (!Array.isArray(tags) || !tags.every((t) => typeof t === 'string' && t.trim() !== '')) {
    instance.report(new TypeError(`tags must be an array of non-empty strings, got ${describe(tags)}`))
    return undefined
  }
  return tags.length === 0 ? undefined : [...new Set(tags.map((t) => t.trim()))]
}

/**
 * Read a value as tag invalidations and soft pattern purges leave it (src/storage.ts
 * `invalidationState`): gone after a hard one, stale from the moment of a soft one (served
 * within its stale window, if any).
 */
function readValue(instance: Instance, key: string, fromStore = false): Maybe<Entry | undefined> {
  const { storage } = instance
  const apply = (entry: Entry | undefined): Maybe<Entry | undefined> => {
    if (entry?.kind !== 'value') return entry
    const state = storage.invalidationState(key, { since: entry.since, responseTime: entry.storedAt, tags: entry.tags }, undefined, ahead)
    const judged = (s: InvalidationState): Entry | undefined => {
      if (s.state === 'ok') return entry
      if (s.state === 'gone') {
        storage.remove(key)
        return undefined
      }
      return { ...entry, expires: Math.min(entry.expires, s.at) }
    }
    return isPromise(state) ? state.then(judged) : judged(state)
  }
  // The marks that judged the value last time are read with it (src/storage.ts `readAhead`).
  const { entry: found, ahead } = storage.readAhead(key, undefined, fromStore)
  return isPromise(found) ? found.then(apply) : apply(found)
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref?.())
}

// -------------------------------------------------------------------------------------------
// Invalidation, health, warming.

/**
 * Remove every matching key. Flights of matching keys still running return their result to
 * their callers but do not store it (it may have been computed from what was just invalidated).
 * A pattern the store cannot honour rejects; a failing or stalled store is reported and counts
 * as 0 removed, with the wait bounded by `lockTimeout`.
 */
export function invalidate(instance: Instance, pattern: string): Promise<number> {
  forgetFinished(instance, compilePattern(pattern))
  const { lockTimeout } = instance.config
  return race(instance.storage.removeMatching(pattern), lockTimeout).then(
    function removed(n) {
      if (n !== TIMED_OUT) return n
      instance.report(new StoreTimeoutError('invalidate', lockTimeout))
      return 0
    },
    function failed(error) {
      const err = asError(error)
      if (err instanceof TypeError || err.name === 'UnsupportedPatternError') throw err
      instance.report(err)
      return 0
    },
  )
}

/** Mark every matching value stale (see ValueCache.invalidate); rejects when the store could not record it. */
function softInvalidate(instance: Instance, pattern: string): Promise<number> {
  forgetFinished(instance, compilePattern(pattern))
  return instance.storage.softInvalidate(pattern).then(
    () => 0,
    (error) => {
      instance.report(asError(error))
      throw error
    },
  )
}

/** Drop what finished computations of matching keys stored: lookups must not prefer it to the store any more. */
function forgetFinished(instance: Instance, matches: (key: string) => boolean): void {
  for (const key of instance.finished.keys()) if (matches(key)) instance.finished.delete(key)
}

/** One read of the store, straight through (no circuit breaker), bounded by storeTimeout. */
async function health(instance: Instance): Promise<HealthReport> {
  const { store, storeTimeout } = instance.config
  const started = performance.now()
  try {
    const answer = await race(
      Promise.resolve().then(() => store.get(HEALTH_KEY)),
      storeTimeout,
    )
    if (answer === TIMED_OUT) throw new StoreTimeoutError('get', storeTimeout)
    return { ok: true, latencyMs: performance.now() - started }
  } catch (error) {
    return { ok: false, latencyMs: performance.now() - started, error: asError(error) }
  }
}

interface CheckedWarmEntry {
  key: string
  entry: WarmEntry
  times: Times
}

function checkWarm(entries: unknown, defaults: Times): CheckedWarmEntry[] {
  if (entries === null || typeof entries !== 'object' || typeof (entries as Iterable<unknown>)[Symbol.iterator] !== 'function') {
    throw new TypeError(`warm(entries) must be an iterable of { key, value } or { key, compute }, got ${describe(entries)}`)
  }
  const out: CheckedWarmEntry[] = []
  for (const entry of entries as Iterable<WarmEntry>) {
    if (entry === null || typeof entry !== 'object') throw new TypeError(`warm(entries): each entry must be an object, got ${describe(entry)}`)
    assertKey(entry.key, 'warm(entries): key')
    if (entry.compute !== undefined && typeof entry.compute !== 'function') {
      throw new TypeError(`warm(entries): compute of ${JSON.stringify(entry.key)} must be a function, got ${describe(entry.compute)}`)
    }
    const ttl = entry.ttl === undefined ? defaults.ttl : positiveDuration('ttl', entry.ttl, `warm(entries): entry ${JSON.stringify(entry.key)} option`)
    out.push({ key: entry.key, entry, times: { ...defaults, ttl } })
  }
  return out
}

function concurrencyOf(options: unknown): number {
  if (options === undefined) return 8
  if (options === null || typeof options !== 'object') throw new TypeError(`warm options must be an object, got ${describe(options)}`)
  const value = (options as { concurrency?: unknown }).concurrency
  if (value === undefined) return 8
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new TypeError(`warm option "concurrency" must be an integer ≥ 1, got ${describe(value)}`)
  }
  return value
}

/** Compute and write each entry, at most `concurrency` at a time. */
async function warm(instance: Instance, entries: CheckedWarmEntry[], concurrency: number): Promise<WarmResult[]> {
  const results: WarmResult[] = new Array(entries.length)
  let next = 0
  const worker = async () => {
    while (next < entries.length) {
      const i = next++
      const { key, entry, times } = entries[i]
      try {
        const value = entry.compute === undefined ? entry.value : await entry.compute()
        await checkedWrite(instance, key, value, times)
        results[i] = { key, ok: true }
      } catch (error) {
        results[i] = { key, ok: false, error: asError(error) }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, entries.length) }, worker))
  return results
}

/** A write that rejects with what went wrong (the error also went to onError). */
async function checkedWrite(instance: Instance, key: string, value: unknown, times: Times): Promise<void> {
  if (!instance.storage.available) throw new StoreUnavailableError()
  const errors: Error[] = []
  await writeErrors.run(errors, () => write(instance, key, { ok: true, value }, times).written)
  if (errors.length > 0) throw errors[0]
}

// -------------------------------------------------------------------------------------------
// Options.

function resolveValueOptions(options: ValueCacheOptions): Config {
  assertOptionsObject('createCache', options)
  assertKnownOptions('createCache', options, KNOWN_OPTIONS)
  const o = options
  return Object.freeze({
    store: o.store === undefined ? memoryStore() : checkStore(o.store),
    ownStore: o.store === undefined,
    coder: o.coder === undefined ? jsonCoder() : checkCoder(o.coder),
    ttl: o.ttl === undefined ? 300_000 : positiveDuration('ttl', o.ttl),
    staleWhileRevalidate: o.staleWhileRevalidate === undefined ? 0 : parseDuration(o.staleWhileRevalidate, 'option "staleWhileRevalidate"'),
    storeTimeout: o.storeTimeout === undefined ? 200 : positiveDuration('storeTimeout', o.storeTimeout),
    lockTimeout: o.lockTimeout === undefined ? 5000 : positiveDuration('lockTimeout', o.lockTimeout),
    onError: optionalFunction('onError', o.onError) as Config['onError'],
    now: (optionalFunction('now', o.now) as Config['now'] | undefined) ?? Date.now,
  })
}

/** Resolve one call's freshness options against the defaults (cached() does this once, at construction). */
export function resolveTimes(defaults: Times, options: GetOrSetOptions | undefined, what: string): Times {
  if (options === undefined) return defaults
  assertOptionsObject(what, options)
  assertKnownOptions(what, options, CALL_OPTIONS)
  const { ttl, staleWhileRevalidate, cacheRejections, tags } = options
  if (tags !== undefined && typeof tags !== 'function' && !(Array.isArray(tags) && tags.every((t) => typeof t === 'string' && t.trim() !== ''))) {
    throw new TypeError(`${what} option "tags" must be an array of non-empty strings, got ${describe(tags)}`)
  }
  return {
    tags: tags === undefined ? defaults.tags : (tags as Times['tags']),
    ttl: ttl === undefined ? defaults.ttl : positiveDuration('ttl', ttl, `${what} option`),
    staleWhileRevalidate:
      staleWhileRevalidate === undefined ? defaults.staleWhileRevalidate : parseDuration(staleWhileRevalidate, `${what} option "staleWhileRevalidate"`),
    rejections:
      cacheRejections === undefined || cacheRejections === false ? defaults.rejections : positiveDuration('cacheRejections', cacheRejections, `${what} option`),
  }
}

function assertKey(key: unknown, what = 'key'): asserts key is string {
  if (typeof key !== 'string' || key.length === 0) throw new TypeError(`${what} must be a non-empty string, got ${describe(key)}`)
}

/**
 * The memory store keeps the middleware's entries as objects; values go in as bytes (through
 * the coder), so the store's byte bound counts them. Other stores hold bytes anyway.
 */
function bytesOnly(store: Store): Store {
  if ((store as { [kEntryStore]?: unknown })[kEntryStore] === undefined) return store
  return {
    name: store.name,
    get: (key) => store.get(key),
    set: (key, value, ttlMs) => store.set(key, value, ttlMs),
    delete: (key) => store.delete(key),
    deleteMatching: (pattern) => store.deleteMatching(pattern),
    clear: () => store.clear?.(),
  }
}
