/**
 * redisStore(): a Store on ioredis (single node or Cluster): binary-safe, SCAN + UNLINK
 * invalidation, optional locks, in-process hot copies validated by a write stamp on every get,
 * and an opt-in local tier kept coherent across processes by pub/sub.
 */
import { createHash, randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import createDebug from 'debug'
import { LRUCache } from 'lru-cache'
import { assertPattern, compilePattern, isLiteral, RECORD_PREFIX, toRedisGlob } from '../pattern.js'
import { assertKnownOptions, describe, describeObject } from '../validate.js'
import type { Store } from '../types.js'
import { parseLocal, type LocalTierOptions, type LogMark } from './local-tier.js'
import { InvalidationChannel, SUBSCRIBER_OPTIONS, channelOf, message, type RedisSubscriber } from './redis-tier.js'
import { asBuffer } from './bytes.js'

const debugStore = createDebug('cachet:redis')
const debugAll = createDebug('cachet')

/**
 * Debug output: under `DEBUG=cachet` with every other reason cachet gives (prefixed `redis:`),
 * or on its own under `DEBUG=cachet:redis`.
 */
function debug(format: string, ...args: unknown[]): void {
  if (debugStore.enabled) debugStore(format, ...args)
  else if (debugAll.enabled) debugAll(`redis: ${format}`, ...args)
}

/**
 * A Redis client as the store uses it: exactly the methods it calls, so that cachet's types need
 * no ioredis installed. An ioredis `Redis` or `Cluster` satisfies it.
 */
export interface RedisClient {
  /** True for a Cluster client, whose `nodes('master')` the store scans one by one. */
  readonly isCluster: boolean
  /** The connection status; `'end'` once closed, `'ready'` once usable. */
  readonly status: string
  getBuffer(key: string): Promise<Buffer | null>
  set(key: string, value: Buffer, millisecondsToken: 'PX', milliseconds: number): Promise<unknown>
  unlink(...keys: (string | Buffer)[]): Promise<number>
  scanBuffer(cursor: string, patternToken: 'MATCH', pattern: string, countToken: 'COUNT', count: number): Promise<[cursor: Buffer, elements: Buffer[]]>
  pipeline(commands: unknown[][]): { exec(): Promise<[error: Error | null, result: unknown][] | null> }
  eval(script: string, numkeys: number, ...args: (string | number)[]): Promise<unknown>
  callBuffer(command: string, args: (string | Buffer | number)[]): Promise<unknown>
  quit(): Promise<unknown>
  disconnect(): void
  on(event: 'error', listener: (error: Error) => void): unknown
  once(event: 'end' | 'ready', listener: () => void): unknown
  off(event: 'ready', listener: () => void): unknown
  /** Listeners of an event (a client the store opens always has one for `'error'`). */
  listenerCount(event: 'error'): number
  /** A new connection with the same options: the local tier's subscriber (ioredis `duplicate()`). */
  duplicate?(override?: object): unknown
}

/** A Redis Cluster client as the store uses it; an ioredis `Cluster` satisfies it. */
export interface RedisClusterClient extends RedisClient {
  /** The master nodes' own clients. */
  nodes(role: 'master'): RedisClient[]
}

/**
 * ioredis options for a client the store creates from `url` (an ioredis `RedisOptions` object:
 * typed loosely so that cachet's types need no ioredis installed).
 */
export type RedisClientOptions = object

/** Where the store's data lives: a client you own, or a URL the store connects to itself. */
export type RedisStoreConnection<C extends RedisClient = RedisClient> =
  | {
      /** An ioredis `Redis` or `Cluster` you created. The store never closes it. */
      client: C
      url?: undefined
    }
  | {
      /**
       * A `redis://` or `rediss://` URL. The store loads ioredis on first use, creates the client,
       * and closes it in `close()`.
       */
      url: string
      client?: undefined
    }

export interface RedisStoreOptions {
  /**
   * Prepended to every key; `clear()` and `deleteMatching()` never touch keys outside it.
   * Must not be empty: an empty prefix would make `clear()` empty the whole database.
   * @default 'cachet:'
   */
  prefix?: string
  /**
   * Prepended to lock keys (`lock()`/`unlock()`). Kept outside `prefix` so that a cache key can
   * never collide with a lock and `clear()` never releases another process's lock.
   * @default 'lock:' + prefix
   */
  lockPrefix?: string
  /**
   * `COUNT` hint of each `SCAN` step in `deleteMatching()`/`clear()`.
   * @default 1000
   */
  scanCount?: number
  /**
   * ioredis options for the client the store creates from `url` (ignored with `client`).
   * Merged over the store's defaults, which fail fast instead of queueing for ever:
   * `{ maxRetriesPerRequest: 1, connectTimeout: 2000 }`. The offline queue stays on, so
   * commands sent while the first connection is being made wait for it.
   * @default {}
   */
  clientOptions?: RedisClientOptions
  /**
   * Bytes of recently read values this process keeps (least recently used dropped first; 0 keeps
   * none). A get of a value held here asks Redis only whether the key still carries the same
   * write stamp, one round trip with a reply of a few bytes, and answers with the bytes held,
   * so overwrites, deletes and expiry elsewhere are seen at once. A value larger than this is
   * never kept. Decoded entries kept alongside by the middleware come on top.
   * @default 16 MiB
   */
  hotBytes?: number
  /**
   * A local tier: hits answered from process memory with no round trip at all, kept coherent
   * across processes by pub/sub on the channel `cachet:invalidate:<prefix>` (every `set`,
   * `delete`, `deleteMatching` and `clear` of any single-node redisStore on that prefix, `local`
   * or not, publishes what changed, atomically with the change; every store with `local` drops
   * its matching copies on receipt). A copy is served locally only while its subscriber connection is up,
   * has been since the copy was fetched, and answered a PING sent within the last
   * `2 × local.heartbeat` ms; otherwise it is checked with Redis as a hot copy is (one round
   * trip, never stale). A copy never outlives the key's PX ttl, nor `local.ttl`.
   *
   * Staleness bound: a change made through a single-node redisStore on the same prefix is not
   * served by another process later than `2 × local.heartbeat` after the call that made it
   * resolved (in practice, one message delivery). Changes made around the store (raw writes by
   * other clients, evictions) are seen within `local.ttl`.
   * `false` (the strict mode) keeps one validating round trip per hit: never stale.
   * Needs a single-node client (a Cluster is refused). `local.maxBytes` replaces `hotBytes`.
   * @default false
   */
  local?: LocalTierOptions | false
}

/** A Redis-backed store; `lock`/`unlock` support request coalescing across processes. */
export interface RedisStore<C extends RedisClient = RedisClient> extends Store {
  readonly name: 'redis'
  /** The prefix in use (`cachet:` unless configured). */
  readonly prefix: string
  /** The value, or null; a local-tier copy (`local`), of a value or of its absence, is returned at once, without a promise. */
  get(key: string): Buffer | null | Promise<Buffer | null>
  set(key: string, value: Uint8Array, ttlMs: number): Promise<void>
  /** Compare-and-set in one script (one round trip): `true` when stored, else the value held now. */
  setIf(key: string, expected: Uint8Array | null, value: Uint8Array, ttlMs: number): Promise<true | Buffer | null>
  /** Resolves true when the key existed. */
  delete(key: string): Promise<boolean>
  deleteMatching(pattern: string): Promise<number>
  clear(): Promise<number>
  close(): Promise<void>
  /**
   * Take the lock named `key` for `ttlMs` (`SET NX PX`, in a script that also answers "taken"
   * when a resent command finds the lock already holding its own token). Resolves a token to
   * pass to `unlock()`, or `null` when another holder has it. The lock expires by itself after `ttlMs`.
   */
  lock(key: string, ttlMs: number): Promise<string | null>
  /** Release a lock only if `token` still holds it (compare-and-delete). Resolves whether it did. */
  unlock(key: string, token: string): Promise<boolean>
  /** The ioredis client in use (created on first use when the store was given a `url`). */
  getClient(): Promise<C>
}

/** The same as RedisStore: with `local` on, `get` may return a copy at once. */
export type LocalRedisStore<C extends RedisClient = RedisClient> = RedisStore<C>

/** The options redisStore() takes, in either argument. */
const REDIS_OPTIONS = ['prefix', 'lockPrefix', 'scanCount', 'clientOptions', 'hotBytes', 'local'] as const

/** Default `hotBytes`: room for ~160 entries with 100 KB bodies, or ~8,000 with 1 KB bodies. */
const HOT_BYTES_DEFAULT = 16 * 1024 * 1024

/**
 * What a hot copy costs beyond its bytes, counted against `hotBytes`: its own ArrayBuffer, two
 * views, the map slot and the key come to about 0.5 KB of heap (measured with short keys).
 */
const HOT_OVERHEAD = 512

/**
 * Every value is stored behind a write stamp of 16 bytes: 4 magic bytes, then 12 that no other
 * write carries (8 random bytes per process, renewed when the counter wraps, and a 32-bit write
 * counter). A process holding a hot copy asks Redis only for these 16 bytes: the same stamp means
 * the same write. The first magic byte, 0xC1, is never produced by MessagePack and never occurs
 * in UTF-8, so values written by earlier versions with the built-in coders never look stamped.
 */
const STAMP_BYTES = 16
const STAMP_MAGIC = Buffer.from([0xc1, 0x63, 0x73, 0x31]) // 0xC1 'c' 's' '1'
let stampBase = randomBytes(8)
let stampCounter = 0

/**
 * A hot get in one round trip: 1 when the key still carries the stamp this process holds,
 * else the current value (nil when there is none). One key, so it runs on a Cluster too.
 */
const VALIDATE_SCRIPT = `if redis.call('getrange', KEYS[1], 0, ${STAMP_BYTES - 1}) == ARGV[1] then return 1 end return redis.call('get', KEYS[1])`
const VALIDATE_SHA = createHash('sha1').update(VALIDATE_SCRIPT).digest('hex')

/** A Lua script and its SHA1, sent with EVALSHA (EVAL when Redis lost it). */
interface Script {
  source: string
  sha: string
}

function script(source: string): Script {
  return { source, sha: createHash('sha1').update(source).digest('hex') }
}

/**
 * Several hot gets in one round trip (getMany): for each key, 1 when it still carries the stamp
 * given for it (ARGV[i]; NO_STAMP when no copy is held), else its value (nil when there is none).
 */
const VALIDATE_MANY = script(
  `local r = {} for i = 1, #KEYS do ` +
    `if ARGV[i] ~= '' and redis.call('getrange', KEYS[i], 0, ${STAMP_BYTES - 1}) == ARGV[i] then r[i] = 1 else r[i] = redis.call('get', KEYS[i]) end ` +
    `end return r`,
)

// The local tier's scripts. Reads answer the value and its PTTL, so a copy never outlives the key.
const READ_LOCAL = script(`local v = redis.call('get', KEYS[1]) if not v then return nil end return {v, redis.call('pttl', KEYS[1])}`)
const VALIDATE_LOCAL = script(
  `local v if redis.call('getrange', KEYS[1], 0, ${STAMP_BYTES - 1}) == ARGV[1] then v = 1 else v = redis.call('get', KEYS[1]) end ` +
    `if not v then return nil end return {v, redis.call('pttl', KEYS[1])}`,
)
// Writes publish what changed in the same script: a change is never applied without its message.
const SET_PUBLISH = script(`redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) redis.call('publish', ARGV[3], ARGV[4]) return 1`)
/**
 * Compare-and-set (`setIf`): store ARGV[4] (stamped) for ARGV[5] ms when the key holds nothing
 * (ARGV[1] '0') or, behind its stamp, exactly ARGV[2] (ARGV[1] '1'), publishing ARGV[7] on
 * ARGV[6] when given; answers 1 when stored, else the value held (nil when there is none).
 */
const SET_IF = script(
  `local v = redis.call('get', KEYS[1]) local held = v ` +
    `if v and #v >= ${STAMP_BYTES} and string.sub(v, 1, ${STAMP_MAGIC.length}) == ARGV[3] then held = string.sub(v, ${STAMP_BYTES + 1}) end ` +
    `if (ARGV[1] == '0' and not v) or (ARGV[1] == '1' and v and held == ARGV[2]) then ` +
    `redis.call('set', KEYS[1], ARGV[4], 'PX', ARGV[5]) if ARGV[6] ~= '' then redis.call('publish', ARGV[6], ARGV[7]) end return 1 end ` +
    `return v`,
)
const UNLINK_PUBLISH = script(`local n = redis.call('unlink', unpack(KEYS)) redis.call('publish', ARGV[1], ARGV[2]) return n`)

/** Default `local.ttl` on Redis: bounds changes made around the store (raw writes, evictions). */
const LOCAL_TTL_DEFAULT = 10_000
/** Default `local.heartbeat`. */
const HEARTBEAT_DEFAULT = 250

/** Keys per UNLINK: big enough to amortise round trips, small enough not to block Redis. */
const UNLINK_BATCH = 500

/** Defaults for a client the store creates: fail a command after one retry rather than hang. */
const CLIENT_DEFAULTS = { maxRetriesPerRequest: 1, connectTimeout: 2000 }

/** How long deleteMatching waits for a Cluster to learn its masters before giving up. */
const CLUSTER_READY_TIMEOUT_MS = 10_000

// Compare-and-delete: release the lock only when it still holds our token, in one atomic step,
// so a holder whose lock expired cannot delete the lock a later holder took.
const UNLOCK_SCRIPT = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`

// Take the lock when it is free (SET NX PX), and answer "taken" when it already holds our own
// token too: ioredis sends a command again after a reconnect when its reply was lost, and a
// plain SET NX that already ran would then answer nil for our own lock, which the caller would
// wait on until it expires.
const LOCK_SCRIPT = `local held = redis.call('get', KEYS[1])
if held == ARGV[1] then return 1 end
if held then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`

/**
 * A store on Redis via ioredis, single node or Cluster.
 *
 * ```ts
 * responseCache({ store: redisStore({ client: new Redis() }) })
 * responseCache({ store: redisStore({ url: 'redis://cache:6379' }, { prefix: 'myapp:' }) })
 * ```
 *
 * Values are written with `SET key value PX ttl`, behind a 16-byte write stamp, and read with
 * `GETBUFFER` (binary-safe). A value read before is kept in-process (`hotBytes`) and served again
 * after one small round trip that checks its stamp, so a 100 KB hit moves a few bytes, not 100 KB.
 * `deleteMatching()` walks `SCAN MATCH <prefix><pattern> COUNT 1000` on every master (glob
 * characters other than `*` escaped) and removes with batched `UNLINK`; it never sends `KEYS`,
 * `FLUSHDB` or `FLUSHALL`.
 */
export function redisStore<C extends RedisClient = RedisClient>(
  connection: RedisStoreConnection<C> & RedisStoreOptions,
  options?: RedisStoreOptions,
): RedisStore<C>
export function redisStore(connection: RedisStoreConnection & RedisStoreOptions, options: RedisStoreOptions = {}): RedisStore {
  if (connection === null || typeof connection !== 'object') {
    throw new TypeError(`redisStore expects { client } or { url }, got ${describe(connection)}`)
  }
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`redisStore options must be an object, got ${describe(options)}`)
  }
  assertKnownOptions('redisStore', connection, ['client', 'url', ...REDIS_OPTIONS])
  assertKnownOptions('redisStore', options, REDIS_OPTIONS)
  // Options may come in the first argument too: redisStore({ client, prefix: 'app:' }).
  const merged: RedisStoreOptions = { ...pickOptions(connection), ...options }
  const { client: given, url } = connection
  if (given !== undefined && url !== undefined) {
    throw new TypeError('redisStore takes either "client" or "url", not both')
  }
  if (given === undefined && url === undefined) {
    throw new TypeError('redisStore needs a "client" (an ioredis Redis or Cluster) or a "url"')
  }
  if (given !== undefined && !isRedisClient(given)) {
    throw new TypeError(`redisStore option "client" must be an ioredis Redis or Cluster, got ${describeObject(given)}`)
  }
  if (url !== undefined && (typeof url !== 'string' || !/^rediss?:\/\//.test(url))) {
    throw new TypeError(`redisStore option "url" must be a redis:// or rediss:// URL string, got ${describe(url)}`)
  }

  const prefix = merged.prefix === undefined ? 'cachet:' : merged.prefix
  if (typeof prefix !== 'string') {
    throw new TypeError(`redisStore option "prefix" must be a string, got ${describe(prefix)}`)
  }
  if (prefix === '') {
    throw new TypeError('redisStore option "prefix" must be a non-empty string (an empty prefix would let clear() remove every key of the database), got ""')
  }
  const lockPrefix = merged.lockPrefix === undefined ? `lock:${prefix}` : merged.lockPrefix
  if (typeof lockPrefix !== 'string' || lockPrefix === '') {
    throw new TypeError(`redisStore option "lockPrefix" must be a non-empty string, got ${describe(lockPrefix)}`)
  }
  const scanCount = merged.scanCount === undefined ? 1000 : merged.scanCount
  if (typeof scanCount !== 'number' || !Number.isSafeInteger(scanCount) || scanCount <= 0) {
    throw new TypeError(`redisStore option "scanCount" must be a positive integer, got ${describe(scanCount)}`)
  }
  const clientOptions = merged.clientOptions === undefined ? {} : merged.clientOptions
  if (clientOptions === null || typeof clientOptions !== 'object') {
    throw new TypeError(`redisStore option "clientOptions" must be an object, got ${describe(clientOptions)}`)
  }
  const hotOption = merged.hotBytes === undefined ? HOT_BYTES_DEFAULT : merged.hotBytes
  if (typeof hotOption !== 'number' || !Number.isSafeInteger(hotOption) || hotOption < 0) {
    throw new TypeError(`redisStore option "hotBytes" must be a non-negative integer (0 keeps no hot copies), got ${describe(hotOption)}`)
  }
  const local = parseLocal('redisStore', merged.local, { ttl: LOCAL_TTL_DEFAULT, heartbeat: HEARTBEAT_DEFAULT })
  if (local !== undefined && given !== undefined && given.isCluster) {
    throw new TypeError('redisStore option "local" needs a single-node client: its invalidation channel is one subscriber connection, got a Cluster')
  }
  if (local !== undefined && given !== undefined && typeof given.duplicate !== 'function') {
    throw new TypeError(`redisStore option "local" needs a client with duplicate() (an ioredis Redis), got ${describeObject(given)}`)
  }
  const hotBytes = local === undefined ? hotOption : local.maxBytes

  // The store opens its own client: find ioredis now, so that a missing package fails here, once,
  // not on every request.
  if (url !== undefined) assertInstalled('ioredis', MISSING_IOREDIS)

  /** Where the cache's own records begin (see RECORD_PREFIX): deleteMatching() leaves them. */
  const recordHead = Buffer.from(prefix + RECORD_PREFIX)

  // Every character of the prefix is literal in SCAN MATCH, `*` included.
  const matchPrefix = prefix.replace(/[*?[\]\\]/g, '\\$&')

  let client: RedisClient | undefined = given
  let opening: Promise<RedisClient> | undefined
  let closed = false
  const now = () => performance.now()
  const channelName = channelOf(prefix)
  /** The local tier's invalidation channel (created with the client). */
  let tier: InvalidationChannel | undefined
  /**
   * Every store on a single node publishes its changes, local tier or not, so that processes
   * with `local` stay coherent with those without it. (A Cluster has no local tier.)
   */
  const publishes = given === undefined || !given.isCluster

  function listen(subscriber: unknown): void {
    if (local === undefined) return
    tier = new InvalidationChannel(subscriber as RedisSubscriber, channelName, local.heartbeat, now, (pattern, literal) => {
      if (pattern === undefined) {
        hot?.clear()
        fetching.clear()
      } else if (literal) {
        hot?.delete(pattern)
        fetching.delete(pattern)
      } else forget(pattern)
    })
  }

  /**
   * Local-tier reads on their way, by key: concurrent misses of one key share one round trip (a
   * copy that expires under load would otherwise send every waiting request to Redis at once).
   * A change of the key removes its entry, so a read that starts after the change never joins a
   * read that began before it.
   */
  const fetching = new Map<string, Promise<Buffer | null>>()

  async function open(): Promise<RedisClient> {
    if (closed) throw new Error('redisStore is closed')
    opening ??= (async () => {
      const Redis = await loadIoredis()
      const created = new Redis(url!, { ...CLIENT_DEFAULTS, ...clientOptions })
      // Without a listener ioredis reports every connection error as an unhandled 'error' event;
      // the middleware sees failures through the rejected commands instead.
      created.on('error', (error: Error) => debug('connection error: %s (%s)', error.message, serverOf(url!)))
      if (local !== undefined) listen(new Redis(url!, { ...CLIENT_DEFAULTS, ...clientOptions, ...SUBSCRIBER_OPTIONS }))
      client = created
      return created
    })()
    return opening
  }

  // Hot path: no extra promise hop once the client exists.
  const use = (): RedisClient | Promise<RedisClient> => client ?? open()

  /** Recently read values by key (without prefix): their stamp and the bytes handed out. */
  const hot = hotBytes === 0 ? undefined : new LRUCache<string, HotCopy>({ maxSize: hotBytes, sizeCalculation: (copy) => copy.size })

  /**
   * The bytes of a full reply, kept hot when it is stamped and fits. The kept bytes are an
   * exact-size copy: replies are views into ioredis's socket chunks and pooled buffers, which a
   * long-lived view would keep alive whole. Later hot hits hand out this very object.
   */
  function keep(key: string, raw: Buffer | null, mark: LogMark = UNTRUSTED, expiresAt = 0): Buffer | null {
    if (raw === null || !isStamped(raw)) {
      // Gone, or written without a stamp (not by a redisStore): nothing to validate a copy with.
      hot?.delete(key)
      return raw
    }
    const size = raw.length - STAMP_BYTES + key.length + HOT_OVERHEAD
    if (hot === undefined || size > hotBytes) {
      hot?.delete(key)
      return raw.subarray(STAMP_BYTES)
    }
    const own = Buffer.allocUnsafeSlow(raw.length)
    raw.copy(own)
    const copy: HotCopy = { stamp: own.subarray(0, STAMP_BYTES), bytes: own.subarray(STAMP_BYTES), size, mark, expiresAt }
    hot.set(key, copy)
    return copy.bytes
  }

  /** Drop hot copies of keys matching a pattern: they are being deleted. */
  function forget(pattern: string): void {
    if (isLiteral(pattern)) {
      hot?.delete(pattern)
      fetching.delete(pattern)
      return
    }
    const matches = compilePattern(pattern)
    for (const key of [...fetching.keys()]) if (matches(key)) fetching.delete(key)
    if (hot === undefined || hot.size === 0) return
    for (const key of [...hot.keys()]) if (matches(key)) hot.delete(key)
  }

  function getShared(key: string, channel: InvalidationChannel, held: HotCopy | undefined): Promise<Buffer | null> {
    const running = fetching.get(key)
    if (running !== undefined) return running
    const read = getLocal(key, channel, held)
    fetching.set(key, read)
    const settled = () => {
      if (fetching.get(key) === read) fetching.delete(key)
    }
    read.then(settled, settled)
    return read
  }

  // A client given to the store: its local tier listens from the start.
  if (local !== undefined && given !== undefined) listen(given.duplicate!(SUBSCRIBER_OPTIONS))

  /**
   * A get with the local tier: a trusted copy answers at once; otherwise one script reads the
   * value (or checks the stamp of the copy held) and its PTTL. The copy is trusted afterwards only
   * when no change that could touch the key arrived while the reply was on its way.
   */
  async function getLocal(key: string, channel: InvalidationChannel, held: HotCopy | undefined): Promise<Buffer | null> {
    const c = client ?? (await open())
    const sentAt = now()
    const mark = channel.mark()
    const reply = (
      held?.bytes == null ? await runScript(c, READ_LOCAL, [prefix + key], []) : await runScript(c, VALIDATE_LOCAL, [prefix + key], [held.stamp])
    ) as [Buffer | 1, number] | null
    const trusted = channel.log.changedSince(mark, key) ? UNTRUSTED : mark
    if (reply === null) {
      // Absent: kept as a copy too, so that a key that mostly does not exist (a tag never
      // invalidated) costs no round trip either. A set anywhere publishes, and drops it.
      const absent: HotCopy = { stamp: NO_STAMP, bytes: null, size: key.length + HOT_OVERHEAD, mark: trusted, expiresAt: sentAt + local!.ttl }
      hot!.set(key, absent)
      return null
    }
    const [value, pttl] = reply
    const expiresAt = sentAt + Math.min(local!.ttl, pttl >= 0 ? pttl : Infinity)
    if (value === 1) {
      held!.mark = trusted
      held!.expiresAt = expiresAt
      return held!.bytes
    }
    return keep(key, value, trusted, expiresAt)
  }

  /** A get without the local tier: a plain GET, or the stamp check of a hot copy. */
  async function getRemote(key: string): Promise<Buffer | null> {
    const c = client ?? (await open())
    const held = hot?.get(key)
    if (held === undefined) return keep(key, await c.getBuffer(prefix + key))
    const reply = await validate(c, prefix + key, held.stamp)
    return reply === 1 ? held.bytes : keep(key, reply)
  }

  /**
   * getMany without the local tier: one script validating each hot copy held and reading the
   * other keys. A Cluster (keys in any slot) gets one get per key, sent together.
   */
  async function getManyRemote(keys: readonly string[]): Promise<(Buffer | null)[]> {
    if (keys.length === 0) return []
    const c = client ?? (await open())
    if (c.isCluster) return Promise.all(keys.map(getRemote))
    const held = keys.map((key) => hot?.get(key))
    const reply = (await runScript(
      c,
      VALIDATE_MANY,
      keys.map((key) => prefix + key),
      held.map((copy) => copy?.stamp ?? NO_STAMP),
    )) as (Buffer | null | 1)[]
    return keys.map((key, i) => (reply[i] === 1 ? held[i]!.bytes : keep(key, reply[i] as Buffer | null)))
  }

  async function unlinkBatch(node: RedisClient, keys: Buffer[], cluster: RedisClient, pattern?: string): Promise<number> {
    if (publishes && pattern !== undefined) {
      // The keys go and their message is published in one script: no change without its message.
      return Number(await runScript(node, UNLINK_PUBLISH, keys, [channelName, message('p', pattern)]))
    }
    if (!cluster.isCluster) return node.unlink(...keys)
    // In a Cluster a multi-key UNLINK must stay within one slot (CROSSSLOT otherwise), so send
    // single-key UNLINKs, pipelined to the node that owns them: still one round trip per batch.
    const results = (await node.pipeline(keys.map((key) => ['unlink', key])).exec()) ?? []
    let removed = 0
    for (let i = 0; i < results.length; i++) {
      const [error, count] = results[i]
      if (error) {
        // The slot moved during a resharding: let the Cluster client route it.
        removed += await cluster.unlink(keys[i])
      } else {
        removed += Number(count)
      }
    }
    return removed
  }

  async function scanAndUnlink(node: RedisClient, match: string, owner: RedisClient, pattern: string): Promise<number> {
    let removed = 0
    let cursor = '0'
    do {
      const [next, found] = await node.scanBuffer(cursor, 'MATCH', match, 'COUNT', scanCount)
      cursor = next.toString()
      // The cache's own records (tag and purge marks) outlive every pattern: another process
      // checks its writes against the very marks this invalidation has just written.
      const keys = found.filter((key) => !key.subarray(0, recordHead.length).equals(recordHead))
      for (let i = 0; i < keys.length; i += UNLINK_BATCH) {
        removed += await unlinkBatch(node, keys.slice(i, i + UNLINK_BATCH), owner, pattern)
      }
    } while (cursor !== '0')
    return removed
  }

  async function deleteMatching(pattern: string): Promise<number> {
    assertPattern(pattern)
    // Only to free memory early: a hot copy of a deleted key would fail its next validation anyway.
    forget(pattern)
    tier?.log.note(pattern)
    const c = await use()
    // A literal pattern names one key: no need to walk the keyspace.
    if (isLiteral(pattern)) {
      if (!publishes) return c.unlink(prefix + pattern)
      return Number(await runScript(c, UNLINK_PUBLISH, [prefix + pattern], [channelName, message('k', pattern)]))
    }
    const match = matchPrefix + toRedisGlob(pattern)
    if (!c.isCluster) {
      const removed = await scanAndUnlink(c, match, c, pattern)
      // Copies of keys Redis no longer held (evicted, deleted around the store) go too.
      if (publishes) await c.callBuffer('publish', [channelName, message('p', pattern)])
      return removed
    }
    const cluster = c as RedisClusterClient
    await clusterReady(cluster)
    // SCAN only sees the keys of the node it runs on: walk every master.
    const counts = await Promise.all(cluster.nodes('master').map((node) => scanAndUnlink(node, match, cluster, pattern)))
    return counts.reduce((a, b) => a + b, 0)
  }

  return {
    name: 'redis',
    localTier: tier !== undefined,
    prefix,

    get(key) {
      if (tier !== undefined) {
        // A trusted copy answers synchronously: no round trip, no promise.
        const held = hot!.get(key)
        if (held !== undefined) {
          const at = now()
          if (at < held.expiresAt && tier.trusts(held.mark, at)) return held.bytes
        }
        return getShared(key, tier, held)
      }
      return getRemote(key)
    },

    // With the local tier, each get may answer from memory: the cache calls get() per key then.
    getMany: local === undefined ? getManyRemote : undefined,

    async set(key, value, ttlMs) {
      const c = client ?? (await open())
      const stamped = stamp(toBuffer(value, 'set'))
      hot?.delete(key)
      fetching.delete(key)
      const px = Math.max(1, Math.ceil(ttlMs))
      if (!publishes) {
        await c.set(prefix + key, stamped, 'PX', px)
        return
      }
      tier?.log.note(key, true)
      await runScript(c, SET_PUBLISH, [prefix + key], [stamped, px, channelName, message('k', key)])
    },

    async setIf(key, expected, value, ttlMs) {
      const c = client ?? (await open())
      const stamped = stamp(toBuffer(value, 'setIf'))
      hot?.delete(key)
      fetching.delete(key)
      if (publishes) tier?.log.note(key, true)
      const reply = (await runScript(
        c,
        SET_IF,
        [prefix + key],
        [
          expected === null ? '0' : '1',
          expected === null ? '' : toBuffer(expected, 'setIf'),
          STAMP_MAGIC,
          stamped,
          Math.max(1, Math.ceil(ttlMs)),
          publishes ? channelName : '',
          publishes ? message('k', key) : '',
        ],
      )) as Buffer | null | 1
      return reply === 1 ? true : keep(key, reply)
    },

    async delete(key) {
      const c = client ?? (await open())
      hot?.delete(key)
      fetching.delete(key)
      if (!publishes) return (await c.unlink(prefix + key)) > 0
      tier?.log.note(key, true)
      return Number(await runScript(c, UNLINK_PUBLISH, [prefix + key], [channelName, message('k', key)])) > 0
    },

    deleteMatching,

    clear() {
      // Only this store's keys: `*` within the prefix, never FLUSHDB.
      return deleteMatching('*')
    },

    async close() {
      hot?.clear()
      // The subscriber is always the store's own connection, also with a client it was given.
      await tier?.close()
      if (url === undefined || closed) return // never close a client we were given
      closed = true
      const created = client ?? (opening ? await opening.catch(() => undefined) : undefined)
      if (!created) return
      await quit(created)
    },

    async lock(key, ttlMs) {
      if (typeof ttlMs !== 'number' || !(ttlMs > 0)) {
        throw new TypeError(`redisStore.lock ttlMs must be a positive number, got ${describe(ttlMs)}`)
      }
      const c = await use()
      const token = randomBytes(16).toString('base64url')
      const reply = await c.eval(LOCK_SCRIPT, 1, lockPrefix + key, token, Math.ceil(ttlMs))
      return Number(reply) === 1 ? token : null
    },

    async unlock(key, token) {
      const c = await use()
      return Number(await c.eval(UNLOCK_SCRIPT, 1, lockPrefix + key, token)) === 1
    },

    async getClient() {
      return use()
    },
  }
}

