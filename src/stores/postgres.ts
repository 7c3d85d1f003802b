/** postgresStore(): a Store in an UNLOGGED PostgreSQL table on `pg`, shared by every process that reaches the database. */
import { createHash, randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import createDebug from 'debug'
import { assertPattern, isLiteral, RECORD_PREFIX } from '../pattern.js'
import { assertKnownOptions, boolean, describe, describeObject } from '../validate.js'
import type { Store } from '../types.js'
import { asBuffer } from './bytes.js'

const debug = createDebug('cachet:postgres')

/** What a query resolves with (the parts the store reads). */
export interface PostgresResult {
  rows: Record<string, unknown>[]
  rowCount: number | null
}

/** A query with a name: pg parses it once per connection and then sends only its parameters. */
export interface PostgresQuery {
  name?: string
  text: string
  values?: unknown[]
}

/** A connection checked out of a pool (`pg.PoolClient`): used only to create the schema in one transaction. */
export interface PostgresPoolClient {
  query(text: string, values?: unknown[]): Promise<PostgresResult>
  release(error?: Error | boolean): void
}

/** The parts of a `pg.Pool` the store uses (described here so cachet never needs pg's types). */
export interface PostgresPool {
  /** SQL text and values, or (with `prepare`, the default) a named query in pg's config form. */
  query(text: string | PostgresQuery, values?: unknown[]): Promise<PostgresResult>
  connect(): Promise<PostgresPoolClient>
  end(): Promise<void>
  on?(event: 'error', listener: (error: Error) => void): unknown
}

/** Where the store's data lives: a pool you own, or a connection string the store opens a pool for. */
export type PostgresStoreConnection =
  | {
      /** A `pg.Pool` you created. The store never ends it. */
      pool: PostgresPool
      connectionString?: undefined
    }
  | {
      /**
       * A `postgres://` URL. The store loads pg at construction, creates a `pg.Pool` (opened on
       * first use), and ends it in `close()`.
       */
      connectionString: string
      pool?: undefined
    }

/** Options of `postgresStore()`; each may also be given in its first argument. */
export interface PostgresStoreOptions {
  /**
   * Prepended to every key in the table; `clear()` and `deleteMatching()` never touch rows outside it.
   * @default 'cachet:'
   */
  prefix?: string
  /**
   * The entries table; locks go in `<table>_locks`. Letters, digits and `_`, not starting with a
   * digit, at most 57 characters (so the index names fit in 63), optionally `schema.table`.
   * @default 'cachet'
   */
  table?: string
  /**
   * Create the tables and index on first use when missing (`CREATE … IF NOT EXISTS`, in one
   * transaction under an advisory lock). `false` when a migration creates them (see the README).
   * @default true
   */
  createTable?: boolean
  /**
   * How often expired rows are deleted, in ms; each sweep deletes at most `batchSize` rows.
   * @default 60_000
   */
  sweepInterval?: number
  /**
   * Rows per `DELETE` of a sweep or of a pattern deletion (pattern deletions loop over batches).
   * @default 1000
   */
  batchSize?: number
  /**
   * Options of the pool the store creates from `connectionString` (ignored with `pool`), merged
   * over `{ max: 10, connectionTimeoutMillis: 2000, idleTimeoutMillis: 30_000 }`.
   * @default {}
   */
  poolOptions?: Record<string, unknown>
  /**
   * Reads and writes as named prepared statements: each connection parses them once, then sends
   * only the parameters. `false` behind a pooler that cannot keep prepared statements (PgBouncer
   * in transaction mode before 1.21, or without `max_prepared_statements`).
   * @default true
   */
  prepare?: boolean
}

/** A PostgreSQL-backed store; `lock`/`unlock` are shared by every process using the table. */
export interface PostgresStore extends Store {
  readonly name: 'postgres'
  /** The prefix in use (`cachet:` unless configured). */
  readonly prefix: string
  get(key: string): Promise<Buffer | undefined>
  /**
   * What `get` answers for each of `keys`, in order: one `SELECT … WHERE key = ANY($1)` for all of
   * them (none for no keys).
   */
  getMany(keys: readonly string[]): Promise<(Buffer | undefined)[]>
  set(key: string, value: Uint8Array, ttlMs: number): Promise<void>
  /**
   * Store `value` only while the key holds `expected` (`null`: nothing): one statement that writes
   * only over that (`INSERT … ON CONFLICT DO UPDATE … WHERE` expired, or `UPDATE … WHERE value =` expected),
   * then, when it wrote nothing, what `get` answers. Resolves `true` when stored, else that answer.
   */
  setIf(key: string, expected: Uint8Array | null, value: Uint8Array, ttlMs: number): Promise<true | Buffer | null>
  /** Resolves true when the key existed. */
  delete(key: string): Promise<boolean>
  deleteMatching(pattern: string): Promise<number>
  clear(): Promise<number>
  close(): Promise<void>
  /**
   * Take the lock named `key` for `ttlMs`: a row of `<table>_locks` inserted, or taken over when
   * expired, by one `INSERT … ON CONFLICT DO UPDATE … WHERE expires_at <= now`. Resolves a token,
   * or `null` when another holder has it.
   */
  lock(key: string, ttlMs: number): Promise<string | null>
  /** Release a lock only if `token` still holds it. Resolves whether it did. */
  unlock(key: string, token: string): Promise<boolean>
  /** Delete up to `batchSize` expired rows now; resolves how many went. */
  sweep(): Promise<number>
}

const TABLE = /^(?:[A-Za-z_][A-Za-z0-9_]{0,56}\.)?[A-Za-z_][A-Za-z0-9_]{0,56}$/
const POOL_DEFAULTS = { max: 10, connectionTimeoutMillis: 2000, idleTimeoutMillis: 30_000 }

/**
 * A store in one UNLOGGED PostgreSQL table via `pg`.
 *
 * ```ts
 * responseCache({ store: postgresStore({ pool: new pg.Pool({ connectionString: process.env.DATABASE_URL }) }) })
 * ```
 *
 * Writes are `INSERT … ON CONFLICT DO UPDATE`; reads check `expires_at` against the server's
 * clock; expired rows are swept in batches. `setIf` is one conditional write, and a read when it
 * wrote nothing. `deleteMatching('posts:*')` is `key LIKE 'posts:%'`
 * (LIKE-escaped) on the `COLLATE "C"` primary key, an index range scan, deleted in batches.
 */
export function postgresStore(connection: PostgresStoreConnection & PostgresStoreOptions, options: PostgresStoreOptions = {}): PostgresStore {
  if (connection === null || typeof connection !== 'object') {
    throw new TypeError(`postgresStore expects { pool } or { connectionString }, got ${describe(connection)}`)
  }
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`postgresStore options must be an object, got ${describe(options)}`)
  }
  assertKnownOptions('postgresStore', connection, [...POSTGRES_OPTIONS, ...['pool', 'connectionString']])
  assertKnownOptions('postgresStore', options, POSTGRES_OPTIONS)
  const merged: PostgresStoreOptions = { ...pickOptions(connection), ...options }
  const { pool: given, connectionString } = connection
  if (given !== undefined && connectionString !== undefined) {
    throw new TypeError('postgresStore takes either "pool" or "connectionString", not both')
  }
  if (given === undefined && connectionString === undefined) {
    throw new TypeError('postgresStore needs a "pool" (a pg Pool) or a "connectionString"')
  }
  if (given !== undefined && !isPool(given)) {
    throw new TypeError(`postgresStore option "pool" must be a pg Pool, got ${describeObject(given)}`)
  }
  if (connectionString !== undefined && (typeof connectionString !== 'string' || !/^postgres(ql)?:\/\//.test(connectionString))) {
    throw new TypeError(`postgresStore option "connectionString" must be a postgres:// URL string, got ${describe(connectionString)}`)
  }
  const prefix = merged.prefix === undefined ? 'cachet:' : merged.prefix
  if (typeof prefix !== 'string') throw new TypeError(`postgresStore option "prefix" must be a string, got ${describe(prefix)}`)
  if (prefix.includes('\0')) throw new TypeError(`postgresStore option "prefix" must not contain NUL characters, got ${describe(prefix)}`)
  const table = merged.table === undefined ? 'cachet' : merged.table
  if (typeof table !== 'string' || !TABLE.test(table)) {
    throw new TypeError(
      `postgresStore option "table" must be an identifier (letters, digits, _; at most 57), optionally schema-qualified, got ${describe(table)}`,
    )
  }
  const createTable = merged.createTable === undefined ? true : merged.createTable
  if (typeof createTable !== 'boolean') throw new TypeError(`postgresStore option "createTable" must be a boolean, got ${describe(createTable)}`)
  const sweepInterval = integer('sweepInterval', merged.sweepInterval, 60_000)
  const batchSize = integer('batchSize', merged.batchSize, 1000)
  const prepare = boolean('prepare', merged.prepare, true, 'postgresStore option')
  const poolOptions = merged.poolOptions === undefined ? {} : merged.poolOptions
  if (poolOptions === null || typeof poolOptions !== 'object') {
    throw new TypeError(`postgresStore option "poolOptions" must be an object, got ${describe(poolOptions)}`)
  }

  let pool: PostgresPool
  if (given !== undefined) {
    pool = given
  } else {
    const pg = loadPg()
    pool = new pg.Pool({ ...POOL_DEFAULTS, ...poolOptions, connectionString })
    // An idle connection that breaks emits 'error' on the pool; without a listener it would crash the process.
    pool.on?.('error', (error) => debug('idle connection error: %s', error.message))
  }

  const [schema, name] = table.includes('.') ? table.split('.') : [undefined, table]
  const q = schema === undefined ? `"${name}"` : `"${schema}"."${name}"`
  const locks = schema === undefined ? `"${name}_locks"` : `"${schema}"."${name}_locks"`
  const sql = {
    // The value as base64 text: pg reads every column as text, and bytea's text form is hex, twice
    // the value's size to send, decode from UTF-8 and decode again (base64 is 4/3, with a newline
    // every 76 characters, which Buffer.from(…, 'base64') skips).
    get: `SELECT encode(value, 'base64') AS value FROM ${q} WHERE key = $1 AND expires_at > clock_timestamp()`,
    // Several keys at once, as one text array; each row names its key, so the rows come back in any order.
    getMany: `SELECT key, encode(value, 'base64') AS value FROM ${q} WHERE key = ANY($1::text[]) AND expires_at > clock_timestamp()`,
    set: `INSERT INTO ${q} (key, value, expires_at) VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond')
          ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at`,
    // setIf() over nothing: a new row, or over an expired one (what get() answers as a miss). The
    // conflict's row is locked and checked as it is now, so two writers cannot both take it.
    setIfAbsent: `INSERT INTO ${q} (key, value, expires_at) VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond')
          ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at
          WHERE ${q}.expires_at <= clock_timestamp()`,
    // setIf() over the bytes expected: a concurrent writer's row is checked again once it commits.
    setIfHeld: `UPDATE ${q} SET value = $2, expires_at = clock_timestamp() + $3 * interval '1 millisecond'
          WHERE key = $1 AND value = $4 AND expires_at > clock_timestamp()`,
    delete: `DELETE FROM ${q} WHERE key = $1`,
    // One batch of a pattern deletion, walking the key range in order so no batch visits the rows
    // an earlier one deleted; `last` is where the next batch starts.
    deleteBatch: `WITH batch AS (
        SELECT key FROM ${q} WHERE key LIKE $1 AND key > $2 AND key NOT LIKE $4 ORDER BY key LIMIT $3
      ), gone AS (
        DELETE FROM ${q} t USING batch WHERE t.key = batch.key RETURNING t.key
      )
      SELECT count(*)::int AS removed, max(key) AS last FROM gone`,
    sweep: `DELETE FROM ${q} WHERE key IN (SELECT key FROM ${q} WHERE expires_at <= clock_timestamp() LIMIT $1)`,
    sweepLocks: `DELETE FROM ${locks} WHERE name IN (SELECT name FROM ${locks} WHERE expires_at <= clock_timestamp() LIMIT $1)`,
    lock: `INSERT INTO ${locks} (name, token, expires_at) VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond')
           ON CONFLICT (name) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
           WHERE ${locks}.expires_at <= clock_timestamp()`,
    unlock: `DELETE FROM ${locks} WHERE name = $1 AND token = $2`,
  }

  let ready: Promise<void> | undefined = createTable ? undefined : Promise.resolve()
  let closed = false

  /** The schema, once per store; a failure is retried by the next call. */
  function prepared(): Promise<void> {
    if (closed) return Promise.reject(new Error('postgresStore is closed'))
    if (ready === undefined) {
      ready = createSchema(pool, q, locks, `cachet:${table}`)
      ready.catch(() => {
        ready = undefined
      })
    }
    return ready
  }

  /** Run SQL text, or a named statement (`named`), once the schema is there. */
  async function query(statement: string | PostgresQuery, values: unknown[]): Promise<PostgresResult> {
    await prepared()
    return typeof statement === 'string' ? pool.query(statement, values) : pool.query({ ...statement, values })
  }

  // The reads and the write, named after their text: stores of other tables on one pool never share
  // a name (pg refuses one name for two texts on a connection). Without `prepare`, plain text.
  const named = (text: string): string | PostgresQuery =>
    prepare ? { name: `cachet_${createHash('sha256').update(text).digest('hex').slice(0, 16)}`, text } : text
  const getQuery = named(sql.get)
  const getManyQuery = named(sql.getMany)
  const setQuery = named(sql.set)
  const setIfAbsentQuery = named(sql.setIfAbsent)
  const setIfHeldQuery = named(sql.setIfHeld)

  /** The bytes under `key` while unexpired by the server's clock, else undefined. */
  async function get(key: string): Promise<Buffer | undefined> {
    const { rows } = await query(getQuery, [prefix + key])
    return rows.length === 0 ? undefined : Buffer.from(rows[0].value as string, 'base64')
  }

  async function sweep(): Promise<number> {
    const removed = (await query(sql.sweep, [batchSize])).rowCount ?? 0
    await query(sql.sweepLocks, [batchSize])
    return removed
  }

  const timer = setInterval(function maintain() {
    if (ready === undefined) return // nothing written through this store yet
    sweep().catch((error: Error) => debug('sweep failed: %s', error.message))
  }, sweepInterval)
  timer.unref()

  async function deleteMatching(pattern: string): Promise<number> {
    assertPattern(pattern)
    if (isLiteral(pattern)) return (await query(sql.delete, [prefix + pattern])).rowCount ?? 0
    const like = escapeLike(prefix) + pattern.split('*').map(escapeLike).join('%')
    // The cache's own records (tag and purge marks) outlive every pattern: other processes check
    // their writes against the very marks this invalidation has written.
    const records = escapeLike(prefix + RECORD_PREFIX) + '%'
    let removed = 0
    let last = ''
    for (;;) {
      const row = (await query(sql.deleteBatch, [like, last, batchSize, records])).rows[0] as { removed: number; last: string | null }
      removed += row.removed
      if (row.removed < batchSize || row.last === null) return removed
      last = row.last
    }
  }

  return {
    name: 'postgres',
    prefix,

    get,

    async getMany(keys) {
      if (keys.length === 0) return []
      const unique = [...new Set(keys.map((key) => prefix + key))]
      const { rows } = await query(getManyQuery, [unique])
      const found = new Map<string, Buffer>()
      for (const row of rows) found.set(row.key as string, Buffer.from(row.value as string, 'base64'))
      return keys.map((key) => found.get(prefix + key))
    },

    async set(key, value, ttlMs) {
      if (!(value instanceof Uint8Array)) throw new TypeError(`postgresStore.set expects bytes, got ${describe(value)}`)
      await query(setQuery, [prefix + key, asBuffer(value), Math.max(1, Math.ceil(ttlMs))])
    },

    async setIf(key, expected, value, ttlMs) {
      if (!(value instanceof Uint8Array)) throw new TypeError(`postgresStore.setIf expects bytes, got ${describe(value)}`)
      if (expected !== null && !(expected instanceof Uint8Array)) {
        throw new TypeError(`postgresStore.setIf expects the bytes expected or null, got ${describe(expected)}`)
      }
      const bytes = asBuffer(value)
      const ttl = Math.max(1, Math.ceil(ttlMs))
      const { rowCount } =
        expected === null
          ? await query(setIfAbsentQuery, [prefix + key, bytes, ttl])
          : await query(setIfHeldQuery, [prefix + key, bytes, ttl, asBuffer(expected)])
      if (rowCount === 1) return true
      return (await get(key)) ?? null
    },

    async delete(key) {
      return ((await query(sql.delete, [prefix + key])).rowCount ?? 0) > 0
    },

    deleteMatching,

    clear() {
      return deleteMatching('*')
    },

    async close() {
      if (closed) return
      closed = true
      clearInterval(timer)
      if (connectionString !== undefined) await pool.end() // never end a pool we were given
    },

    async lock(key, ttlMs) {
      if (typeof ttlMs !== 'number' || !(ttlMs > 0)) {
        throw new TypeError(`postgresStore.lock ttlMs must be a positive number, got ${describe(ttlMs)}`)
      }
      const token = randomBytes(16).toString('base64url')
      const { rowCount } = await query(sql.lock, [prefix + key, token, Math.ceil(ttlMs)])
      return rowCount === 1 ? token : null
    },

    async unlock(key, token) {
      return (await query(sql.unlock, [prefix + key, token])).rowCount === 1
    },

    sweep,
  }
}

