/** The stores the reliability suites run on: memory, Redis and Memcached, on the real servers of test/support/servers.ts. */
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { memoryStore } from '../../src/stores/memory.js'
import { redisStore } from '../../src/stores/redis.js'
import { memcachedStore } from '../../src/stores/memcached.js'
import type { Store } from '../../src/types.js'
import { getMemcached, getRedis } from '../support/servers.js'

export interface ReliabilityStore {
  name: 'memory' | 'redis' | 'memcached'
  store: Store
  /** Release what was opened for this store (clients, keys). */
  dispose(): Promise<void>
}

/** A prefix of its own per run, so parallel suites on the shared servers never meet. */
const uniquePrefix = (name: string) => `cachet-rel-${name}-${randomUUID().slice(0, 8)}:`

/** A fresh store of the given kind, on the shared test servers for Redis and Memcached. */
export async function openStore(name: ReliabilityStore['name']): Promise<ReliabilityStore> {
  if (name === 'memory') {
    const store = memoryStore({ maxBytes: 256 * 1024 * 1024 })
    return { name, store, dispose: async () => void store.close?.() }
  }
  if (name === 'redis') {
    const server = await getRedis()
    const client = new Redis({ host: '127.0.0.1', port: server.port, maxRetriesPerRequest: 1, lazyConnect: false })
    client.on('error', () => {})
    const store = redisStore({ client, prefix: uniquePrefix('redis') })
    return {
      name,
      store,
      async dispose() {
        await Promise.resolve(store.clear()).catch(() => undefined)
        client.disconnect()
      },
    }
  }
  const server = await getMemcached()
  const store = memcachedStore({ servers: [server.address], prefix: uniquePrefix('mc') })
  return {
    name,
    store,
    async dispose() {
      await Promise.resolve(store.clear()).catch(() => undefined)
      await store.close()
    },
  }
}

/** Every store kind, in the order the suites run them. */
export const STORE_NAMES: ReliabilityStore['name'][] = ['memory', 'redis', 'memcached']
