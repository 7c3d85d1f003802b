/** memoryStore(): an in-process store on lru-cache, bounded by bytes and by entries. */
import { LRUCache } from 'lru-cache'
import { flat } from '../entry.js'
import { assertPattern, compilePattern, isLiteral } from '../pattern.js'
import { assertKnownOptions, describe } from '../validate.js'
import type { Entry, Store } from '../types.js'

export interface MemoryStoreOptions {
  /**
   * Upper bound on the bytes held: stored bodies, headers and keys plus a fixed per-entry
   * allowance. Least recently used entries are evicted first.
   * @default 67_108_864 (64 MiB)
   */
  maxBytes?: number
  /**
   * Upper bound on the number of entries.
   * @default 100_000
   */
  maxEntries?: number
  /**
   * Clock in epoch milliseconds, for tests that move time instead of sleeping.
   * @default Date.now
   */
  now?: () => number
}

/** The options memoryStore() takes; anything else is a TypeError (a misspelt cap would be ignored). */
const MEMORY_OPTIONS = ['maxBytes', 'maxEntries', 'now'] as const

/** Bytes charged per entry on top of its own size: the LRU's slots, the Map entry, the object. */
export const ENTRY_OVERHEAD = 160

/**
 * A large invalidation deletes in slices and yields between them, so requests in flight are not
 * held behind it: a slice ends after this many milliseconds, or after SLICE_KEYS keys.
 */
const SLICE_MS = 3
const SLICE_KEYS = 4096
/** Keys deleted between two looks at the clock. */
const CLOCK_EVERY = 256

/**
 * Internal fast path: the middleware keeps entries in a memory store as objects, so a hit costs
 * no decoding and no copy. Other stores only ever see bytes.
 */
export const kEntryStore = Symbol('cachet.entryStore')

export interface EntryStore {
  getEntry(key: string): Entry | undefined
  setEntry(key: string, entry: Entry, ttlMs: number): void
}

export interface MemoryStore extends Store {
  readonly name: 'memory'
  readonly [kEntryStore]: EntryStore
  stats(): { entries: number; bytes: number }
}

type Value = Uint8Array | Entry

/**
 * An in-process store bounded by bytes and entries, with per-entry ttl.
 *
 * ```ts
 * responseCache({ store: memoryStore({ maxBytes: 256 * 1024 * 1024 }) })
 * ```
 */
export function memoryStore(options: MemoryStoreOptions = {}): MemoryStore {
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`memoryStore options must be an object, got ${describe(options)}`)
  }
  assertKnownOptions('memoryStore', options, MEMORY_OPTIONS)
  const maxBytes = positiveInteger('maxBytes', options.maxBytes, 64 * 1024 * 1024)
  const maxEntries = positiveInteger('maxEntries', options.maxEntries, 100_000)
  if (options.now !== undefined && typeof options.now !== 'function') {
    throw new TypeError(`memoryStore option "now" must be a function, got ${describe(options.now)}`)
  }
  const now = options.now ?? Date.now

  const index = new KeyIndex()
  /** Invalidations in progress: each hears of the keys written after it started. */
  const sweeps = new Set<Set<string>>()
  let clearing = false

  const lru = new LRUCache<string, Value>({
    // No `max`: lru-cache would allocate seven slot arrays of `max` entries up front (~50 B per
    // slot, 5 MB at the default), whatever the cache holds. maxEntries is enforced in put().
    maxSize: maxBytes,
    sizeCalculation: (value, key) => sizeOf(value) + key.length * 2 + ENTRY_OVERHEAD,
    perf: { now },
    // No cached "now": an injected clock takes effect on the very next call.
    ttlResolution: 0,
    ttlAutopurge: false,
    dispose(_value, key, reason) {
      // 'set' replaces the value of a key that stays; clear() resets the index at once.
      if (reason !== 'set' && !clearing) index.remove(key)
    },
  })

  function put(key: string, value: Value, ttlMs: number): void {
    // A key built by concatenation is a chain of string pieces; a flat copy is what stays.
    const stored = flat(key)
    lru.set(stored, value, { ttl: Math.max(1, Math.ceil(ttlMs)) })
    // A value larger than maxBytes is not stored, and the key's previous value is gone too (with
    // a 'set' dispose, which the index does not hear about).
    if (!lru.has(stored)) return index.remove(stored)
    index.add(stored)
    if (sweeps.size > 0) for (const written of sweeps) written.add(stored)
    if (lru.size > maxEntries) lru.pop()
  }

  function clear(): void {
    clearing = true
    try {
      lru.clear()
    } finally {
      clearing = false
    }
    index.clear()
  }

  /**
   * Delete `candidates` that still match, in slices between which the event loop runs. A key
   * written after the invalidation started is newer than it and stays; an expired key is
   * deleted but not counted (it was already gone).
   */
  function sweep(candidates: string[], matches: ((key: string) => boolean) | undefined): number | Promise<number> {
    const written = new Set<string>()
    let removed = 0
    let i = 0
    const slice = (): boolean => {
      const deadline = performance.now() + SLICE_MS
      const end = Math.min(i + SLICE_KEYS, candidates.length)
      while (i < end) {
        const stop = Math.min(i + CLOCK_EVERY, end)
        for (; i < stop; i++) {
          const key = candidates[i]
          if ((matches !== undefined && !matches(key)) || written.has(key)) continue
          if (lru.has(key)) removed++
          lru.delete(key)
        }
        if (performance.now() >= deadline) break
      }
      return i < candidates.length
    }
    if (!slice()) return removed
    sweeps.add(written)
    return new Promise<number>((resolve) => {
      const step = () => {
        if (slice()) return void setImmediate(step)
        sweeps.delete(written)
        resolve(removed)
      }
      setImmediate(step)
    })
  }

  const entries: EntryStore = {
    getEntry(key) {
      const value = lru.get(key)
      return value === undefined || value instanceof Uint8Array ? undefined : value
    },
    setEntry: put,
  }

  return {
    name: 'memory',
    [kEntryStore]: entries,
    get(key) {
      const value = lru.get(key)
      return value instanceof Uint8Array ? value : undefined
    },
    set(key, value, ttlMs) {
      if (!(value instanceof Uint8Array)) {
        throw new TypeError(`memoryStore.set expects bytes, got ${describe(value)}`)
      }
      put(key, value, ttlMs)
    },
    delete(key) {
      return lru.delete(key)
    },
    deleteMatching(pattern) {
      assertPattern(pattern)
      if (isLiteral(pattern)) {
        const live = lru.has(pattern)
        lru.delete(pattern)
        return live ? 1 : 0
      }
      const star = pattern.indexOf('*')
      const literal = pattern.slice(0, star)
      const { keys, complete } = index.candidates(literal)
      // `<group name>*`: every candidate matches, no need to test them one by one; and the group
      // can leave the index now rather than key by key (keys written meanwhile start a new one).
      if (!complete || !/^\**$/.test(pattern.slice(star))) return sweep(keys, compilePattern(pattern))
      if (literal === '') index.clear()
      else index.drop(literal)
      return sweep(keys, undefined)
    },
    clear,
    close: clear,
    stats() {
      return { entries: lru.size, bytes: lru.calculatedSize }
    },
  }
}