/**
 * The tables and index, created when missing. In one transaction under an advisory lock: two
 * processes running `CREATE TABLE IF NOT EXISTS` at once can otherwise both try to create it.
 */
async function createSchema(pool: PostgresPool, q: string, locks: string, lockName: string): Promise<void> {
  const client = await pool.connect()
  let failed: Error | undefined
  try {
    await client.query('BEGIN')
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [lockName])
    await client.query(`CREATE UNLOGGED TABLE IF NOT EXISTS ${q} (
      key        text COLLATE "C" PRIMARY KEY,
      value      bytea NOT NULL,
      expires_at timestamptz NOT NULL
    )`)
    await client.query(`CREATE INDEX IF NOT EXISTS ${indexName(q)} ON ${q} (expires_at)`)
    await client.query(`CREATE UNLOGGED TABLE IF NOT EXISTS ${locks} (
      name       text COLLATE "C" PRIMARY KEY,
      token      text NOT NULL,
      expires_at timestamptz NOT NULL
    )`)
    await client.query('COMMIT')
  } catch (error) {
    failed = error as Error
    await client.query('ROLLBACK').catch(() => {})
    throw error
  } finally {
    client.release(failed)
  }
}

/** `"name_expires_at"` for `"name"` or `"schema"."name"` (an index lives in its table's schema). */
function indexName(q: string): string {
  const last = q.slice(q.lastIndexOf('"', q.length - 2) + 1, -1)
  return `"${last}_expires_at"`
}

