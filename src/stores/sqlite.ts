/** sqliteStore(): a persistent Store in one SQLite file on better-sqlite3, shared by the processes of one host. */
import { randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import createDebug from 'debug'
import { assertPattern, isLiteral, RECORD_PREFIX } from '../pattern.js'
import { assertKnownOptions, describe, describeObject } from '../validate.js'
import type { Store } from '../types.js'
import { asBuffer, sameBytes } from './bytes.js'

const debug = createDebug('cachet:sqlite')

/** The parts of a better-sqlite3 statement the store uses (described here so cachet never needs its types). */
export interface SqliteStatement {
  run(...params: unknown[]): { changes: number }
  get(...params: unknown[]): unknown
  all(...params: unknown[]): unknown[]
}

/** A function wrapped by `Database.transaction()`. (`any`: better-sqlite3 types it per wrapped function.) */
export interface SqliteTransaction {
  (...args: any[]): any
  immediate(...args: any[]): any
}

/** The parts of a better-sqlite3 `Database` the store uses. */
export interface SqliteDatabase {
  prepare(sql: string): SqliteStatement
  exec(sql: string): unknown
  pragma(source: string, options?: { simple?: boolean }): unknown
  transaction(fn: (...args: any[]) => any): SqliteTransaction
  close(): unknown
  readonly open: boolean
}

/** Where the store's data lives: a file the store opens, or a better-sqlite3 database you own. */
export type SqliteStoreConnection =
  | {
      /**
       * The database file. The store loads better-sqlite3 at construction, opens the file (creating
       * it), switches it to WAL with `busy_timeout`, and closes it in `close()`.
       */
      path: string
      database?: undefined
    }
  | {
      /**
       * A better-sqlite3 `Database` you opened. The store never closes it and never changes its
       * pragmas: for several processes on one file, open it with `journal_mode = WAL` and a short
       * `busy_timeout` yourself.
       */
      database: SqliteDatabase
      path?: undefined
    }

/** Options of `sqliteStore()`; each may also be given in its first argument. */
export interface SqliteStoreOptions {
  /**
   * Prepended to every key in the table; `clear()` and `deleteMatching()` never touch rows outside it.
   * @default 'cachet:'
   */
  prefix?: string
  /**
   * Base name of the store's tables: entries in `<table>`, locks in `<table>_locks`, the running
   * totals in `<table>_totals`. Letters, digits and `_`, not starting with a digit.
   * @default 'cachet'
   */
  table?: string
  /**
   * Most entries the table holds (every prefix together); the least recently read go first.
   * @default Infinity
   */
  maxEntries?: number
  /**
   * Most bytes of values the table holds (every prefix together); the least recently read go first.
   * @default 268_435_456 (256 MiB)
   */
  maxBytes?: number
  /**
   * How long a write waits for another connection's write transaction, in ms (`busy_timeout`,
   * for a file the store opens itself). The wait blocks the event loop: keep it well below the
   * cache's `storeTimeout`. A write that still finds the file locked fails, and the request is
   * served uncached.
   * @default 50
   */
  busyTimeout?: number
  /**
   * How often expired rows are swept and the read times of recent hits written back, in ms.
   * Each sweep deletes at most `sweepBatch` rows.
   * @default 1000
   */
  sweepInterval?: number
  /**
   * Most rows one sweep or one eviction step deletes.
   * @default 500
   */
  sweepBatch?: number
  /**
   * Clock in epoch milliseconds.
   * @default Date.now
   */
  now?: () => number
}

/** A SQLite-backed store; `lock`/`unlock` are shared by every process using the same file. */
export interface SqliteStore extends Store {
  readonly name: 'sqlite'
  /** The prefix in use (`cachet:` unless configured). */
  readonly prefix: string
  get(key: string): Buffer | undefined
  /**
   * What `get` answers for each of `keys`, in order, synchronously: one `SELECT … WHERE key IN (…)`
   * for up to 16 distinct keys, a statement per count of keys prepared on first use and kept.
   */
  getMany(keys: readonly string[]): (Buffer | undefined)[]
  set(key: string, value: Uint8Array, ttlMs: number): void
  /**
   * Store `value` only while the key holds `expected` (`null`: nothing), synchronously: the read
   * and the write in one `BEGIN IMMEDIATE` transaction. Returns `true` when stored, else what `get` answers now.
   */
  setIf(key: string, expected: Uint8Array | null, value: Uint8Array, ttlMs: number): true | Buffer | null
  /** True when the key existed. */
  delete(key: string): boolean
  deleteMatching(pattern: string): number
  clear(): number
  close(): void
  /** Entries and bytes of the whole table (every prefix), from running totals kept by triggers. */
  stats(): { entries: number; bytes: number }
  /** Take the lock named `key` for `ttlMs` (a row in `<table>_locks`); resolves a token, or `null` when held. */
  lock(key: string, ttlMs: number): Promise<string | null>
  /** Release a lock only if `token` still holds it. Resolves whether it did. */
  unlock(key: string, token: string): Promise<boolean>
  /** Delete up to `sweepBatch` expired rows now; returns how many went. */
  sweep(): number
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/
const MAX_BYTES_DEFAULT = 256 * 1024 * 1024
/** Hits whose read time is waiting to be written back; beyond this the oldest are dropped. */
const MAX_PENDING_TOUCHES = 10_000
/** Bounded eviction deletes per write. */
const EVICT_ROUNDS = 4
/** Most keys one statement of getMany() reads; more are read 16 at a time. */
const MANY_KEYS = 16

/**
 * A store in one SQLite file via better-sqlite3 (synchronous: every method answers at once).
 *
 * ```ts
 * responseCache({ store: sqliteStore({ path: '/var/cache/app/cache.db' }) })
 * ```
 *
 * Entries survive restarts, several processes may share the file (WAL, `busy_timeout`), expiry is
 * checked on every read and expired rows are swept in bounded batches. `setIf` reads and writes in
 * one immediate transaction, which holds the file's write lock. `deleteMatching('posts:*')`
 * is a range scan on the primary key (`key >= 'posts:' AND key < 'posts;'`); a pattern with a `*`
 * elsewhere scans the range of its literal head and filters it with `GLOB` (glob characters escaped).
 */
export function sqliteStore(connection: SqliteStoreConnection & SqliteStoreOptions, options: SqliteStoreOptions = {}): SqliteStore {
  if (connection === null || typeof connection !== 'object') {
    throw new TypeError(`sqliteStore expects { path } or { database }, got ${describe(connection)}`)
  }
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`sqliteStore options must be an object, got ${describe(options)}`)
  }
  assertKnownOptions('sqliteStore', connection, [...SQLITE_OPTIONS, ...['path', 'database']])
  assertKnownOptions('sqliteStore', options, SQLITE_OPTIONS)
  const merged: SqliteStoreOptions = { ...pickOptions(connection), ...options }
  const { path, database } = connection
  if (path !== undefined && database !== undefined) throw new TypeError('sqliteStore takes either "path" or "database", not both')
  if (path === undefined && database === undefined) {
    throw new TypeError('sqliteStore needs a "path" (a file name) or a "database" (a better-sqlite3 Database)')
  }
  if (path !== undefined && (typeof path !== 'string' || path === '')) {
    throw new TypeError(`sqliteStore option "path" must be a non-empty file name, got ${describe(path)}`)
  }
  if (database !== undefined && !isDatabase(database)) {
    throw new TypeError(`sqliteStore option "database" must be a better-sqlite3 Database, got ${describeObject(database)}`)
  }
  const prefix = merged.prefix === undefined ? 'cachet:' : merged.prefix
  if (typeof prefix !== 'string') throw new TypeError(`sqliteStore option "prefix" must be a string, got ${describe(prefix)}`)
  const table = merged.table === undefined ? 'cachet' : merged.table
  if (typeof table !== 'string' || !IDENTIFIER.test(table)) {
    throw new TypeError(`sqliteStore option "table" must be an identifier (letters, digits, _; at most 63), got ${describe(table)}`)
  }
  const maxEntries = limit('maxEntries', merged.maxEntries, Infinity)
  const maxBytes = limit('maxBytes', merged.maxBytes, MAX_BYTES_DEFAULT)
  const busyTimeout = count('busyTimeout', merged.busyTimeout, 50, 0)
  const sweepInterval = count('sweepInterval', merged.sweepInterval, 1000, 1)
  const sweepBatch = count('sweepBatch', merged.sweepBatch, 500, 1)
  const now = merged.now === undefined ? Date.now : merged.now
  if (typeof now !== 'function') throw new TypeError(`sqliteStore option "now" must be a function, got ${describe(now)}`)

  let db: SqliteDatabase
  if (path !== undefined) {
    const Database = loadBetterSqlite3()
    db = new Database(path)
    try {
      // Several processes starting at once: wait longer for the schema than for a request.
      db.pragma(`busy_timeout = ${Math.max(busyTimeout, 5000)}`)
      db.pragma('journal_mode = WAL')
      db.pragma('synchronous = NORMAL')
    } catch (error) {
      db.close()
      throw error
    }
  } else {
    db = database!
  }
  try {
    createSchema(db, table)
  } catch (error) {
    if (path !== undefined) db.close()
    throw error
  }
  if (path !== undefined) db.pragma(`busy_timeout = ${busyTimeout}`)

  const q = `"${table}"`
  const sql = {
    get: db.prepare(`SELECT value, expires FROM ${q} WHERE key = ?`),
    set: db.prepare(
      `INSERT INTO ${q} (key, value, expires, accessed, size) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires, accessed = excluded.accessed, size = excluded.size`,
    ),
    touch: db.prepare(`UPDATE ${q} SET accessed = ? WHERE key = ? AND accessed < ?`),
    delete: db.prepare(`DELETE FROM ${q} WHERE key = ?`),
    // Pattern deletions leave the cache's own records (the last two parameters: their key range).
    deleteRange: db.prepare(`DELETE FROM ${q} WHERE key >= ? AND key < ? AND NOT (key >= ? AND key < ?)`),
    deleteFrom: db.prepare(`DELETE FROM ${q} WHERE key >= ? AND NOT (key >= ? AND key < ?)`),
    deleteRangeGlob: db.prepare(`DELETE FROM ${q} WHERE key >= ? AND key < ? AND key GLOB ? AND NOT (key >= ? AND key < ?)`),
    deleteFromGlob: db.prepare(`DELETE FROM ${q} WHERE key >= ? AND key GLOB ? AND NOT (key >= ? AND key < ?)`),
    sweep: db.prepare(`DELETE FROM ${q} WHERE key IN (SELECT key FROM ${q} WHERE expires <= ? ORDER BY expires LIMIT ?)`),
    sweepLocks: db.prepare(`DELETE FROM "${table}_locks" WHERE name IN (SELECT name FROM "${table}_locks" WHERE expires <= ? LIMIT ?)`),
    evict: db.prepare(`DELETE FROM ${q} WHERE key IN (SELECT key FROM ${q} ORDER BY accessed LIMIT ?)`),
    totals: db.prepare(`SELECT entries, bytes FROM "${table}_totals" WHERE id = 1`),
    lock: db.prepare(
      `INSERT INTO "${table}_locks" (name, token, expires) VALUES (?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET token = excluded.token, expires = excluded.expires WHERE "${table}_locks".expires <= ?`,
    ),
    unlock: db.prepare(`DELETE FROM "${table}_locks" WHERE name = ? AND token = ?`),
  }

  /** Keys read since the last write-back, with when: reads never write, so a locked file cannot slow them. */
  const touched = new Map<string, number>()
  const writeBack = db.transaction(function writeBack(entries: [string, number][]) {
    for (const [name, at] of entries) sql.touch.run(at, name, at)
  })
  // At most EVICT_ROUNDS bounded deletes per call: what is left over goes on the next write or sweep.
  const evictToBounds = db.transaction(function evictToBounds() {
    for (let round = 0; round < EVICT_ROUNDS; round++) {
      const { entries, bytes } = sql.totals.get() as { entries: number; bytes: number }
      const overBytes = bytes - maxBytes
      // Rows to drop for the bytes: the excess over the mean row size, rounded up.
      const forBytes = overBytes > 0 ? Math.ceil(overBytes / Math.max(1, bytes / Math.max(1, entries))) : 0
      const excess = Math.max(entries - maxEntries, forBytes)
      if (excess <= 0) return
      sql.evict.run(Math.min(excess, sweepBatch))
    }
  })
  const bounded = maxEntries !== Infinity || maxBytes !== Infinity
  // The read and the write of setIf(): run with immediate(), the write lock is taken before the
  // read, so no other connection writes in between (a deferred one could fail to upgrade instead).
  const compareAndSet = db.transaction(function compareAndSet(name: string, expected: Uint8Array | null, bytes: Buffer, ttlMs: number) {
    const row = sql.get.get(name) as { value: Buffer; expires: number } | undefined
    const at = now()
    const held = row === undefined || row.expires <= at ? null : row.value
    if (!sameBytes(held, expected)) return held
    sql.set.run(name, bytes, at + Math.max(1, Math.ceil(ttlMs)), at, bytes.length)
    return true
  })

  /** After a row was written: its pending read time is moot, and a bounded store evicts down to its bounds. */
  function written(name: string): void {
    touched.delete(name)
    if (bounded) {
      // Least recently read first: the read times of recent hits go in before choosing.
      flushTouches()
      evictToBounds()
    }
  }

  function flushTouches(): void {
    if (touched.size === 0) return
    const entries = [...touched]
    touched.clear()
    writeBack(entries)
  }

  function sweep(): number {
    const at = now()
    const removed = sql.sweep.run(at, sweepBatch).changes
    sql.sweepLocks.run(at, sweepBatch)
    return removed
  }

  let closed = false
  const timer = setInterval(function maintain() {
    try {
      flushTouches()
      sweep()
      if (bounded) evictToBounds()
    } catch (error) {
      // A file locked past busy_timeout: the next round tries again.
      debug('maintenance failed: %s', (error as Error).message)
    }
  }, sweepInterval)
  timer.unref()

  /** Note that `name` (a prefixed key) was read at `at`, for the write-back of read times. */
  function touch(name: string, at: number): void {
    if (touched.size >= MAX_PENDING_TOUCHES) touched.delete(touched.keys().next().value!)
    touched.set(name, at)
  }

  function get(key: string): Buffer | undefined {
    const row = sql.get.get(prefix + key) as { value: Buffer; expires: number } | undefined
    if (row === undefined) return undefined
    const at = now()
    if (row.expires <= at) return undefined
    touch(prefix + key, at)
    return row.value
  }

  // The reads of getMany(), by how many keys they take: at most MANY_KEYS statements, ever.
  const readMany: SqliteStatement[] = []
  function getMany(keys: readonly string[]): (Buffer | undefined)[] {
    const names = [...new Set(keys.map((key) => prefix + key))]
    if (names.length <= 1) return keys.map((key) => get(key))
    const rows: { key: string; value: Buffer; expires: number }[] = []
    for (let i = 0; i < names.length; i += MANY_KEYS) {
      const part = names.slice(i, i + MANY_KEYS)
      readMany[part.length] ??= db.prepare(`SELECT key, value, expires FROM ${q} WHERE key IN (${'?, '.repeat(part.length - 1)}?)`)
      rows.push(...(readMany[part.length].all(...part) as typeof rows))
    }
    const at = now()
    const found = new Map<string, Buffer>()
    for (const row of rows) {
      if (row.expires <= at) continue
      found.set(row.key, row.value)
      touch(row.key, at)
    }
    return keys.map((key) => found.get(prefix + key))
  }

  /**
   * The key range of the cache's own records (tag and purge marks, RECORD_PREFIX), which pattern
   * deletions leave: other processes check their writes against the very marks an invalidation
   * has written.
   */
  const records = [prefix + RECORD_PREFIX, successor(prefix + RECORD_PREFIX)!] as const

  function deleteMatching(pattern: string): number {
    assertPattern(pattern)
    if (isLiteral(pattern)) return sql.delete.run(prefix + pattern).changes
    const star = pattern.indexOf('*')
    const head = prefix + pattern.slice(0, star)
    const upper = successor(head)
    if (star === pattern.length - 1) {
      // A prefix: a range scan on the primary key, never a full scan.
      return upper === undefined ? sql.deleteFrom.run(head, ...records).changes : sql.deleteRange.run(head, upper, ...records).changes
    }
    const glob = toSqliteGlob(prefix, false) + toSqliteGlob(pattern, true)
    return upper === undefined ? sql.deleteFromGlob.run(head, glob, ...records).changes : sql.deleteRangeGlob.run(head, upper, glob, ...records).changes
  }

  return {
    name: 'sqlite',
    prefix,

    get,
    getMany,

    set(key, value, ttlMs) {
      if (!(value instanceof Uint8Array)) throw new TypeError(`sqliteStore.set expects bytes, got ${describe(value)}`)
      const at = now()
      const bytes = asBuffer(value)
      sql.set.run(prefix + key, bytes, at + Math.max(1, Math.ceil(ttlMs)), at, bytes.length)
      written(prefix + key)
    },

    setIf(key, expected, value, ttlMs) {
      if (!(value instanceof Uint8Array)) throw new TypeError(`sqliteStore.setIf expects bytes, got ${describe(value)}`)
      if (expected !== null && !(expected instanceof Uint8Array)) {
        throw new TypeError(`sqliteStore.setIf expects the bytes expected or null, got ${describe(expected)}`)
      }
      const bytes = asBuffer(value)
      const stored = compareAndSet.immediate(prefix + key, expected, bytes, ttlMs) as true | Buffer | null
      if (stored === true) written(prefix + key)
      return stored
    },

    delete(key) {
      touched.delete(prefix + key)
      return sql.delete.run(prefix + key).changes > 0
    },

    deleteMatching,

    clear() {
      return deleteMatching('*')
    },

    close() {
      if (closed) return
      closed = true
      clearInterval(timer)
      try {
        flushTouches()
      } catch (error) {
        debug('could not write back read times: %s', (error as Error).message)
      }
      if (path !== undefined && db.open) db.close()
    },

    stats() {
      const totals = sql.totals.get() as { entries: number; bytes: number }
      return { entries: totals.entries, bytes: totals.bytes }
    },

    async lock(key, ttlMs) {
      if (typeof ttlMs !== 'number' || !(ttlMs > 0)) {
        throw new TypeError(`sqliteStore.lock ttlMs must be a positive number, got ${describe(ttlMs)}`)
      }
      const token = randomBytes(16).toString('base64url')
      const at = now()
      return sql.lock.run(prefix + key, token, at + Math.ceil(ttlMs), at).changes === 1 ? token : null
    },

    async unlock(key, token) {
      return sql.unlock.run(prefix + key, token).changes === 1
    },

    sweep,
  }
}

