/** memcachedStore(): a Store on memjs, with namespace generations because memcached cannot list keys, locks, and an opt-in local tier. */
import { createHash, randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import { Writable } from 'node:stream'
import createDebug from 'debug'
import { LRUCache } from 'lru-cache'
import { assertPattern, compilePattern, namespaceHolding, namespacesOf, RECORD_PREFIX } from '../pattern.js'
import { assertKnownOptions, describe, describeObject } from '../validate.js'
import type { Store } from '../types.js'
import { ChangeLog, parseLocal, type LocalTierOptions, type LogMark } from './local-tier.js'
import { CasClient, hasConnection } from './memcached-cas.js'
import { canBatch, GetBatch } from './memcached-batch.js'
import { asBuffer } from './bytes.js'

export { namespacesOf }

const debugStore = createDebug('cachet:memcached')
const debugAll = createDebug('cachet')

/**
 * Debug output: under `DEBUG=cachet` with every other reason cachet gives (prefixed `memcached:`),
 * or on its own under `DEBUG=cachet:memcached`.
 */
function debug(format: string, ...args: unknown[]): void {
  if (debugStore.enabled) debugStore(format, ...args)
  else if (debugAll.enabled) debugAll(`memcached: ${format}`, ...args)
}

/**
 * A Memcached client as the store uses it: exactly the methods it calls, so that cachet's types
 * need no memjs installed. A memjs `Client` satisfies it.
 */
export interface MemcachedClient {
  /** One entry per server (memjs `Server`s; the store listens for their `'error'` events). */
  readonly servers: readonly object[]
  get(key: string): Promise<{ value: Buffer | null }>
  set(key: string, value: string | Buffer, options: { expires?: number }): Promise<boolean>
  add(key: string, value: string | Buffer, options: { expires?: number }): Promise<boolean>
  delete(key: string): Promise<boolean>
  close(): void
}

/**
 * memjs client and server options for a client the store creates from `servers` (memjs's
 * `ClientOptions & ServerOptions`: typed loosely so that cachet's types need no memjs installed).
 */
export type MemcachedClientOptions = object

/** Where the store's data lives: a memjs client you own, or servers the store connects to itself. */
export type MemcachedStoreConnection<C extends MemcachedClient = MemcachedClient> =
  | {
      /** A memjs `Client` you created. The store never closes it. */
      client: C
      servers?: undefined
    }
  | {
      /**
       * `'host:port'`, a comma-separated list, or an array of them. The store loads memjs on
       * first use, creates the client, and closes it in `close()`.
       */
      servers: string | readonly string[]
      client?: undefined
    }

export interface MemcachedStoreOptions {
  /**
   * Prepended to every memcached key, so several apps can share servers; `clear()` only affects
   * keys under it. Printable ASCII without spaces, at most 64 characters.
   * @default 'cachet:'
   */
  prefix?: string
  /**
   * Largest value stored, in bytes; larger values are skipped (and counted in
   * `stats().tooLarge`) rather than sent to be refused. Set it to the servers' `-I` minus a
   * margin for the key and item header.
   * @default 1_047_552 (1 MiB, memcached's default `-I`, minus 1 KiB)
   */
  maxItemSize?: number
  /**
   * How long a namespace generation read from memcached may be reused in this process, in ms.
   * `0` reads the generations on every lookup: an invalidation in any process is seen by every
   * other process at once, for one extra (parallel) round trip per lookup. A positive value saves
   * that round trip for hot keys, but another process may keep serving invalidated entries for
   * up to this long (invalidations made through this store instance are seen at once).
   * @default 0
   */
  generationCacheMs?: number
  /**
   * memjs options for the client the store creates from `servers` (ignored with `client`).
   * Merged over the store's defaults, which fail fast: `{ retries: 1, timeout: 0.5,
   * conntimeout: 1, keepAlive: true }` and a logger that goes to `DEBUG=cachet` (or `DEBUG=cachet:memcached`)
   * instead of the console.
   * @default {}
   */
  clientOptions?: MemcachedClientOptions
  /**
   * Clock in epoch milliseconds, used for ttls over 30 days (sent as absolute unix times) and
   * for the ages of local copies.
   * @default Date.now
   */
  now?: () => number
  /**
   * A local tier: values read from memcached kept in process memory and answered from there with
   * no round trip, each for at most `local.ttl` ms (default 1000) after the read that fetched it
   * began. Memcached sends no notifications, so the bound is time: a write or invalidation made by
   * another process is served here at most `local.ttl` ms after it resolved (plus
   * `generationCacheMs` for an invalidation). Changes made through this store instance drop the
   * copies they touch at once; a read that was on its way meanwhile keeps no copy. A copy may
   * outlive the item's own expiry in memcached by up to `local.ttl` (memcached does not tell the
   * time left). `false` (the strict mode) asks memcached on every get.
   * @default false
   */
  local?: LocalTierOptions | false
}

/** A Memcached-backed store. `deleteMatching` accepts only the patterns listed in its error. */
export interface MemcachedStore<C extends MemcachedClient = MemcachedClient> extends Store {
  readonly name: 'memcached'
  /** The prefix in use (`cachet:` unless configured). */
  readonly prefix: string
  /**
   * False: a wildcard `deleteMatching()` makes entries unreachable without knowing how many
   * there were, and resolves 0. Literal keys are counted exactly.
   */
  readonly countsRemovals: false
  /** The value, or undefined; a local-tier copy (`local`), of a value or of its absence, is returned at once, without a promise. */
  get(key: string): Buffer | undefined | Promise<Buffer | undefined>
  /** Resolves false when the value was not stored because it is too large. */
  set(key: string, value: Uint8Array, ttlMs: number): Promise<boolean>
  /**
   * Compare-and-set through memcached's CAS (binary protocol, on memjs's own connections): one
   * round trip when the item is as this process last wrote or saw it, two otherwise. Absent when
   * the store was given a client that is not a memjs `Client` itself (a wrapper around one).
   */
  setIf?(key: string, expected: Uint8Array | null, value: Uint8Array, ttlMs: number): Promise<true | Buffer | null>
  delete(key: string): Promise<boolean>
  deleteMatching(pattern: string): Promise<number>
  clear(): Promise<number>
  close(): Promise<void>
  /** `tooLarge`: values skipped or refused for their size since the store was created. */
  stats(): { entries?: number; bytes?: number; tooLarge: number }
  /** The memjs client in use (created on first use when the store was given `servers`). */
  getClient(): Promise<C>
  /**
   * Take the lock named `key` for at least `ttlMs` (`ADD` of a lock key holding a random token;
   * memcached counts whole seconds on a clock that ticks once a second, so the lock is sent
   * `ceil(ttlMs / 1000) + 1` s and lives between `ttlMs` and that). Resolves a token for
   * `unlock()`, or `null` when another holder has it.
   */
  lock(key: string, ttlMs: number): Promise<string | null>
  /**
   * Release a lock only if `token` still holds it: a `GET` compares the token, then a `DELETE`
   * removes the lock (memcached has no compare-and-delete and memjs no CAS). The race left: a
   * lock that expires between the two, and is taken by another process in that one round trip,
   * is deleted. Only a holder that overran its ttl can meet it. Resolves whether it released.
   */
  unlock(key: string, token: string): Promise<boolean>
}

/** The same as MemcachedStore: with `local` on, `get` may return a copy at once. */
export type LocalMemcachedStore<C extends MemcachedClient = MemcachedClient> = MemcachedStore<C>

/** Raised by `deleteMatching()` for a pattern memcached cannot honour. */
export class UnsupportedPatternError extends Error {
  constructor(readonly pattern: string) {
    super(
      `memcachedStore cannot delete keys matching ${JSON.stringify(pattern)}: memcached cannot list keys, so a ` +
        'pattern is honoured through the namespace its text before the first "*" lies in: "<segments>:*" ' +
        '(a path and everything below it, e.g. "posts:*", "posts:42:*"), "<primary>#*" (all variants of one key, ' +
        'e.g. "posts:GET#*"), "<path>?*" (every query string of one path, e.g. "posts:GET?*"); other patterns are ' +
        'widened to it ("posts:4*" drops "posts:*"). This one lies in no namespace but the global one: use "*" to ' +
        'drop everything, or a literal key without "*"',
    )
    this.name = 'UnsupportedPatternError'
  }
}

/** The options memcachedStore() takes, in either argument. */
const MEMCACHED_OPTIONS = ['prefix', 'maxItemSize', 'generationCacheMs', 'clientOptions', 'now', 'local'] as const

/** memcached's longest key, in bytes. */
const MAX_KEY = 250
/** memcached reads an expiry above 30 days as an absolute unix time, not a duration. */
const THIRTY_DAYS_S = 60 * 60 * 24 * 30
/** Printable ASCII without space: what a memcached key may hold (no control chars, no spaces). */
const KEY_SAFE = /^[\x21-\x7e]*$/
const NOT_KEY_SAFE = /[^\x21-\x7e]/
/** Hashed keys keep a readable head of the original, cut where it would no longer fit. */
const DIGEST_LENGTH = 43 // sha256 in base64url
/** Generation-cache entries kept before the map is emptied (a bound, not an LRU: cheap and rare). */
const GENERATION_CACHE_MAX = 10_000

const CLIENT_DEFAULTS = {
  // One attempt: the middleware has its own timeout and fails open; retrying only adds latency.
  retries: 1,
  timeout: 0.5,
  conntimeout: 1,
  keepAlive: true,
}

/** Default `local.ttl` on memcached: the staleness bound for changes made by other processes. */
const LOCAL_TTL_DEFAULT = 1000

/** What a local copy costs beyond its bytes, counted against `local.maxBytes`. */
const COPY_OVERHEAD = 512

/** A value read from memcached, kept in process memory until `expiresAt` (the store's clock). */
interface LocalCopy {
  /** `undefined`: the key was absent. */
  bytes: Buffer | undefined
  /** The generation tokens it was read under, one per namespace of its key. */
  tokens: readonly string[]
  expiresAt: number
  size: number
}

/**
 * A lock's expiry in whole seconds: memcached's clock ticks once a second, so an item sent with
 * `n` lives between `n - 1` and `n` seconds; one more second keeps the lock at least `ttlMs`.
 */
function lockSeconds(ttlMs: number): number {
  return Math.min(Math.ceil(ttlMs / 1000) + 1, THIRTY_DAYS_S)
}

/** Longest ttl sent, in seconds (about 10 years): the absolute time it becomes stays below 2^32. */
const MAX_RELATIVE_TTL_S = 10 * 365 * 86_400

/**
 * A store on Memcached via memjs, on one or several servers.
 *
 * ```ts
 * responseCache({ store: memcachedStore({ servers: ['cache1:11211', 'cache2:11211'] }) })
 * responseCache({ store: memcachedStore({ client: memjs.Client.create('cache:11211') }) })
 * ```
 *
 * **Keys.** `prefix + key`; when that is longer than 250 bytes or holds anything but printable
 * ASCII without spaces, a sha256 form that keeps a readable head of the key.
 *
 * **TTL.** Whole seconds, rounded up; above 30 days sent as an absolute unix time (memcached's rule).
 *
 * **Invalidation (namespace generations).** Memcached cannot list keys, so a key is never deleted
 * by pattern: every key belongs to a few namespaces, each with a generation token stored in
 * memcached, and the tokens are folded into the physical key. Replacing a namespace's token makes
 * every key under it unreachable at once, from every process; the orphaned items age out by
 * their ttl or LRU. The namespaces of `posts:42:GET?a=1#h#ae` are the global one, `posts:`,
 * `posts:42:`, `posts:42:GET?` and `posts:42:GET?a=1#`: exactly the prefixes that the supported
 * patterns (`*`, `<segments>:*`, `<path>?*`, `<primary>#*`) can name. Tokens are random and never
 * reused, so an evicted generation makes its keys unreachable instead of resurrecting old ones.
 *
 * **Round trips.** A hit costs two sequential steps: the namespace tokens (one GET per namespace,
 * all pipelined at once, so one round trip of latency) and then the entry. With
 * `generationCacheMs` the first step is skipped while the tokens are cached. A miss whose
 * generations are absent stops after the first step. `set` costs the same two steps (plus one
 * `ADD` per namespace never seen before); a wildcard `deleteMatching`/`clear` is one `SET`.
 */
export function memcachedStore<C extends MemcachedClient = MemcachedClient>(
  connection: MemcachedStoreConnection<C> & MemcachedStoreOptions,
  options?: MemcachedStoreOptions,
): MemcachedStore<C>
export function memcachedStore(connection: MemcachedStoreConnection & MemcachedStoreOptions, options: MemcachedStoreOptions = {}): MemcachedStore {
  if (connection === null || typeof connection !== 'object') {
    throw new TypeError(`memcachedStore expects { client } or { servers }, got ${describe(connection)}`)
  }
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`memcachedStore options must be an object, got ${describe(options)}`)
  }
  assertKnownOptions('memcachedStore', connection, ['client', 'servers', ...MEMCACHED_OPTIONS])
  assertKnownOptions('memcachedStore', options, MEMCACHED_OPTIONS)
  // Options may come in the first argument too: memcachedStore({ servers, prefix: 'app:' }).
  const merged: MemcachedStoreOptions = { ...pickOptions(connection), ...options }
  const { client: given, servers } = connection
  if (given !== undefined && servers !== undefined) {
    throw new TypeError('memcachedStore takes either "client" or "servers", not both')
  }
  if (given === undefined && servers === undefined) {
    throw new TypeError('memcachedStore needs a "client" (a memjs Client) or "servers"')
  }
  if (given !== undefined && !isMemjsClient(given)) {
    throw new TypeError(`memcachedStore option "client" must be a memjs Client, got ${describeObject(given)}`)
  }
  const serverList = servers === undefined ? undefined : parseServers(servers)

  const prefix = merged.prefix === undefined ? 'cachet:' : merged.prefix
  if (typeof prefix !== 'string' || prefix.length > 64 || !KEY_SAFE.test(prefix)) {
    throw new TypeError(`memcachedStore option "prefix" must be a string of printable ASCII without spaces, at most 64 characters, got ${describe(prefix)}`)
  }
  const maxItemSize = merged.maxItemSize === undefined ? 1_048_576 - 1024 : merged.maxItemSize
  if (typeof maxItemSize !== 'number' || !Number.isSafeInteger(maxItemSize) || maxItemSize <= 0) {
    throw new TypeError(`memcachedStore option "maxItemSize" must be a positive integer, got ${describe(maxItemSize)}`)
  }
  const generationCacheMs = merged.generationCacheMs === undefined ? 0 : merged.generationCacheMs
  if (typeof generationCacheMs !== 'number' || !Number.isFinite(generationCacheMs) || generationCacheMs < 0) {
    throw new TypeError(`memcachedStore option "generationCacheMs" must be a number of milliseconds >= 0, got ${describe(generationCacheMs)}`)
  }
  const clientOptions = merged.clientOptions === undefined ? {} : merged.clientOptions
  if (clientOptions === null || typeof clientOptions !== 'object') {
    throw new TypeError(`memcachedStore option "clientOptions" must be an object, got ${describe(clientOptions)}`)
  }
  const now = merged.now === undefined ? Date.now : merged.now
  if (typeof now !== 'function') {
    throw new TypeError(`memcachedStore option "now" must be a function, got ${describe(now)}`)
  }
  const local = parseLocal('memcachedStore', merged.local, { ttl: LOCAL_TTL_DEFAULT })

  // The store opens its own client: find memjs now, so that a missing package fails here, once,
  // not on every request.
  if (serverList !== undefined) assertInstalled('memjs', MISSING_MEMJS)

  let client: MemcachedClient | undefined = given
  let opening: Promise<MemcachedClient> | undefined
  let closed = false
  let tooLarge = 0
  const generationCache = new Map<string, { token: string; until: number }>()
  /** The local tier: copies by key (without prefix), and this process's own recent changes. */
  const copies = local === undefined ? undefined : new LRUCache<string, LocalCopy>({ maxSize: local.maxBytes, sizeCalculation: (copy) => copy.size })
  const changes = new ChangeLog()
  /** Compare-and-set on the client (created with it). */
  let cas: CasClient | undefined

  /**
   * The GETs sent in this run of the event loop (one callback, then its ticks and microtasks), by
   * memcached key: reads issued together share one GET — the generations every key shares, a
   * tag's mark, a hot key that concurrent requests read at once. A request is served in one run
   * only once it has arrived, so a GET shared there was sent after it began; and every change made
   * through this store starts afresh (`forget`, and `sentChange` as its command is sent), so a read
   * never shares a GET sent before a change this process made.
   */
  let sentThisRun: Map<string, Promise<{ value: Buffer | null }>> | undefined
  const endRun = () => void (sentThisRun = undefined)
  /** The server sockets held back for this run (see `holdWrites`). */
  let corked: Writable[] | undefined
  const releaseWrites = () => {
    batch?.flush()
    const sockets = corked!
    corked = undefined
    for (const socket of sockets) socket.uncork()
  }

  /**
   * Hold back the writes to the client's connected server sockets until the end of this run, so
   * that the GETs a read sends together (the generations, a tag's mark, the record of soft purges,
   * other requests' reads) leave in one system call per server, not one each. The sockets are
   * memjs's (`Server._socket`, not part of its API): a client without them is left as it is.
   */
  function holdWrites(c: MemcachedClient): void {
    if (corked !== undefined) return
    corked = []
    for (const server of c.servers) {
      const socket = (server as { _socket?: unknown })._socket
      if (socket instanceof Writable && socket.writable) {
        socket.cork()
        corked.push(socket)
      }
    }
    process.nextTick(releaseWrites)
  }

  /**
   * The GETs of this run not sent yet, on a memjs client; null for a client whose connections this
   * store cannot drive (a wrapper), whose `get` is called per key. They go out as one request per
   * server when the run's writes are released, or before a change this process sends meanwhile:
   * memjs's per-request work (its buffers, reply handler and timeout) is paid once per server,
   * not once per key.
   */
  let batch: GetBatch | null | undefined

  /** GET `name`, or join the GET of it sent in this run (see `sentThisRun`). */
  function getShared(c: MemcachedClient, name: string): Promise<{ value: Buffer | null }> {
    if (sentThisRun === undefined) {
      sentThisRun = new Map()
      process.nextTick(endRun)
    }
    holdWrites(c)
    let reply = sentThisRun.get(name)
    if (reply === undefined) {
      batch ??= canBatch(c) ? new GetBatch(c, retries(c) ? (key) => c.get(key) : undefined) : null
      reply = batch === null ? c.get(name) : batch.get(name)
      sentThisRun.set(name, reply)
    }
    return reply
  }

  /**
   * A change is about to be sent to memcached: the GETs queued before it go first, and later reads
   * must not share a GET sent before it.
   */
  function sentChange(): void {
    batch?.flush()
    sentThisRun = undefined
  }

  /** Drop local copies of one key (`literal`) or of keys matching `pattern`: a change made here. */
  function forget(pattern: string, literal: boolean): void {
    changes.note(pattern, literal)
    sentChange()
    if (copies === undefined) return
    if (literal) {
      copies.delete(pattern)
      fetching.delete(pattern)
      return
    }
    const matches = compilePattern(pattern)
    for (const key of [...fetching.keys()]) if (matches(key)) fetching.delete(key)
    for (const key of [...copies.keys()]) if (matches(key)) copies.delete(key)
  }

  /**
   * Local-tier reads on their way, by key: concurrent misses of one key share one read (a copy
   * that expires under load would otherwise send every waiting request to memcached at once). A
   * change made here removes the key's entry, so a later read never joins an earlier one.
   */
  const fetching = new Map<string, Promise<Buffer | undefined>>()

  /** Whether the generations cached here still name the ones a copy was read under. */
  function sameGenerations(key: string, tokens: readonly string[]): boolean {
    if (generationCacheMs <= 0 || isRecord(key)) return true
    const names = namespacesOf(key)
    const at = now()
    for (let i = 0; i < names.length; i++) {
      const cached = generationCache.get(names[i])
      // Only tokens this process has read (or set) recently say anything.
      if (cached !== undefined && cached.until > at && cached.token !== tokens[i]) return false
    }
    return true
  }

  async function open(): Promise<MemcachedClient> {
    if (closed) throw new Error('memcachedStore is closed')
    opening ??= (async () => {
      const Memjs = await loadMemjs()
      const created = Memjs.create(serverList!.join(','), {
        ...CLIENT_DEFAULTS,
        // memjs logs every failure to the console by default; route it to DEBUG instead.
        logger: { log: (...args: unknown[]) => debug('%s', args.join(' ')) },
        ...clientOptions,
      })
      // memjs reports failures through callbacks, but its Server objects are EventEmitters: make
      // sure a stray 'error' can never become an unhandled one.
      for (const server of created.servers) {
        const { host, port } = server as { host?: string; port?: string | number }
        ;(server as unknown as NodeJS.EventEmitter).on?.('error', (error: Error) => debug('server error: %s (%s:%s)', error?.message, host, port))
      }
      client = created
      return created
    })()
    return opening
  }

  const use = (): MemcachedClient | Promise<MemcachedClient> => client ?? open()

  /** The memcached key for `body` under one of the store's key spaces (`tag`). */
  function physical(tag: 'e' | 'g' | 'l' | 'r', body: string): string {
    const plain = `${prefix}${tag}:${body}`
    // Length in UTF-16 units equals length in bytes once the text is known to be ASCII.
    if (plain.length <= MAX_KEY && KEY_SAFE.test(plain)) return plain
    // The upper-case tag keeps hashed keys in their own space: no plain key can equal a hashed one.
    const digest = createHash('sha256').update(body).digest('base64url')
    const room = MAX_KEY - prefix.length - 3 - DIGEST_LENGTH
    const unsafeAt = body.search(NOT_KEY_SAFE)
    const head = body.slice(0, Math.min(room, unsafeAt === -1 ? body.length : unsafeAt))
    return `${prefix}${tag.toUpperCase()}:${head}~${digest}`
  }

  async function readGenerations(c: MemcachedClient, names: string[]): Promise<(string | undefined)[]> {
    const at = generationCacheMs > 0 ? now() : 0
    return Promise.all(
      names.map(async (name) => {
        if (generationCacheMs > 0) {
          const cached = generationCache.get(name)
          if (cached && cached.until > at) return cached.token
        }
        // These GETs go out together (in one write per server, see holdWrites): all the
        // namespaces cost one round trip of latency (per server, in parallel).
        const { value } = await getShared(c, physical('g', name))
        const token = value ? value.toString('latin1') : undefined
        if (token !== undefined) remember(name, token)
        return token
      }),
    )
  }

  function remember(name: string, token: string): void {
    if (generationCacheMs <= 0) return
    if (generationCache.size >= GENERATION_CACHE_MAX) generationCache.clear()
    generationCache.set(name, { token, until: now() + generationCacheMs })
  }

  /** Like readGenerations, but creates the namespaces that do not exist yet (for writes). */
  async function ensureGenerations(c: MemcachedClient, names: string[]): Promise<string[]> {
    const tokens = await readGenerations(c, names)
    return Promise.all(
      tokens.map(async (token, i) => {
        if (token !== undefined) return token
        const name = names[i]
        for (let attempt = 0; attempt < 3; attempt++) {
          const fresh = newToken()
          // ADD, not SET: if another process created the namespace meanwhile, its token wins
          // and every process agrees on one.
          sentChange()
          if (await c.add(physical('g', name), fresh, { expires: 0 })) {
            remember(name, fresh)
            return fresh
          }
          const { value } = await c.get(physical('g', name))
          if (value) {
            remember(name, value.toString('latin1'))
            return value.toString('latin1')
          }
        }
        throw new Error(`memcachedStore could not create the generation of namespace ${JSON.stringify(name)}`)
      }),
    )
  }

  /** Where `key` lives: a record (RECORD_PREFIX) by itself, an entry under `tokens` (see `entryKey`). */
  function physicalKey(key: string, tokens: readonly string[]): string {
    return isRecord(key) ? physical('r', key) : entryKey(key, tokens)
  }

  /** The physical key of an entry under the current generations of its namespaces. */
  function entryKey(key: string, tokens: readonly string[]): string {
    const fold = createHash('sha256').update(tokens.join('.')).digest('base64url').slice(0, 16)
    return physical('e', `${fold}:${key}`)
  }

  async function bump(name: string): Promise<void> {
    const c = await use()
    const token = newToken()
    sentChange()
    await c.set(physical('g', name), token, { expires: 0 })
    // This process sees its own invalidation at once, whatever generationCacheMs says.
    if (generationCacheMs > 0) generationCache.set(name, { token, until: now() + generationCacheMs })
  }

  function expiry(ttlMs: number): number {
    // Clamped below memcached's 32-bit expiry field (memjs throws beyond it).
    const seconds = Math.min(Math.max(1, Math.ceil(ttlMs / 1000)), MAX_RELATIVE_TTL_S)
    // memcached: "if the number is above 30 days, it is an absolute unix time".
    return seconds > THIRTY_DAYS_S ? Math.ceil(now() / 1000) + seconds : seconds
  }

  function get(key: string): Buffer | undefined | Promise<Buffer | undefined> {
    if (copies === undefined) return fetch(key, 0)
    const startedAt = now()
    const held = copies.get(key)
    if (held !== undefined) {
      // A copy still within local.ttl answers synchronously: no round trip, no promise.
      if (startedAt < held.expiresAt && sameGenerations(key, held.tokens)) return held.bytes
      copies.delete(key)
    }
    const running = fetching.get(key)
    if (running !== undefined) return running
    const read = fetch(key, startedAt)
    fetching.set(key, read)
    const settled = () => {
      if (fetching.get(key) === read) fetching.delete(key)
    }
    read.then(settled, settled)
    return read
  }

  async function fetch(key: string, startedAt: number): Promise<Buffer | undefined> {
    const mark = changes.mark(true)
    const c = client ?? (await open())
    const tokens = isRecord(key) ? NO_TOKENS : await readGenerations(c, namespacesOf(key))
    // A namespace without a generation has never been written to (or was evicted): nothing
    // under it is reachable, so skip the second round trip.
    if (tokens.includes(undefined)) return absent(key, tokens, mark, startedAt)
    const { value } = await getShared(c, physicalKey(key, tokens as string[]))
    if (value === null || value === undefined) return absent(key, tokens, mark, startedAt)
    if (copies === undefined || changes.changedSince(mark, key)) return value
    // An exact-size copy: replies are views into memjs's socket buffers.
    const own = Buffer.from(value)
    const size = own.length + key.length + COPY_OVERHEAD
    if (size > local!.maxBytes) return own
    copies.set(key, { bytes: own, tokens: tokens as string[], expiresAt: startedAt + local!.ttl, size })
    return own
  }

  /**
   * An absent key, kept as a copy too (local tier), so that a key that mostly does not exist (a
   * tag never invalidated) costs no round trip either, within the same `local.ttl` bound.
   */
  function absent(key: string, tokens: readonly (string | undefined)[], mark: LogMark, startedAt: number): undefined {
    if (copies === undefined || changes.changedSince(mark, key)) return undefined
    const known = tokens.map((token) => token ?? '')
    copies.set(key, { bytes: undefined, tokens: known, expiresAt: startedAt + local!.ttl, size: key.length + COPY_OVERHEAD })
    return undefined
  }

  async function set(key: string, value: Uint8Array, ttlMs: number): Promise<boolean> {
    if (!(value instanceof Uint8Array)) {
      throw new TypeError(`memcachedStore.set expects bytes, got ${describe(value)}`)
    }
    if (value.byteLength > maxItemSize) {
      tooLarge++
      debug('not stored: %d bytes is over maxItemSize %d (%s)', value.byteLength, maxItemSize, key)
      return false
    }
    forget(key, true)
    const c = client ?? (await open())
    const tokens = isRecord(key) ? [] : await ensureGenerations(c, namespacesOf(key))
    const bytes = asBuffer(value)
    try {
      sentChange()
      return await c.set(physicalKey(key, tokens), bytes, { expires: expiry(ttlMs) })
    } catch (error) {
      // The server's -I is smaller than maxItemSize says: count it like an over-size value.
      if (/too large/i.test((error as Error).message)) {
        tooLarge++
        debug('not stored: the server refused %d bytes as too large (%s)', value.byteLength, key)
        return false
      }
      throw error
    }
  }

  /**
   * Compare-and-set (see CasClient): one round trip when the item is as this process last wrote
   * or saw it, two otherwise (plus the generations' for a key that is not a record).
   */
  async function setIf(key: string, expected: Uint8Array | null, value: Uint8Array, ttlMs: number): Promise<true | Buffer | null> {
    if (!(value instanceof Uint8Array)) {
      throw new TypeError(`memcachedStore.setIf expects bytes, got ${describe(value)}`)
    }
    forget(key, true)
    const c = client ?? (await open())
    if (!hasConnection(c)) throw new Error('memcachedStore.setIf needs a memjs Client')
    cas ??= new CasClient(c, () => holdWrites(c))
    const tokens = isRecord(key) ? [] : await ensureGenerations(c, namespacesOf(key))
    sentChange()
    return cas.setIf(physicalKey(key, tokens), expected === null ? null : asBuffer(expected), asBuffer(value), expiry(ttlMs))
  }

  async function remove(key: string): Promise<boolean> {
    forget(key, true)
    const c = client ?? (await open())
    const tokens = isRecord(key) ? NO_TOKENS : await readGenerations(c, namespacesOf(key))
    if (tokens.includes(undefined)) return false
    sentChange()
    return c.delete(physicalKey(key, tokens as string[]))
  }

  return {
    name: 'memcached',
    prefix,
    localTier: copies !== undefined,
    countsRemovals: false,
    get,
    // Reads issued together share their round trips (see `sentThisRun`). With the local tier,
    // each get may answer from memory: the cache calls get() per key then.
    getMany: copies === undefined ? (keys) => Promise.all(keys.map((key) => fetch(key, 0))) : undefined,
    set,
    // memjs has no compare-and-set: it is sent on the client's own connections, which a wrapper
    // around a client does not expose (the cache then reads and writes its marks plainly).
    setIf: given === undefined || hasConnection(given) ? setIf : undefined,
    delete: remove,

    async deleteMatching(pattern) {
      assertPattern(pattern)
      const target = classifyPattern(pattern)
      if (target.literal) return (await remove(pattern)) ? 1 : 0
      if (target.widened) debug('invalidating %s for the pattern %s (memcached cannot list keys)', `${target.namespace}*`, pattern)
      forget(`${target.namespace}*`, false)
      await bump(target.namespace)
      return 0
    },

    async clear() {
      forget('*', false)
      // The global namespace is part of every key of this prefix, and only of this prefix.
      await bump('')
      return 0
    },

    async lock(key, ttlMs) {
      if (typeof ttlMs !== 'number' || !(ttlMs > 0)) {
        throw new TypeError(`memcachedStore.lock ttlMs must be a positive number, got ${describe(ttlMs)}`)
      }
      const c = await use()
      const token = randomBytes(16).toString('base64url')
      const name = physical('l', key)
      if (await c.add(name, token, { expires: lockSeconds(ttlMs) })) return token
      // memjs may send the ADD again after a lost reply: a lock holding our own token is ours.
      const { value } = await c.get(name)
      return value !== null && value.toString('latin1') === token ? token : null
    },

    async unlock(key, token) {
      const c = await use()
      const name = physical('l', key)
      const { value } = await c.get(name)
      if (value === null || value.toString('latin1') !== token) return false
      return c.delete(name)
    },

    async close() {
      generationCache.clear()
      copies?.clear()
      if (serverList === undefined || closed) return // never close a client we were given
      closed = true
      const created = client ?? (opening ? await opening.catch(() => undefined) : undefined)
      client = undefined // later calls go through open(), which refuses
      created?.close()
    },

    stats() {
      return { tooLarge }
    },

    async getClient() {
      return use()
    },
  }
}

