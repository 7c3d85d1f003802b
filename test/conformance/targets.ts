// The caches under test: cachet in spec mode (no ttl) on each store, plus a pass-through control.
import { existsSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import { passThrough } from './run.js'
import type { Middleware } from './run.js'
import type { Store } from '../../src/index.js'

export const STORES = ['memory', 'redis', 'memcached', 'none'] as const
export type StoreName = (typeof STORES)[number]

export interface Target {
  store: StoreName
  label: string
  middleware: Middleware
  close: () => Promise<void>
  /** What the cache reported to onError during the run (store timeouts, failures): shown when the gate fails. */
  errors: string[]
}

const SERVERS_TS = new URL('../support/servers.ts', import.meta.url)

/** A target's `errors` as lines for a report: none when there were none, at most 20 otherwise. */
export function errorLines(errors: string[]): string[] {
  if (errors.length === 0) return []
  return [`the cache reported ${errors.length} error(s) during the run:`, ...errors.slice(0, 20).map((e) => `    ${e}`)]
}

/**
 * The gate checks HTTP semantics, not latency: with 100 tests in flight on a busy 2-core
 * machine, a store call may take longer than the 200 ms default, the breaker opens and the
 * run measures the machine instead. Store timeouts have their own tests (test/reliability).
 */
const REMOTE_STORE_TIMEOUT = '2s'

/**
 * Why `store` cannot run here, or undefined when it can. The Redis and Memcached variants need
 * test/support/servers.ts (real servers on loopback ports) and the store factory in src/index.ts.
 */
export async function unavailable(store: StoreName): Promise<string | undefined> {
  if (store === 'memory' || store === 'none') return undefined
  if (!existsSync(SERVERS_TS)) return 'test/support/servers.ts does not exist yet'
  const support = (await import('../support/servers.js')) as Record<string, unknown>
  const getter = store === 'redis' ? 'getRedis' : 'getMemcached'
  if (typeof support[getter] !== 'function') return `test/support/servers.ts does not export ${getter}()`
  const cachet = (await import('../../src/index.js')) as Record<string, unknown>
  const factory = store === 'redis' ? 'redisStore' : 'memcachedStore'
  if (typeof cachet[factory] !== 'function') return `src/index.ts does not export ${factory}()`
  return undefined
}

/**
 * cachet as the suite sees it: `responseCache({ store, surrogate: true })`, no ttl, so only responses'
 * own headers make them storable; acting as a surrogate, as a reverse proxy in front of its origin does.
 */
export async function makeTarget(store: StoreName): Promise<Target> {
  if (store === 'none') {
    return { store, label: 'pass-through (no cache)', middleware: passThrough, close: async () => {}, errors: [] }
  }
  const cachet = await import('../../src/index.js')
  const { responseCache, memoryStore, redisStore } = cachet
  // Redis and Memcached are shared with other suites: keep our entries under a prefix of our own.
  const prefix = `conformance-${randomUUID().slice(0, 8)}:`
  const errors: string[] = []
  const onError = (error: Error): void => {
    errors.push(`${error.name}: ${error.message}`)
  }
  if (store === 'memory') {
    const cache = responseCache({ store: memoryStore(), surrogate: true, onError })
    return { store, label: 'cachet (memory)', middleware: cache, close: () => cache.close(), errors }
  }
  const why = await unavailable(store)
  if (why !== undefined) throw new Error(`the ${store} variant cannot run: ${why}`)
  const support = await import('../support/servers.js')
  if (store === 'redis') {
    const redis = await support.getRedis()
    const cache = responseCache({ store: redisStore({ url: redis.url, prefix }), storeTimeout: REMOTE_STORE_TIMEOUT, surrogate: true, onError })
    return {
      store,
      label: `cachet (redis ${redis.address})`,
      middleware: cache,
      close: async () => {
        await cache.clear()
        await cache.close()
      },
      errors,
    }
  }
  // Looked up by name: the memcached factory may not be exported yet (unavailable() says so).
  const memcachedStore = (cachet as Record<string, unknown>).memcachedStore as (options: { servers: string; prefix: string }) => Store
  const memcached = await support.getMemcached()
  const cache = responseCache({ store: memcachedStore({ servers: memcached.address, prefix }), storeTimeout: REMOTE_STORE_TIMEOUT, surrogate: true, onError })
  return {
    store,
    label: `cachet (memcached ${memcached.address})`,
    middleware: cache,
    close: async () => {
      await cache.clear()
      await cache.close()
    },
    errors,
  }
}