/** The tables, indexes and triggers, created when missing (one transaction, so processes starting together agree). */
function createSchema(db: SqliteDatabase, table: string): void {
  db.transaction(function create() {
    db.exec(`
      CREATE TABLE IF NOT EXISTS "${table}" (
        key      TEXT PRIMARY KEY,
        value    BLOB NOT NULL,
        expires  INTEGER NOT NULL,
        accessed INTEGER NOT NULL,
        size     INTEGER NOT NULL
      );
      CREATE INDEX IF NOT EXISTS "${table}_expires" ON "${table}" (expires);
      CREATE INDEX IF NOT EXISTS "${table}_accessed" ON "${table}" (accessed);
      CREATE TABLE IF NOT EXISTS "${table}_locks" (
        name    TEXT PRIMARY KEY,
        token   TEXT NOT NULL,
        expires INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS "${table}_totals" (
        id      INTEGER PRIMARY KEY CHECK (id = 1),
        entries INTEGER NOT NULL,
        bytes   INTEGER NOT NULL
      );
      INSERT OR IGNORE INTO "${table}_totals" (id, entries, bytes)
        SELECT 1, count(*), coalesce(sum(size), 0) FROM "${table}";
      CREATE TRIGGER IF NOT EXISTS "${table}_insert" AFTER INSERT ON "${table}" BEGIN
        UPDATE "${table}_totals" SET entries = entries + 1, bytes = bytes + NEW.size WHERE id = 1;
      END;
      CREATE TRIGGER IF NOT EXISTS "${table}_delete" AFTER DELETE ON "${table}" BEGIN
        UPDATE "${table}_totals" SET entries = entries - 1, bytes = bytes - OLD.size WHERE id = 1;
      END;
      CREATE TRIGGER IF NOT EXISTS "${table}_update" AFTER UPDATE OF size ON "${table}" BEGIN
        UPDATE "${table}_totals" SET bytes = bytes - OLD.size + NEW.size WHERE id = 1;
      END;
    `)
  }).immediate()
}

