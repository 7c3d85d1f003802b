/** Writing a store: mapStore(), a complete cachet Store on a plain Map, in about fifty lines. */
import type { Store } from '../../src/index.js'

/**
 * Compile an invalidation pattern: `*` matches any run of characters (across `:` too), every
 * other character is literal, as the README's "Writing a store" section asks of every store.
 */
function compile(pattern: string): (key: string) => boolean {
  if (!pattern.includes('*'))
    return function literal(key) {
      return key === pattern
    }
  const escaped = pattern.split(/\*+/).map((part) => part.replace(/[\\^$.|?+()[\]{}]/g, '\\$&'))
  const re = new RegExp(`^${escaped.join('[\\s\\S]*')}$`)
  return function glob(key) {
    return re.test(key)
  }
}

/**
 * A minimal in-process store, as a template for your own backend. It passes the same contract
 * suite as the built-in stores (`runStoreContract` from `cachet/testing`, see
 * test/stores/custom-store.test.ts).
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
    // Required. `*` is the only wildcard; an empty pattern is a TypeError; resolve the count.
    deleteMatching(pattern) {
      if (typeof pattern !== 'string' || pattern === '') {
        throw new TypeError(`pattern must be a non-empty string, got ${JSON.stringify(pattern)}`)
      }
      const matches = compile(pattern)
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