/**
 * The stored keys grouped by their text up to the first `:` (`items:42:GET#h` under `items:`,
 * keys without a `:` under ''). A pattern whose literal head contains a `:` can only match keys of
 * one group, so `invalidate('items:*')` never looks at the rest of the cache; the key format
 * (src/key.ts) puts the first path segment there.
 */
class KeyIndex {
  private readonly groups = new Map<string, Set<string>>()

  add(key: string): void {
    const name = groupOf(key)
    let group = this.groups.get(name)
    if (group === undefined) this.groups.set(name, (group = new Set()))
    group.add(key)
  }

  remove(key: string): void {
    const name = groupOf(key)
    const group = this.groups.get(name)
    if (group === undefined) return
    group.delete(key)
    if (group.size === 0) this.groups.delete(name)
  }

  clear(): void {
    this.groups.clear()
  }

  /** Forget a whole group (its keys are being deleted). */
  drop(name: string): void {
    this.groups.delete(name)
  }

  /**
   * Every key that may start with `literal`; `complete` when all of them do (the literal is a
   * group's own name, e.g. `items:` for `items:*`).
   */
  candidates(literal: string): { keys: string[]; complete: boolean } {
    if (literal === '') return { keys: this.all(), complete: true }
    const colon = literal.indexOf(':')
    if (colon === -1) return { keys: this.all(), complete: false }
    const name = literal.slice(0, colon + 1)
    const group = this.groups.get(name)
    return { keys: group === undefined ? [] : Array.from(group), complete: name === literal }
  }

  private all(): string[] {
    const keys: string[] = []
    for (const group of this.groups.values()) for (const key of group) keys.push(key)
    return keys
  }
}

function groupOf(key: string): string {
  const colon = key.indexOf(':')
  return colon === -1 ? '' : key.slice(0, colon + 1)
}

function sizeOf(value: Value): number {
  if (value instanceof Uint8Array) return value.byteLength
  if (value.kind === 'pass' || value.kind === 'mark') return 0
  if (value.kind === 'vary') {
    let size = 0
    for (const name of value.vary) size += name.length * 2
    for (const key of value.variants) size += key.length * 2 + 16
    return size
  }
  if (value.kind === 'value') throw new TypeError('memoryStore holds values as bytes (see src/value-cache.ts), not as objects')
  let size = value.body.byteLength
  for (const part of value.headers) size += part.length * 2 + 16
  return size
}

function positiveInteger(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new TypeError(`memoryStore option "${name}" must be a positive integer, got ${describe(value)}`)
  }
  return value
}