/**
 * The least string greater than every string starting with `head` (its last code point plus one,
 * dropping trailing U+10FFFF), or undefined when there is none. Text compares as UTF-8 bytes
 * (the BINARY collation), which orders like code points, so `[head, successor)` holds exactly the
 * keys starting with `head`.
 */
export function successor(head: string): string | undefined {
  const points = Array.from(head, (c) => c.codePointAt(0)!)
  while (points.length > 0) {
    const last = points.pop()!
    if (last < 0x10ffff) {
      points.push(last === 0xd7ff ? 0xe000 : last + 1)
      return String.fromCodePoint(...points)
    }
  }
  return undefined
}

/** Text as a SQLite GLOB matching it literally (`?`, `[` and, unless `star`, `*` in brackets); `star` keeps `*` a wildcard. */
function toSqliteGlob(text: string, star: boolean): string {
  return text.replace(star ? /[?[]/g : /[?[*]/g, '[$&]')
}

/** Loads better-sqlite3 from wherever the app installed it (ESM and CJS builds alike). */
function loadBetterSqlite3(): new (file: string) => SqliteDatabase {
  try {
    // ESM: import.meta.url; the CJS build has an empty import.meta, and __filename.
    const load = createRequire(typeof import.meta.url === 'string' ? import.meta.url : __filename)
    const mod = load('better-sqlite3') as { default?: unknown }
    return (mod.default ?? mod) as new (file: string) => SqliteDatabase
  } catch (error) {
    throw new Error('sqliteStore({ path }) needs the "better-sqlite3" package: npm install better-sqlite3', { cause: error })
  }
}

function isDatabase(value: unknown): value is SqliteDatabase {
  const candidate = value as Partial<SqliteDatabase> | null
  return (
    candidate !== null &&
    typeof candidate === 'object' &&
    typeof candidate.prepare === 'function' &&
    typeof candidate.transaction === 'function' &&
    typeof candidate.pragma === 'function'
  )
}

function limit(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (value === Infinity) return value
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new TypeError(`sqliteStore option "${name}" must be a positive integer or Infinity, got ${describe(value)}`)
  }
  return value
}

function count(name: string, value: unknown, fallback: number, min: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new TypeError(`sqliteStore option "${name}" must be an integer of at least ${min}, got ${describe(value)}`)
  }
  return value
}

/** Options that may sit beside the connection or in the second argument. */
const SQLITE_OPTIONS = ['prefix', 'table', 'maxEntries', 'maxBytes', 'busyTimeout', 'sweepInterval', 'sweepBatch', 'now'] as const

function pickOptions(source: SqliteStoreOptions): SqliteStoreOptions {
  const picked: SqliteStoreOptions = {}
  for (const name of SQLITE_OPTIONS) {
    if (source[name] !== undefined) (picked as Record<string, unknown>)[name] = source[name]
  }
  return picked
}
