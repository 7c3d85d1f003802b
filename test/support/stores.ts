/** Store factories for the middleware suites: every store, fresh and empty per call, on the shared servers. */
import { randomUUID } from 'node:crypto'
import { Cluster, Redis } from 'ioredis'
import memjs from 'memjs'
import { memcachedStore } from '../../src/stores/memcached.js'
import { memoryStore } from '../../src/stores/memory.js'
import { redisStore } from '../../src/stores/redis.js'
import type { Store } from '../../src/types.js'
import { getMemcached, getMemcached2, getRedis, getRedisCluster, type ServerHandle } from './servers.js'

/** One store made for one test. */
export interface CreatedStore {
  store: Store
  /** Empties the store's keys and closes the clients `create()` opened. Call it in `afterEach`. */
  cleanup(): Promise<void>
  /** The server(s) behind the store, to `pause()`/`kill()`/`restart()` in fault tests (memory: none). */
  server?: ServerHandle
  /** The unique key prefix of this store (remote stores), to look at raw keys. */
  prefix?: string
  /** Write raw bytes straight into the backend under the store's key (tampering tests). */
  putRaw?(key: string, value: Uint8Array, ttlMs: number): Promise<void>
}

export interface StoreFactory {
  name: 'memory' | 'redis' | 'redis-cluster' | 'memcached' | 'memcached-2'
  /** `'glob'`: any `*` pattern; `'namespaces'`: only `*`, `<segments>:*`, `<primary>#*`, `<path>?*`, literals. */
  patterns: 'glob' | 'namespaces'
  /** Whether `deleteMatching` resolves exact counts for wildcard patterns. */
  counts: boolean
  create(): Promise<CreatedStore>
}

const uniquePrefix = () => `cachet-test-${randomUUID().slice(0, 8)}:`
const quiet = { log() {} }

function toBuffer(value: Uint8Array): Buffer {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength)
}

/** Every store the middleware must work with. Servers start on first use and stop when mocha ends. */
export const storeFactories: readonly StoreFactory[] = [
  {
    name: 'memory',
    patterns: 'glob',
    counts: true,
    async create() {
      const store = memoryStore()
      return { store, cleanup: async () => void store.close?.() }
    },
  },
  {
    name: 'redis',
    patterns: 'glob',
    counts: true,
    async create() {
      const server = await getRedis()
      const client = new Redis(server.port, server.host, { maxRetriesPerRequest: 1, connectTimeout: 1000 })
      client.on('error', () => {}) // fault tests stop the server under it
      const prefix = uniquePrefix()
      const store = redisStore({ client, prefix })
      return {
        store,
        server,
        prefix,
        putRaw: async (key, value, ttlMs) => void (await client.set(prefix + key, toBuffer(value), 'PX', ttlMs)),
        async cleanup() {
          await Promise.resolve(store.clear()).catch(() => {})
          client.disconnect()
        },
      }
    },
  },
  {
    name: 'redis-cluster',
    patterns: 'glob',
    counts: true,
    async create() {
      const server = await getRedisCluster()
      const client = new Cluster([...server.startupNodes], { redisOptions: { maxRetriesPerRequest: 1, connectTimeout: 1000 } })
      client.on('error', () => {})
      const prefix = uniquePrefix()
      const store = redisStore({ client, prefix })
      return {
        store,
        server,
        prefix,
        putRaw: async (key, value, ttlMs) => void (await client.set(prefix + key, toBuffer(value), 'PX', ttlMs)),
        async cleanup() {
          await Promise.resolve(store.clear()).catch(() => {})
          client.disconnect()
        },
      }
    },
  },
  {
    name: 'memcached',
    patterns: 'namespaces',
    counts: false,
    async create() {
      const server = await getMemcached()
      const client = memjs.Client.create(server.address, { logger: quiet, retries: 1, timeout: 0.5 })
      const prefix = uniquePrefix()
      const store = memcachedStore({ client }, { prefix, maxItemSize: server.itemSize - 4096 })
      return {
        store,
        server,
        prefix,
        // Physical keys embed generations, so raw writes go through the store itself.
        putRaw: async (key, value, ttlMs) => void (await store.set(key, value, ttlMs)),
        async cleanup() {
          await store.clear().catch(() => {})
          client.close()
        },
      }
    },
  },
  {
    name: 'memcached-2',
    patterns: 'namespaces',
    counts: false,
    async create() {
      const [a, b] = await Promise.all([getMemcached(), getMemcached2()])
      const prefix = uniquePrefix()
      const store = memcachedStore(
        { servers: [a.address, b.address] },
        { prefix, maxItemSize: Math.min(a.itemSize, b.itemSize) - 4096, clientOptions: { logger: quiet } },
      )
      return {
        store,
        server: b,
        prefix,
        putRaw: async (key, value, ttlMs) => void (await store.set(key, value, ttlMs)),
        async cleanup() {
          await store.clear().catch(() => {})
          await store.close()
        },
      }
    },
  },
]