/** Text as a LIKE pattern matching it literally (the default escape character is `\`). */
function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, '\\$&')
}

/** Loads pg from wherever the app installed it (ESM and CJS builds alike). */
function loadPg(): { Pool: new (config: Record<string, unknown>) => PostgresPool } {
  try {
    // ESM: import.meta.url; the CJS build has an empty import.meta, and __filename.
    const load = createRequire(typeof import.meta.url === 'string' ? import.meta.url : __filename)
    const mod = load('pg') as { Pool?: unknown; default?: { Pool: unknown } }
    return { Pool: (mod.Pool ?? mod.default!.Pool) as new (config: Record<string, unknown>) => PostgresPool }
  } catch (error) {
    throw new Error('postgresStore({ connectionString }) needs the "pg" package: npm install pg', { cause: error })
  }
}

function isPool(value: unknown): value is PostgresPool {
  const candidate = value as Partial<PostgresPool> | null
  return candidate !== null && typeof candidate === 'object' && typeof candidate.query === 'function' && typeof candidate.connect === 'function'
}

function integer(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new TypeError(`postgresStore option "${name}" must be a positive integer, got ${describe(value)}`)
  }
  return value
}

/** Options that may sit beside the connection or in the second argument. */
const POSTGRES_OPTIONS = ['prefix', 'table', 'createTable', 'sweepInterval', 'batchSize', 'poolOptions', 'prepare'] as const

function pickOptions(source: PostgresStoreOptions): PostgresStoreOptions {
  const picked: PostgresStoreOptions = {}
  for (const key of POSTGRES_OPTIONS) {
    if (source[key] !== undefined) (picked as Record<string, unknown>)[key] = source[key]
  }
  return picked
}
