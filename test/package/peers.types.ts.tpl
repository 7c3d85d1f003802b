// Copied as peers.types.ts into the consumer project that has ioredis and memjs: their clients fit
// the stores, and getClient() hands the very client type back.
import { Cluster, Redis } from 'ioredis'
import memjs from 'memjs'
import { memcachedStore, redisStore } from 'cachet'

export async function clients(): Promise<void> {
  const redis = new Redis({ lazyConnect: true })
  redis.on('error', (error) => console.error(error))
  const own: Redis = await redisStore({ client: redis }).getClient()
  const masters: Redis[] = (await redisStore({ client: new Cluster([]) }, { prefix: 'app:' }).getClient()).nodes('master')
  const client: memjs.Client = await memcachedStore({ client: memjs.Client.create('localhost:11211') }).getClient()
  redisStore({ url: 'redis://localhost:6379', clientOptions: { connectTimeout: 1000 } })
  void [own, masters, client]
}