/** A value this process read recently; `size` is what it counts against `hotBytes`. */
interface HotCopy {
  stamp: Buffer
  /** `null`: the key was absent (local tier only). */
  bytes: Buffer | null
  size: number
  /** Local tier: the change-log mark it was fetched under, and until when it may be served locally. */
  mark: LogMark
  expiresAt: number
}

/** The stamp of an absent key's copy: matches no stored value. */
const NO_STAMP = Buffer.alloc(0)

/** A mark no session matches: the copy is checked with Redis before it is served. */
const UNTRUSTED: LogMark = { seq: -1, session: -1 }

/** Run a script by its SHA1, sending it whole when Redis lost it (a restart, SCRIPT FLUSH). */
async function runScript(client: RedisClient, s: Script, keys: (string | Buffer)[], args: (string | Buffer | number)[]): Promise<unknown> {
  try {
    return await client.callBuffer('evalsha', [s.sha, keys.length, ...keys, ...args])
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
    return client.callBuffer('eval', [s.source, keys.length, ...keys, ...args])
  }
}

/** The value behind a fresh write stamp, in one buffer: SET takes one value. */
function stamp(bytes: Buffer): Buffer {
  if (stampCounter === 0xffffffff) {
    stampBase = randomBytes(8)
    stampCounter = 0
  }
  stampCounter++
  const stamped = Buffer.allocUnsafe(STAMP_BYTES + bytes.length)
  STAMP_MAGIC.copy(stamped, 0)
  stampBase.copy(stamped, STAMP_MAGIC.length)
  stamped.writeUInt32BE(stampCounter, STAMP_BYTES - 4)
  bytes.copy(stamped, STAMP_BYTES)
  return stamped
}

