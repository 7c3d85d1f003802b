/** Writing a store: mapStore(), a complete cachet Store on a plain Map, in about forty lines. */
import { assertPattern, compilePattern } from '../../src/pattern.js'
import type { Store } from '../../src/types.js'

/**
 * A minimal in-process store, as a template for your own backend. It passes the same contract
 * suite as the built-in stores (test/stores/custom-store.test.ts).
 *
 * Not for production: unlike `memoryStore()` it has no size bound.
 */
export function mapStore(options: { now?: () => number } = {}): Store {
  const now = options.now ?? Date.now
  // Values are copied in: the caller may reuse its buffer after set() returns.
  const entries = new Map<string, { value: Uint8Array; expires: number }>()

  return {
    name: 'map',
    // Required. Missing and expired keys are both a miss (undefined).
    get(key) {
      const entry = entries.get(key)
      if (entry === undefined) return undefined
      if (entry.expires <= now()) {
        entries.delete(key) // expire lazily, on read
        return undefined
      }
      return entry.value
    },
    // Required. ttlMs is always > 0; the store owns expiry.
    set(key, value, ttlMs) {
      entries.set(key, { value: Uint8Array.from(value), expires: now() + ttlMs })
    },
    // Required. Resolves whether the key existed.
    delete(key) {
      return entries.delete(key)
    },
    // Required. Use the shared glob syntax (`*` is the only wildcard) and return the count.
    deleteMatching(pattern) {
      assertPattern(pattern)
      const matches = compilePattern(pattern)
      let removed = 0
      for (const key of [...entries.keys()]) if (matches(key) && entries.delete(key)) removed++
      return removed
    },
    // Recommended. Only this store's own keys (a shared backend would use its prefix here).
    clear() {
      entries.clear()
    },
    // Recommended. Close only what the store opened itself.
    close() {
      entries.clear()
    },
  }
}
