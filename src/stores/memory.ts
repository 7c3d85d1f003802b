/** memoryStore(): an in-process store on lru-cache, bounded by bytes and by entries. */
import { LRUCache } from 'lru-cache'
import { compilePattern, assertPattern, describe } from '../pattern.js'
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

/** Bytes charged per entry on top of its own size: the LRU's slots, the Map entry, the object. */
export const ENTRY_OVERHEAD = 160

/** Keys deleted between two yields to the event loop during a large invalidation. */
const DELETE_CHUNK = 5000

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
  const maxBytes = positiveInteger('maxBytes', options.maxBytes, 64 * 1024 * 1024)
  const maxEntries = positiveInteger('maxEntries', options.maxEntries, 100_000)
  if (options.now !== undefined && typeof options.now !== 'function') {
    throw new TypeError(`memoryStore option "now" must be a function, got ${describe(options.now)}`)
  }
  const now = options.now ?? Date.now

  const lru = new LRUCache<string, Value>({
    max: maxEntries,
    maxSize: maxBytes,
    sizeCalculation: (value, key) => sizeOf(value) + key.length * 2 + ENTRY_OVERHEAD,
    perf: { now },
    // No cached "now": an injected clock takes effect on the very next call.
    ttlResolution: 0,
    ttlAutopurge: false,
  })

  const entries: EntryStore = {
    getEntry(key) {
      const value = lru.get(key)
      return value === undefined || value instanceof Uint8Array ? undefined : value
    },
    setEntry(key, entry, ttlMs) {
      lru.set(key, entry, { ttl: Math.max(1, Math.ceil(ttlMs)) })
    },
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
      lru.set(key, value, { ttl: Math.max(1, Math.ceil(ttlMs)) })
    },
    delete(key) {
      return lru.delete(key)
    },
    deleteMatching(pattern) {
      assertPattern(pattern)
      const matches = compilePattern(pattern)
      // Collect first: deleting while iterating an LRU walks a moving list. (forEach walks the
      // list about twice as fast as the keys() generator.)
      const doomed: string[] = []
      lru.forEach((_value, key) => {
        if (matches(key)) doomed.push(key)
      })
      if (doomed.length === lru.size) {
        lru.clear() // everything matched: one clear instead of a delete per key
        return doomed.length
      }
      let removed = 0
      let i = 0
      const sweep = (): number => {
        const end = Math.min(i + DELETE_CHUNK, doomed.length)
        for (; i < end; i++) if (lru.delete(doomed[i])) removed++
        return removed
      }
      if (doomed.length <= DELETE_CHUNK) return sweep()
      // A large sweep yields between chunks, so requests in flight are not held behind it.
      return new Promise<number>((resolve) => {
        const step = () => {
          sweep()
          if (i < doomed.length) setImmediate(step)
          else resolve(removed)
        }
        step()
      })
    },
    clear() {
      lru.clear()
    },
    close() {
      lru.clear()
    },
    stats() {
      return { entries: lru.size, bytes: lru.calculatedSize }
    },
  }
}

function sizeOf(value: Value): number {
  if (value instanceof Uint8Array) return value.byteLength
  if (value.kind === 'vary') {
    let size = 0
    for (const name of value.vary) size += name.length * 2
    for (const key of value.variants) size += key.length * 2 + 16
    return size
  }
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