function isStamped(raw: Buffer): boolean {
  return raw.length >= STAMP_BYTES && raw.compare(STAMP_MAGIC, 0, STAMP_MAGIC.length, 0, STAMP_MAGIC.length) === 0
}

/** Run the validation script, loading it again when Redis lost it (a restart, SCRIPT FLUSH, a new Cluster node). */
async function validate(client: RedisClient, name: string, held: Buffer): Promise<Buffer | null | 1> {
  try {
    return (await client.callBuffer('evalsha', [VALIDATE_SHA, 1, name, held])) as Buffer | null | 1
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error
    return (await client.callBuffer('eval', [VALIDATE_SCRIPT, 1, name, held])) as Buffer | null | 1
  }
}

/** ioredis's `Redis` constructor, as the store calls it. */
type RedisConstructor = new (url: string, options: object) => RedisClient

async function loadIoredis(): Promise<RedisConstructor> {
  try {
    const mod = (await import('ioredis')) as unknown as { Redis?: RedisConstructor; default?: RedisConstructor }
    const found = mod.Redis ?? mod.default
    if (!found) throw new Error('ioredis has no Redis export')
    return found
  } catch (error) {
    throw new Error(MISSING_IOREDIS, { cause: error })
  }
}

/** QUIT, then wait for the socket to be gone (status 'end'), so nothing outlives close(). */
async function quit(client: RedisClient): Promise<void> {
  if (client.status === 'end') return
  const ended = new Promise<void>((resolve) => {
    const timer = setTimeout(() => {
      client.disconnect() // the server did not answer QUIT in time: drop the socket
      resolve()
    }, 1000)
    client.once('end', () => {
      clearTimeout(timer)
      resolve()
    })
  })
  await client.quit().catch(() => client.disconnect())
  await ended
}

