/** examples/redis and examples/memcached, driven over HTTP against real servers, as two processes sharing one cache. */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import request from 'supertest'
import { Cluster, Redis } from 'ioredis'
import { createApp as createRedisApp, type Post } from '../../examples/redis/app.js'
import { createApp as createMemcachedApp } from '../../examples/memcached/app.js'
import { memcachedStore } from '../../src/stores/memcached.js'
import { redisStore } from '../../src/stores/redis.js'
import type { Store } from '../../src/types.js'
import { getMemcached, getMemcached2, getRedis, getRedisCluster } from '../support/servers.js'

type AppFactory = typeof createRedisApp

/** Two stores with one prefix on separate connections: what two processes of one app would have. */
interface Pair {
  stores: [Store, Store]
  close(): Promise<void>
}

const setups: { name: string; createApp: AppFactory; pair(): Promise<Pair> }[] = [
  {
    name: 'examples/redis on redis-server',
    createApp: createRedisApp,
    async pair() {
      const server = await getRedis()
      const clients = [new Redis(server.port, server.host), new Redis(server.port, server.host)]
      const prefix = `example-${randomUUID().slice(0, 8)}:`
      const stores: [Store, Store] = [redisStore({ client: clients[0] }, { prefix }), redisStore({ client: clients[1] }, { prefix })]
      return {
        stores,
        async close() {
          await stores[0].clear?.()
          for (const client of clients) client.disconnect()
        },
      }
    },
  },
  {
    name: 'examples/redis on a Redis Cluster',
    createApp: createRedisApp,
    async pair() {
      const cluster = await getRedisCluster()
      const clients = [new Cluster([...cluster.startupNodes]), new Cluster([...cluster.startupNodes])]
      const prefix = `example-${randomUUID().slice(0, 8)}:`
      const stores: [Store, Store] = [redisStore({ client: clients[0] }, { prefix }), redisStore({ client: clients[1] }, { prefix })]
      return {
        stores,
        async close() {
          await stores[0].clear?.()
          for (const client of clients) client.disconnect()
        },
      }
    },
  },
  {
    name: 'examples/memcached on two memcached servers',
    createApp: createMemcachedApp,
    async pair() {
      const servers = [(await getMemcached()).address, (await getMemcached2()).address]
      const prefix = `example-${randomUUID().slice(0, 8)}:`
      const stores = [memcachedStore({ servers }, { prefix }), memcachedStore({ servers }, { prefix })]
      return {
        stores: [stores[0], stores[1]],
        async close() {
          for (const store of stores) await store.close()
        },
      }
    },
  },
]

// Both processes sit behind one public host name; supertest's ephemeral ports would otherwise
// give every request its own Host header, and the cache keys variants by Host.
const HOST = 'blog.example'

/** The cache writes after the response has gone out: wait for that write before the next request. */
async function stored(app: ReturnType<AppFactory>, before: number): Promise<void> {
  const deadline = Date.now() + 2000
  while (app.cache.stats().stores <= before) {
    if (Date.now() > deadline) throw new Error('the response was not stored within 2 s')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** GET that must be a MISS, then wait until its response is in the store. */
async function miss(app: ReturnType<AppFactory>, path: string) {
  const before = app.cache.stats().stores
  const response = await request(app.app).get(path).set('Host', HOST).expect('X-Cache', 'MISS')
  await stored(app, before)
  return response
}

for (const setup of setups) {
  describe(setup.name, function () {
    let pair: Pair
    let one: ReturnType<AppFactory>
    let two: ReturnType<AppFactory>

    beforeEach(async function () {
      this.timeout(30_000)
      pair = await setup.pair()
      const posts: Post[] = [{ id: 1, title: 'Hello' }] // the database both processes share
      one = setup.createApp(pair.stores[0], posts)
      two = setup.createApp(pair.stores[1], posts)
    })

    afterEach(async function () {
      await one.cache.close()
      await two.cache.close()
      await pair.close()
    })

    it('should serve the second request from the cache, in either process', async function () {
      assert.deepEqual((await miss(one, '/posts')).body, [{ id: 1, title: 'Hello' }])
      await request(one.app)
        .get('/posts')
        .set('Host', HOST)
        .expect('X-Cache', 'HIT')
        .expect(200, [{ id: 1, title: 'Hello' }])
      await request(two.app)
        .get('/posts')
        .set('Host', HOST)
        .expect('X-Cache', 'HIT')
        .expect(200, [{ id: 1, title: 'Hello' }])
      assert.equal(one.stats.listRenders + two.stats.listRenders, 1)
    })

    it('should drop /posts and /posts/:id after a POST in the other process', async function () {
      await miss(one, '/posts')
      await miss(one, '/posts?page=2')
      await miss(one, '/posts/1')
      await request(one.app).get('/posts/1').set('Host', HOST).expect('X-Cache', 'HIT')

      await request(two.app).post('/posts').set('Host', HOST).send({ title: 'Second' }).expect(201, { id: 2, title: 'Second' })

      const expected = [
        { id: 1, title: 'Hello' },
        { id: 2, title: 'Second' },
      ]
      assert.deepEqual((await miss(one, '/posts')).body, expected)
      await miss(one, '/posts?page=2')
      await miss(one, '/posts/1')
      await request(two.app).get('/posts').set('Host', HOST).expect('X-Cache', 'HIT').expect(200, expected)
    })
  })
}
