/** cachet: an HTTP response cache for Express and Connect. Public surface only. */
export { responseCache } from './middleware.js'
export type { ResponseCache, CacheStats, CacheStatus, InvalidateOptions } from './middleware.js'
export { cacheRoute, invalidate, invalidateTags } from './route.js'
export { purgeHandler } from './purge.js'
export type { PurgeHandlerOptions, PurgeRequest, PurgeResult } from './purge.js'
export { createCache } from './value-cache.js'
export type { ValueCache, ValueCacheOptions, ValueCacheStats, SetOptions, GetOrSetOptions, WarmEntry, WarmResult, HealthReport } from './value-cache.js'
export { cached, UnkeyableArgumentError } from './cached.js'
export type { Cached, CachedOptions } from './cached.js'
export { memoryStore } from './stores/memory.js'
export type { MemoryStoreOptions } from './stores/memory.js'
export type { MemoryStore } from './stores/memory.js'
export { redisStore } from './stores/redis.js'
export type {
  RedisStore,
  RedisStoreOptions,
  RedisStoreConnection,
  RedisClient,
  RedisClusterClient,
  RedisClientOptions,
  LocalRedisStore,
} from './stores/redis.js'
export { memcachedStore } from './stores/memcached.js'
export { UnsupportedPatternError } from './stores/memcached.js'
export type {
  MemcachedStore,
  MemcachedStoreOptions,
  MemcachedStoreConnection,
  MemcachedClient,
  MemcachedClientOptions,
  LocalMemcachedStore,
} from './stores/memcached.js'
export { sqliteStore } from './stores/sqlite.js'
export type { SqliteStore, SqliteStoreOptions, SqliteStoreConnection, SqliteDatabase, SqliteStatement, SqliteTransaction } from './stores/sqlite.js'
export { postgresStore } from './stores/postgres.js'
export type { PostgresStore, PostgresStoreOptions, PostgresStoreConnection, PostgresPool, PostgresPoolClient, PostgresResult } from './stores/postgres.js'
export { dynamodbStore } from './stores/dynamodb.js'
export type { DynamodbStore, DynamodbStoreOptions, DynamodbStoreConnection, DynamoClient } from './stores/dynamodb.js'
export { jsonCoder } from './coders/json.js'
export { msgpackCoder } from './coders/msgpack.js'
export { CorruptEntryError } from './entry.js'
export { StoreTimeoutError, StoreUnavailableError } from './storage.js'
export type { CacheOptions, RouteOptions, Duration, KeyFunction, ErrorHandler, TagFunction, InvalidationEvent } from './options.js'
export type { Store, Coder, Entry, ResponseEntry, VaryEntry, MaybePromise } from './types.js'
export type { ValueEntry } from './types.js'
export {
  REQUEST_CHANNEL,
  STORE_READ_CHANNEL,
  STORE_WRITE_CHANNEL,
  INVALIDATE_CHANNEL,
  startRequest,
  endRequest,
  storeCallStarted,
  publishStoreRead,
  publishStoreWrite,
  publishInvalidate,
} from './diagnostics.js'
export type { RequestOutcome, RequestMessage, RequestOutcomeDetail, StoreReadMessage, StoreWriteMessage, InvalidateMessage } from './diagnostics.js'
export { prometheusMetrics } from './metrics.js'
export type { PrometheusMetrics, PrometheusMetricsOptions, MetricsRegistry } from './metrics.js'
