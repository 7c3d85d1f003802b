/** redisStore() on a real redis-server and a real 3-master Redis Cluster. */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import { Cluster, Redis } from 'ioredis'
import { redisStore } from '../../src/stores/redis.js'
import { runStoreContract } from '../support/store-contract.js'
import { monitorRedis } from '../support/monitor.js'
import { getRedis, getRedisCluster, startRedis } from '../support/servers.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const unique = () => `t${randomUUID().slice(0, 8)}:`

/** A client for the shared server, closed after the suite. */
async function sharedClient(): Promise<Redis> {
  const server = await getRedis()
  return new Redis(server.port, server.host, { maxRetriesPerRequest: 1 })
}

async function sharedCluster(): Promise<Cluster> {
  const cluster = await getRedisCluster()
  const client = new Cluster([...cluster.startupNodes], { redisOptions: { maxRetriesPerRequest: 1 } })
  await new Promise<void>((resolve, reject) => {
    client.once('ready', resolve)
    client.once('error', reject)
  })
  return client
}

describe('redisStore()', function () {
  let client: Redis
  let cluster: Cluster

  before(async function () {
    this.timeout(30_000)
    client = await sharedClient()
    cluster = await sharedCluster()
  })

  after(async function () {
    client?.disconnect()
    cluster?.disconnect()
  })

  describe('with a single-node client', function () {
    runStoreContract(
      'redisStore({ client })',
      () => {
        const prefix = unique()
        const foreignKey = `foreign-${prefix}`
        const store = redisStore({ client }, { prefix })
        return {
          store,
          foreign: {
            put: async () => void (await client.set(foreignKey, 'x', 'PX', 60_000)),
            exists: async () => (await client.exists(foreignKey)) === 1,
          },
          async cleanup() {
            await store.clear()
            await client.unlink(foreignKey)
          },
        }
      },
      { getMany: true, keepsRecords: true, setIf: true },
      { rejectsNonBytes: ['set', 'setIf'] },
    )
  })

  describe('with a url (the store opens its own client)', function () {
    runStoreContract(
      'redisStore({ url })',
      async () => {
        const server = await getRedis()
        const store = redisStore({ url: server.url, prefix: unique() })
        return {
          store,
          async cleanup() {
            await store.clear()
            await store.close()
          },
        }
      },
      { getMany: true, keepsRecords: true, setIf: true },
    )
  })

  describe('with a Cluster client', function () {
    runStoreContract(
      'redisStore({ client: cluster })',
      () => {
        const prefix = unique()
        const foreignKey = `foreign-${prefix}`
        const store = redisStore({ client: cluster, prefix })
        return {
          store,
          foreign: {
            put: async () => void (await cluster.set(foreignKey, 'x', 'PX', 60_000)),
            exists: async () => (await cluster.exists(foreignKey)) === 1,
          },
          async cleanup() {
            await store.clear()
            await cluster.unlink(foreignKey)
          },
        }
      },
      { getMany: true, keepsRecords: true, setIf: true },
    )

    it('should find keys on every master', async function () {
      const store = redisStore({ client: cluster, prefix: unique() })
      const keys = Array.from({ length: 60 }, (_, i) => `spread:${i}:GET`)
      for (const key of keys) await store.set(key, Buffer.from(key), 60_000)
      // The keys really are spread: every master holds some of them.
      const perNode = await Promise.all(cluster.nodes('master').map(async (node) => (await node.keys(`${store.prefix}*`)).length))
      assert.equal(perNode.length, 3)
      for (const n of perNode) assert.ok(n > 0, `keys per master: ${perNode}`)
      assert.equal(await store.deleteMatching('spread:*'), 60)
      for (const key of keys) assert.equal(await store.get(key), null)
    })
  })

  describe('deleteMatching() and clear()', function () {
    it('should never send KEYS, FLUSHDB or FLUSHALL, and use SCAN + UNLINK (single node)', async function () {
      const server = await getRedis()
      const store = redisStore({ client, prefix: unique() })
      for (let i = 0; i < 20; i++) await store.set(`posts:${i}:GET`, Buffer.from('x'), 60_000)
      const spy = await monitorRedis([server.port])
      assert.equal(await store.deleteMatching('posts:1*'), 11)
      assert.equal(await store.clear(), 9)
      await spy.stop()
      const names = spy.commands.map((args) => args[0].toLowerCase())
      for (const forbidden of ['keys', 'flushdb', 'flushall']) assert.ok(!names.includes(forbidden), `sent ${forbidden}`)
      assert.ok(names.includes('scan'), `commands: ${names}`)
      assert.ok(names.includes('unlink'), `commands: ${names}`)
      const scan = spy.commands.find((args) => args[0].toLowerCase() === 'scan')!
      assert.deepEqual(scan.slice(2).map(String), ['MATCH', `${store.prefix}posts:1*`, 'COUNT', '1000'])
    })

    it('should never send KEYS, FLUSHDB or FLUSHALL to any Cluster master', async function () {
      const servers = await getRedisCluster()
      const store = redisStore({ client: cluster, prefix: unique() })
      for (let i = 0; i < 30; i++) await store.set(`posts:${i}:GET`, Buffer.from('x'), 60_000)
      const spy = await monitorRedis(servers.nodes.map((n) => n.port))
      assert.equal(await store.clear(), 30)
      await spy.stop()
      const names = spy.commands.map((args) => args[0].toLowerCase())
      for (const forbidden of ['keys', 'flushdb', 'flushall']) assert.ok(!names.includes(forbidden), `sent ${forbidden}`)
      assert.equal(names.filter((n) => n === 'scan').length >= 3, true, `one SCAN per master at least: ${names}`)
    })

    it('should unlink in batches of at most 500 keys', async function () {
      const server = await getRedis()
      const store = redisStore({ client, prefix: unique() })
      const pipeline = client.pipeline()
      for (let i = 0; i < 1234; i++) pipeline.set(`${store.prefix}bulk:${i}:GET`, 'x', 'PX', 60_000)
      await pipeline.exec()
      const spy = await monitorRedis([server.port])
      assert.equal(await store.deleteMatching('bulk:*'), 1234)
      await spy.stop()
      const unlinks = spy.commands.filter((args) => args[0].toLowerCase() === 'unlink')
      assert.ok(unlinks.length >= 3, `${unlinks.length} UNLINKs`)
      for (const args of unlinks) assert.ok(args.length - 1 <= 500, `UNLINK with ${args.length - 1} keys`)
    })

    it('should treat glob characters in the prefix literally', async function () {
      const tag = randomUUID().slice(0, 8)
      const odd = redisStore({ client, prefix: `p?[${tag}]*:` })
      const plain = redisStore({ client, prefix: `pX${tag}:` })
      const also = redisStore({ client, prefix: `p?[${tag}]xx:` })
      await odd.set('k', Buffer.from('odd'), 60_000)
      await plain.set('k', Buffer.from('plain'), 60_000)
      await also.set('k', Buffer.from('also'), 60_000)
      assert.equal(await odd.clear(), 1)
      assert.equal(String(await plain.get('k')), 'plain')
      assert.equal(String(await also.get('k')), 'also')
      await plain.clear()
      await also.clear()
    })

    it('should be exact with keys written directly under the prefix (binary names included)', async function () {
      const store = redisStore({ client, prefix: unique() })
      await client.set(Buffer.concat([Buffer.from(store.prefix), Buffer.from([0xff, 0xfe, 0x3a])]), 'raw')
      await client.set(`${store.prefix}posts:GET`, 'raw')
      assert.equal(await store.clear(), 2)
    })
  })

  describe('get() and set()', function () {
    it('should store under prefix + key with a PX ttl', async function () {
      const store = redisStore({ client, prefix: unique() })
      await store.set('posts:GET', Buffer.from('v'), 5000)
      const pttl = await client.pttl(`${store.prefix}posts:GET`)
      assert.ok(pttl > 4000 && pttl <= 5000, `pttl ${pttl}`)
      // A 16-byte write stamp, then the bytes (see redis-hot.test.ts).
      const raw = (await client.getBuffer(`${store.prefix}posts:GET`))!
      assert.equal(raw.length, 17)
      assert.equal(raw.subarray(16).toString(), 'v')
    })

    it("should default the prefix to 'cachet:'", function () {
      assert.equal(redisStore({ client }).prefix, 'cachet:')
    })
  })

  describe('lock() and unlock()', function () {
    it('should grant a lock to one holder at a time', async function () {
      const a = redisStore({ client, prefix: unique() })
      const b = redisStore({ client, prefix: a.prefix })
      const token = await a.lock('posts:GET', 5000)
      assert.equal(typeof token, 'string')
      assert.equal(await b.lock('posts:GET', 5000), null)
      assert.equal(await b.unlock('posts:GET', 'not-the-token'), false)
      assert.equal(await b.lock('posts:GET', 5000), null, 'a wrong token does not release it')
      assert.equal(await a.unlock('posts:GET', token!), true)
      const next = await b.lock('posts:GET', 5000)
      assert.equal(typeof next, 'string')
      assert.equal(await a.unlock('posts:GET', token!), false, 'a stale token cannot release the new holder')
      assert.equal(await b.unlock('posts:GET', next!), true)
    })

    it('should let a lock expire after its ttl', async function () {
      const store = redisStore({ client, prefix: unique() })
      assert.ok(await store.lock('k', 150))
      assert.equal(await store.lock('k', 150), null)
      await sleep(250)
      assert.ok(await store.lock('k', 150))
    })

    it('should keep locks outside the cache prefix, untouched by clear()', async function () {
      const store = redisStore({ client, prefix: unique() })
      const token = await store.lock('posts:GET', 5000)
      assert.equal(await client.exists(`lock:${store.prefix}posts:GET`), 1)
      await store.set('posts:GET', Buffer.from('v'), 5000)
      assert.equal(await store.clear(), 1)
      assert.equal(await store.lock('posts:GET', 5000), null)
      assert.equal(await store.unlock('posts:GET', token!), true)
    })

    it('should work on a Cluster', async function () {
      const store = redisStore({ client: cluster, prefix: unique() })
      const token = await store.lock('posts:GET', 5000)
      assert.ok(token)
      assert.equal(await store.lock('posts:GET', 5000), null)
      assert.equal(await store.unlock('posts:GET', token), true)
    })
  })

  describe('connections', function () {
    it('should not close a client it was given', async function () {
      const store = redisStore({ client, prefix: unique() })
      await store.close()
      assert.equal(client.status, 'ready')
      assert.equal(await client.ping(), 'PONG')
    })

    it('should close the client it opened from a url, and refuse use afterwards', async function () {
      const server = await getRedis()
      const store = redisStore({ url: server.url, prefix: unique() })
      await store.set('k', Buffer.from('v'), 1000)
      const own = await store.getClient()
      assert.notEqual(own, client)
      await store.close()
      assert.equal(own.status, 'end')
      await assert.rejects(async () => store.get('k'), /closed/)
    })

    it('should connect lazily: creating a store from a url opens nothing', async function () {
      const store = redisStore({ url: 'redis://127.0.0.1:1' })
      await store.close() // nothing was opened, nothing to fail
    })

    it('should fail fast, with no unhandled error event, when its server is down', async function () {
      this.timeout(20_000)
      const server = await startRedis()
      const store = redisStore({ url: server.url, prefix: unique() })
      const own = await store.getClient()
      assert.ok(own.listenerCount('error') > 0, 'an error listener is attached')
      await store.set('k', Buffer.from('v'), 60_000)
      await server.stop()
      const started = Date.now()
      await assert.rejects(async () => store.get('k'))
      assert.ok(Date.now() - started < 5000, `rejected after ${Date.now() - started} ms`)
      await store.close()
    })

    it('should not import ioredis at module top (cachet loads without it)', function () {
      const source = readFileSync(new URL('../../src/stores/redis.ts', import.meta.url), 'utf8')
      const staticImports = source.match(/^import\s+(?!type\b)[^\n]*['"]ioredis['"]/gm)
      assert.equal(staticImports, null)
      assert.match(source, /await import\('ioredis'\)/)
    })
  })

  describe('options', function () {
    const cases: [string, unknown, RegExp][] = [
      ['prefix', 42, /^redisStore option "prefix" must be a string, got 42$/],
      ['prefix', '', /option "prefix" must be a non-empty string.*got ""/],
      ['lockPrefix', null, /option "lockPrefix" must be a non-empty string, got null/],
      ['scanCount', 0, /option "scanCount" must be a positive integer, got 0/],
      ['scanCount', 1.5, /option "scanCount" must be a positive integer, got 1.5/],
      ['clientOptions', 'x', /option "clientOptions" must be an object, got "x"/],
    ]
    for (const [name, value, message] of cases) {
      it(`should reject ${name} = ${JSON.stringify(value)} with a TypeError naming it`, function () {
        assert.throws(
          () => redisStore({ client }, { [name]: value }),
          (error: Error) => {
            assert.ok(error instanceof TypeError)
            assert.match(error.message, message)
            return true
          },
        )
      })
    }

    it('should reject a url that is not a redis URL', function () {
      assert.throws(() => redisStore({ url: 'http://x' }), /option "url" must be a redis:\/\/ or rediss:\/\/ URL string, got "http:\/\/x"/)
    })

    it('should reject a client that is not an ioredis client', function () {
      assert.throws(() => redisStore({ client: {} as never }), /option "client" must be an ioredis Redis or Cluster, got an object \(Object\)/)
    })

    it('should reject both client and url, and neither', function () {
      assert.throws(() => redisStore({ client, url: 'redis://x' } as never), /either "client" or "url"/)
      assert.throws(() => redisStore({} as never), /needs a "client"/)
    })
  })
})
