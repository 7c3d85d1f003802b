// Copied as consumer.types.cts into a consumer project by test/package/package.test.ts: the same names
// type-check from a CommonJS module (resolved through the "require" condition, index.d.cts).
import express from 'express'
import {
  cacheRoute,
  CorruptEntryError,
  invalidate,
  jsonCoder,
  memcachedStore,
  memoryStore,
  msgpackCoder,
  redisStore,
  responseCache,
  StoreTimeoutError,
  StoreUnavailableError,
  UnsupportedPatternError,
  type CacheOptions,
  type CacheStats,
  type CacheStatus,
  type Coder,
  type Duration,
  type Entry,
  type ErrorHandler,
  type KeyFunction,
  type MaybePromise,
  type MemcachedClient,
  type MemcachedClientOptions,
  type MemcachedStore,
  type MemcachedStoreConnection,
  type MemcachedStoreOptions,
  type MemoryStore,
  type MemoryStoreOptions,
  type RedisClient,
  type RedisClientOptions,
  type RedisClusterClient,
  type RedisStore,
  type RedisStoreConnection,
  type RedisStoreOptions,
  type ResponseCache,
  type ResponseEntry,
  type RouteOptions,
  type Store,
  type VaryEntry,
} from 'cachet'

export type PublicTypes = [
  CacheOptions, CacheStats, CacheStatus, Coder, Duration, Entry, ErrorHandler, KeyFunction, MaybePromise<number>,
  MemcachedClient, MemcachedClientOptions, MemcachedStore, MemcachedStoreConnection, MemcachedStoreOptions,
  MemoryStore, MemoryStoreOptions, RedisClient, RedisClientOptions, RedisClusterClient, RedisStore,
  RedisStoreConnection, RedisStoreOptions, ResponseCache, ResponseEntry, RouteOptions, Store, VaryEntry,
]

const app = express()
const memory: MemoryStoreOptions = { maxEntries: 10 }
const cache: ResponseCache = responseCache({ store: memoryStore(memory), ttl: '5m', onError: (error: Error) => console.error(error) })
app.use(cache)
app.get('/posts', cacheRoute('30s'), (_req, res) => {
  res.send('ok')
})

const redisOptions: RedisStoreOptions = { prefix: 'app:', hotBytes: 0 }
const memcachedOptions: MemcachedStoreOptions = { maxItemSize: 1000 }
export function remoteStores(): [RedisStore, MemcachedStore] {
  return [redisStore({ url: 'redis://localhost:6379' }, redisOptions), memcachedStore({ servers: 'localhost:11211' }, memcachedOptions)]
}

export const errors: Error[] = [
  new UnsupportedPatternError('posts:4*'),
  new CorruptEntryError('bad'),
  new StoreTimeoutError('get', 200),
  new StoreUnavailableError(),
]
export const coders: Coder[] = [jsonCoder(), msgpackCoder()]
export const removed: Promise<number> = invalidate('posts:*')