/**
 * Map a pattern to what memcached can do: a literal key, or one namespace to bump. Runs of `*`
 * are one `*` (as in every store). A pattern that is not a namespace is widened to the narrowest
 * namespace holding every key it matches (`posts:4*` → `posts:`, `posts:*:GET` → `posts:`):
 * more becomes unreachable than asked, never less. Throws UnsupportedPatternError when that
 * namespace would be the global one (`*:GET`, `post*`): say `*` to drop everything.
 */
export function classifyPattern(pattern: string): { literal: true } | { literal: false; namespace: string; widened: boolean } {
  const p = pattern.replace(/\*+/g, '*')
  const star = p.indexOf('*')
  if (star === -1) return { literal: true }
  if (p === '*') return { literal: false, namespace: '', widened: false }
  const head = p.slice(0, star)
  const namespace = namespaceHolding(head)
  if (namespace === '') throw new UnsupportedPatternError(pattern)
  return { literal: false, namespace, widened: star !== p.length - 1 || namespace !== head }
}

function newToken(): string {
  return randomBytes(9).toString('base64url')
}

/** memjs's `Client` class, as the store calls it. */
interface MemjsClientClass {
  create(servers: string, options: object): MemcachedClient
}

async function loadMemjs(): Promise<MemjsClientClass> {
  try {
    const mod = (await import('memjs')) as unknown as { Client?: MemjsClientClass; default?: { Client: MemjsClientClass } }
    const found = mod.Client ?? mod.default?.Client
    if (!found) throw new Error('memjs has no Client export')
    return found
  } catch (error) {
    throw new Error(MISSING_MEMJS, { cause: error })
  }
}