function clusterReady(cluster: RedisClusterClient): Promise<void> {
  if (cluster.status === 'ready') return Promise.resolve()
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cluster.off('ready', onReady)
      reject(new Error(`redisStore: Redis Cluster not ready after ${CLUSTER_READY_TIMEOUT_MS} ms (status ${cluster.status})`))
    }, CLUSTER_READY_TIMEOUT_MS)
    function onReady() {
      clearTimeout(timer)
      resolve()
    }
    cluster.once('ready', onReady)
  })
}

function toBuffer(value: Uint8Array, method: 'set' | 'setIf'): Buffer {
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(`redisStore.${method} expects bytes, got ${describe(value)}`)
  }
  // A view, not a copy: stamp() copies it behind the stamp at once.
  return asBuffer(value)
}

function isRedisClient(value: unknown): value is RedisClient {
  const candidate = value as Partial<RedisClient> | null
  return (
    candidate !== null &&
    typeof candidate === 'object' &&
    typeof candidate.getBuffer === 'function' &&
    typeof candidate.scanBuffer === 'function' &&
    typeof candidate.isCluster === 'boolean'
  )
}

function pickOptions(source: RedisStoreOptions): RedisStoreOptions {
  const picked: RedisStoreOptions = {}
  if (source.prefix !== undefined) picked.prefix = source.prefix
  if (source.lockPrefix !== undefined) picked.lockPrefix = source.lockPrefix
  if (source.scanCount !== undefined) picked.scanCount = source.scanCount
  if (source.clientOptions !== undefined) picked.clientOptions = source.clientOptions
  if (source.hotBytes !== undefined) picked.hotBytes = source.hotBytes
  if (source.local !== undefined) picked.local = source.local
  return picked
}

const MISSING_IOREDIS = 'redisStore({ url }) needs the "ioredis" package: npm install ioredis'

/** Throw `message` when `name` cannot be resolved from cachet's own location (nothing is loaded). */
function assertInstalled(name: string, message: string): void {
  try {
    createRequire(import.meta.url).resolve(name)
  } catch (error) {
    throw new Error(message, { cause: error })
  }
}

/** `host:port` of a redis:// URL, for logs (never its password). */
function serverOf(url: string): string {
  try {
    return new URL(url).host || url
  } catch {
    return 'an unparsable URL'
  }
}
