/**
 * Type test, checked by `tsc --noEmit -p tsconfig.json` (part of `npm test`): the client shapes
 * cachet declares structurally are satisfied by ioredis's Redis and Cluster and by memjs's Client,
 * and a store built on one hands the very client type back from getClient().
 */
import { Cluster, Redis } from 'ioredis'
import memjs from 'memjs'
import {
  memcachedStore,
  redisStore,
  type MemcachedClient,
  type MemcachedStore,
  type RedisClient,
  type RedisClusterClient,
  type RedisStore,
} from '../../src/index.js'

/** Compiles only when `Actual` is assignable to `Expected`. */
type Assignable<Expected, Actual extends Expected> = [Expected, Actual]

export type RedisSatisfies = Assignable<RedisClient, Redis>
export type ClusterSatisfies = Assignable<RedisClusterClient, Cluster>
export type MemjsSatisfies = Assignable<MemcachedClient, memjs.Client>

/** Never called: only compiled. */
export async function typeTest(): Promise<void> {
  const redis: RedisStore<Redis> = redisStore({ client: new Redis({ lazyConnect: true }) }, { prefix: 'app:' })
  const own: Redis = await redis.getClient()
  const cluster = redisStore({ client: new Cluster([]), prefix: 'app:' })
  const nodes: Redis[] = (await cluster.getClient()).nodes('master')
  const fromUrl: RedisStore = redisStore({ url: 'redis://localhost:6379', clientOptions: { connectTimeout: 1000 } })
  const memcached: MemcachedStore<memjs.Client> = memcachedStore({ client: memjs.Client.create('localhost:11211') })
  const client: memjs.Client = await memcached.getClient()
  const fromServers: MemcachedStore = memcachedStore({ servers: ['a:11211'] }, { clientOptions: { timeout: 1 } })
  void [own, nodes, fromUrl, client, fromServers]
}