function parseServers(servers: unknown): string[] {
  const list = typeof servers === 'string' ? servers.split(',').map((s) => s.trim()) : servers
  if (!Array.isArray(list) || list.length === 0 || !list.every((s) => typeof s === 'string' && /^(?:[^@\s]+@)?[^\s:,@]+(?::\d+)?$/.test(s))) {
    throw new TypeError(`memcachedStore option "servers" must be 'host:port', a comma-separated list or an array of them, got ${describe(servers)}`)
  }
  return list as string[]
}

function isMemjsClient(value: unknown): value is MemcachedClient {
  const candidate = value as Partial<MemcachedClient> | null
  return (
    candidate !== null &&
    typeof candidate === 'object' &&
    typeof candidate.get === 'function' &&
    typeof candidate.set === 'function' &&
    typeof candidate.add === 'function' &&
    Array.isArray(candidate.servers)
  )
}

function pickOptions(source: MemcachedStoreOptions): MemcachedStoreOptions {
  const picked: MemcachedStoreOptions = {}
  for (const name of MEMCACHED_OPTIONS) {
    if (source[name] !== undefined) (picked as Record<string, unknown>)[name] = source[name]
  }
  return picked
}

const MISSING_MEMJS = 'memcachedStore({ servers }) needs the "memjs" package: npm install memjs'

/** Throw `message` when `name` cannot be resolved from cachet's own location (nothing is loaded). */
function assertInstalled(name: string, message: string): void {
  try {
    createRequire(import.meta.url).resolve(name)
  } catch (error) {
    throw new Error(message, { cause: error })
  }
}

/** Whether a memjs client was created to retry or fail over (its `retries` above 1, or `failover`). */
function retries(client: object): boolean {
  const options = (client as { options?: { retries?: unknown; failover?: unknown } }).options
  return options !== undefined && ((typeof options.retries === 'number' && options.retries > 1) || options.failover === true)
}

/** A key of the cache's own records (tag and purge marks): kept outside the namespace generations. */
function isRecord(key: string): boolean {
  return key.startsWith(RECORD_PREFIX)
}

/** The generation tokens of a record: it has none. */
const NO_TOKENS: readonly (string | undefined)[] = []
