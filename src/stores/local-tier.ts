/** The `local` option of redisStore() and memcachedStore(), and the log of recent changes that decides whether a fetched copy may be trusted. */
import { compilePattern, isLiteral } from '../pattern.js'
import { describe } from '../validate.js'

/**
 * A local tier: values read from the server kept in process memory and served from there with no
 * round trip, for as long as the store can tell they are still current. See the README sections
 * of redisStore and memcachedStore for the bound each one keeps.
 */
export interface LocalTierOptions {
  /**
   * Bytes of values kept in process memory (least recently used dropped first). A value larger
   * than this is never kept.
   * @default 16 MiB
   */
  maxBytes?: number
  /**
   * Longest a copy is served without asking the server, in ms. On memcached this is the
   * staleness bound for changes made by other processes (see memcachedStore); on Redis it bounds
   * changes made around the store (raw writes by other clients, evictions).
   * @default 1000 on memcached, 10_000 on Redis
   */
  ttl?: number
  /**
   * Redis only: the invalidation channel is checked with a PING every `heartbeat` ms, and copies
   * are served only while a PING sent within the last `2 × heartbeat` ms has been answered, so a
   * channel that stalls silently stops local hits within that bound.
   * @default 250
   */
  heartbeat?: number
}

/** The `local` option once validated. */
export interface LocalTier {
  maxBytes: number
  ttl: number
  heartbeat: number
}

/** Default `local.maxBytes`, the same as redisStore's `hotBytes`. */
export const LOCAL_MAX_BYTES_DEFAULT = 16 * 1024 * 1024

/**
 * Validate `local` (`false`/`undefined`: no local tier). Throws a TypeError naming the option and
 * showing the value.
 */
export function parseLocal(store: 'redisStore' | 'memcachedStore', value: unknown, defaults: { ttl: number; heartbeat?: number }): LocalTier | undefined {
  if (value === undefined || value === false) return undefined
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TypeError(`${store} option "local" must be false or an object { maxBytes, ttl }, got ${describe(value)}`)
  }
  const known = defaults.heartbeat === undefined ? ['maxBytes', 'ttl'] : ['maxBytes', 'ttl', 'heartbeat']
  for (const name of Object.keys(value)) {
    if (!known.includes(name)) {
      throw new TypeError(`${store} option "local" has an unknown field "${name}" (known: ${known.join(', ')})`)
    }
  }
  const given = value as LocalTierOptions
  const maxBytes = given.maxBytes === undefined ? LOCAL_MAX_BYTES_DEFAULT : given.maxBytes
  if (typeof maxBytes !== 'number' || !Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
    throw new TypeError(`${store} option "local.maxBytes" must be a positive integer, got ${describe(maxBytes)}`)
  }
  const ttl = given.ttl === undefined ? defaults.ttl : given.ttl
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl <= 0) {
    throw new TypeError(`${store} option "local.ttl" must be a positive number of milliseconds, got ${describe(ttl)}`)
  }
  const heartbeat = given.heartbeat === undefined ? (defaults.heartbeat ?? 0) : given.heartbeat
  if (defaults.heartbeat !== undefined && (typeof heartbeat !== 'number' || !Number.isFinite(heartbeat) || heartbeat < 10)) {
    throw new TypeError(`${store} option "local.heartbeat" must be a number of milliseconds >= 10, got ${describe(heartbeat)}`)
  }
  return { maxBytes, ttl, heartbeat }
}

/** Changes kept in the log; a fetch that saw more changes go by than this keeps no trusted copy. */
const LOG_SIZE = 256

/** Where a fetch started in the log: `session` -1 means "not trustworthy from the start". */
export interface LogMark {
  seq: number
  session: number
}

/**
 * The changes this process learnt of recently (its own writes and the invalidations it received),
 * numbered. A copy fetched from the server may be trusted only when no change touching its key
 * arrived while the fetch was under way: otherwise the reply may predate a change already applied
 * (the reply and the invalidation travel on different connections).
 */
export class ChangeLog {
  /** Changes noted so far. */
  seq = 0
  /** Bumped whenever changes may have been missed (the invalidation channel went down or came up). */
  session = 0
  private readonly entries: { seq: number; matches: (key: string) => boolean }[] = []

  /** Note a change of one key (`literal`) or of every key matching a pattern. */
  note(pattern: string, literal = isLiteral(pattern)): void {
    this.seq++
    const matches = literal ? (key: string) => key === pattern : compilePattern(pattern)
    this.entries.push({ seq: this.seq, matches })
    if (this.entries.length > LOG_SIZE) this.entries.shift()
  }

  /** Start a new session: every mark taken before is untrustworthy. */
  reset(): void {
    this.session++
    this.seq++
    this.entries.length = 0
  }

  mark(trustworthy: boolean): LogMark {
    return { seq: this.seq, session: trustworthy ? this.session : -1 }
  }

  /** Whether `key` may have changed since `mark` (true also when the log cannot tell). */
  changedSince(mark: LogMark, key: string): boolean {
    if (mark.session !== this.session) return true
    if (mark.seq === this.seq) return false
    const oldest = this.entries.length === 0 ? this.seq + 1 : this.entries[0].seq
    if (oldest > mark.seq + 1) return true
    for (let i = this.entries.length - 1; i >= 0 && this.entries[i].seq > mark.seq; i--) {
      if (this.entries[i].matches(key)) return true
    }
    return false
  }
}
