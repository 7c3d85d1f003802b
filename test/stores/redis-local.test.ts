/**
 * redisStore({ local }): the local tier on a real redis-server, with two store instances on
 * separate clients standing for two processes, and a fault proxy between one of them and Redis.
 */
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import { redisStore, type LocalRedisStore } from '../../src/stores/redis.js'
import { runStoreContract } from '../support/store-contract.js'
import { startProxy, type FaultProxy } from '../support/proxy.js'
import { getRedis, getRedisCluster, type RedisServer } from '../support/servers.js'
import { eventually } from '../support/app.js'
import type { Store } from '../../src/types.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const unique = () => `loc${randomUUID().slice(0, 8)}:`
const text = (bytes: Uint8Array | null) => (bytes === null ? null : Buffer.from(bytes).toString())
/** A short heartbeat, so the bound (2 × heartbeat = 100 ms) is far below the waits below. */
const LOCAL = { heartbeat: 50, ttl: 60_000 }
/** How long a test waits for a condition the bound guarantees within 100 ms. */
const WAIT = 3000

/** Bytes the client has sent so far: unchanged across a get means no round trip was made. */
const sent = (client: Redis) => client.stream?.bytesWritten ?? 0

/** Resolves once a get of `key` is answered with no command sent (the local tier is serving it). */
async function servedLocally(store: Store, client: Redis, key: string, expected?: string): Promise<void> {
  await eventually(
    async () => {
      await store.get(key)
      const before = sent(client)
      const value = await store.get(key)
      return sent(client) === before && (expected === undefined || text(value as Buffer | null) === expected)
    },
    `a local hit on ${key}`,
    WAIT,
  )
}

function newClient(port: number, name?: string): Redis {
  const client = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, connectionName: name })
  client.on('error', () => {})
  return client
}

describe('redisStore({ local })', function () {
  this.timeout(20_000)
  let server: RedisServer
  const opened: Redis[] = []
  const stores: LocalRedisStore[] = []

  before(async function () {
    this.timeout(30_000)
    server = await getRedis()
  })

  /** Two processes: their own clients (and so their own subscribers) on one prefix. */
  function pair(options: { port?: number; name?: string } = {}) {
    const prefix = unique()
    const a = newClient(server.port)
    const b = newClient(options.port ?? server.port, options.name)
    opened.push(a, b)
    const A = redisStore({ client: a, prefix, local: LOCAL })
    const B = redisStore({ client: b, prefix, local: LOCAL })
    stores.push(A, B)
    return { a, b, A, B, prefix }
  }

  afterEach(async function () {
    for (const store of stores.splice(0)) {
      await store.clear().catch(() => undefined)
      await store.close()
    }
    for (const client of opened.splice(0)) client.disconnect()
  })

  describe('when a value is read again', function () {
    it('should answer from process memory with no command sent, the same bytes object each time', async function () {
      const { b, A, B } = pair()
      const value = randomBytes(100_000)
      await A.set('big:GET', value, 60_000)
      await servedLocally(B, b, 'big:GET')
      const first = await B.get('big:GET')
      assert.deepEqual(first, value)
      const again = B.get('big:GET')
      assert.ok(Buffer.isBuffer(again), 'a local hit is answered synchronously, not with a promise')
      assert.equal(again, first)
    })
  })

  describe('when many reads of one key miss the local tier at once', function () {
    it('should send one command for all of them', async function () {
      const { b, A, B } = pair()
      await A.set('k:GET', Buffer.from('v'), 60_000)
      let commands = 0
      const original = b.callBuffer.bind(b)
      b.callBuffer = ((...args: Parameters<typeof b.callBuffer>) => {
        commands++
        return original(...args)
      }) as typeof b.callBuffer
      const values = await Promise.all(Array.from({ length: 10 }, () => B.get('k:GET')))
      assert.deepEqual(
        values.map((v) => text(v)),
        Array(10).fill('v'),
      )
      assert.equal(commands, 1)
    })
  })

  describe('when the client given connects lazily', function () {
    it('should still open its subscriber and serve local hits', async function () {
      const prefix = unique()
      const lazy = new Redis({ host: '127.0.0.1', port: server.port, maxRetriesPerRequest: 1, lazyConnect: true })
      lazy.on('error', () => {})
      opened.push(lazy)
      const store = redisStore({ client: lazy, prefix, local: LOCAL })
      stores.push(store)
      await store.set('k:GET', Buffer.from('v'), 60_000)
      await servedLocally(store, lazy, 'k:GET', 'v')
    })
  })

  describe('when another process changes a key', function () {
    it('should stop serving the old value once the other process’s set resolved', async function () {
      const { b, A, B } = pair()
      await A.set('k:GET', Buffer.from('old'), 60_000)
      await servedLocally(B, b, 'k:GET', 'old')
      await A.set('k:GET', Buffer.from('new'), 60_000)
      await eventually(async () => text(await B.get('k:GET')) === 'new', 'the new value in B', WAIT)
      // …and never the old one again, while the new one is served locally in turn.
      for (let i = 0; i < 20; i++) assert.equal(text(await B.get('k:GET')), 'new')
      await servedLocally(B, b, 'k:GET', 'new')
    })

    it('should stop serving the old value when the other process’s store has no local tier (strict mode)', async function () {
      const { a, b, B, prefix } = pair()
      const strict = redisStore({ client: a, prefix })
      await strict.set('k:GET', Buffer.from('old'), 60_000)
      await servedLocally(B, b, 'k:GET', 'old')
      await strict.set('k:GET', Buffer.from('new'), 60_000)
      await eventually(async () => text(await B.get('k:GET')) === 'new', 'the new value in B', WAIT)
      await servedLocally(B, b, 'k:GET', 'new')
      await strict.deleteMatching('k:*')
      await eventually(async () => (await B.get('k:GET')) === null, 'the invalidation seen in B', WAIT)
    })

    it('should stop serving a deleted key', async function () {
      const { b, A, B } = pair()
      await A.set('k:GET', Buffer.from('v'), 60_000)
      await servedLocally(B, b, 'k:GET', 'v')
      await A.delete('k:GET')
      await eventually(async () => (await B.get('k:GET')) === null, 'the delete seen in B', WAIT)
    })

    it("should stop serving every copy deleteMatching('posts:*') removed, and keep serving the others", async function () {
      const { b, A, B } = pair()
      for (const key of ['posts:GET', 'posts:1:GET', 'users:1:GET']) {
        await A.set(key, Buffer.from(key), 60_000)
        await servedLocally(B, b, key, key)
      }
      await A.deleteMatching('posts:*')
      await eventually(async () => (await B.get('posts:GET')) === null && (await B.get('posts:1:GET')) === null, 'posts:* gone in B', WAIT)
      await servedLocally(B, b, 'users:1:GET', 'users:1:GET')
    })

    it('should stop serving every copy after clear()', async function () {
      const { b, A, B } = pair()
      for (const key of ['posts:GET', 'users:1:GET']) {
        await A.set(key, Buffer.from(key), 60_000)
        await servedLocally(B, b, key, key)
      }
      await A.clear()
      await eventually(async () => (await B.get('posts:GET')) === null && (await B.get('users:1:GET')) === null, 'everything gone in B', WAIT)
    })

    it('should not outlive the key’s ttl in Redis', async function () {
      const { A, B } = pair()
      await A.set('short:GET', Buffer.from('v'), 300)
      await B.get('short:GET')
      // Served locally while it lives (no command), then a miss: the copy expired with the key.
      await eventually(async () => (await B.get('short:GET')) === null, 'the expiry seen in B', WAIT)
      assert.equal(await B.get('short:GET'), null)
    })
  })

  describe('when a key is absent', function () {
    it('should answer the absence from process memory too (a tag with no invalidation), with no command sent', async function () {
      const { b, B } = pair()
      assert.equal(await B.get('cachet~tag:post:1'), null)
      await eventually(
        async () => {
          await B.get('cachet~tag:post:1')
          const before = sent(b)
          const value = await B.get('cachet~tag:post:1')
          return value === null && sent(b) === before
        },
        'a local answer for an absent key',
        WAIT,
      )
    })

    it('should stop answering the absence once another process set the key, with or without a local tier', async function () {
      const { a, b, A, B, prefix } = pair()
      await servedLocally(B, b, 'mark:1')
      assert.equal(await B.get('mark:1'), null)
      await A.set('mark:1', Buffer.from('invalidated'), 60_000)
      await eventually(async () => text(await B.get('mark:1')) === 'invalidated', 'the new key in B', WAIT)
      for (let i = 0; i < 20; i++) assert.equal(text(await B.get('mark:1')), 'invalidated')
      const strict = redisStore({ client: a, prefix })
      await servedLocally(B, b, 'mark:2')
      await strict.set('mark:2', Buffer.from('invalidated'), 60_000)
      await eventually(async () => text(await B.get('mark:2')) === 'invalidated', 'the strict write in B', WAIT)
    })
  })

  describe('when an invalidation message is lost', function () {
    it('should not serve the old copy after its subscriber was killed and the key overwritten meanwhile', async function () {
      const name = `local-b-${randomUUID().slice(0, 8)}`
      const { b, A, B } = pair({ name })
      await A.set('k:GET', Buffer.from('old'), 60_000)
      await servedLocally(B, b, 'k:GET', 'old')
      const admin = newClient(server.port)
      opened.push(admin)
      // B's subscriber (a duplicate of its client, so it carries the same name) goes; the write
      // that follows publishes to nobody in B.
      const list = String(await admin.client('LIST'))
      const ids = list
        .split('\n')
        .filter((line) => line.includes(` name=${name} `) && / sub=1 /.test(line))
        .map((line) => /\bid=(\d+)/.exec(line)![1])
      assert.equal(ids.length, 1, `B's subscriber in CLIENT LIST:\n${list}`)
      await admin.client('KILL', 'ID', ids[0])
      await A.set('k:GET', Buffer.from('new'), 60_000)
      await eventually(async () => text(await B.get('k:GET')) === 'new', 'the new value in B', WAIT)
      for (let i = 0; i < 20; i++) assert.equal(text(await B.get('k:GET')), 'new')
      // The subscriber comes back and B serves locally again.
      await servedLocally(B, b, 'k:GET', 'new')
    })

    describe('when the channel stalls silently (fault proxy between B and Redis)', function () {
      let proxy: FaultProxy

      before(async function () {
        proxy = await startProxy(server.port)
      })
      after(async function () {
        await proxy?.close()
      })
      afterEach(function () {
        proxy.holdReplies(false)
      })

      it('should stop serving the old copy within 2 × heartbeat, and read the new value once Redis answers again', async function () {
        const { b, A, B } = pair({ port: proxy.port })
        await A.set('k:GET', Buffer.from('old'), 60_000)
        await servedLocally(B, b, 'k:GET', 'old')
        // Everything Redis sends to B is held: the message about the next write among it.
        proxy.holdReplies(true)
        await A.set('k:GET', Buffer.from('new'), 60_000)
        const pending: Promise<unknown>[] = []
        // A get that does not answer at once is one that went to Redis (whose replies are held).
        await eventually(
          async () => {
            const read = Promise.resolve(B.get('k:GET')).then(text, () => 'error')
            pending.push(read)
            const first = await Promise.race([read, sleep(20).then(() => 'pending')])
            return first !== 'old'
          },
          'B to stop serving the old copy',
          WAIT,
        )
        // The held bytes (the message included) are lost with the connections.
        proxy.reset()
        proxy.holdReplies(false)
        assert.notEqual(await pending[pending.length - 1], 'old')
        await eventually(async () => text(await B.get('k:GET')) === 'new', 'the new value in B', WAIT)
        for (let i = 0; i < 20; i++) assert.equal(text(await B.get('k:GET')), 'new')
      })
    })
  })

  describe('options', function () {
    const invalid: [string, unknown, RegExp][] = [
      ['a string', 'yes', /^redisStore option "local" must be false or an object/],
      ['true', true, /^redisStore option "local" must be false or an object \{ maxBytes, ttl \}, got true$/],
      ['maxBytes -1', { maxBytes: -1 }, /^redisStore option "local.maxBytes" must be a positive integer, got -1$/],
      ['ttl 0', { ttl: 0 }, /^redisStore option "local.ttl" must be a positive number of milliseconds, got 0$/],
      ['heartbeat 5', { heartbeat: 5 }, /^redisStore option "local.heartbeat" must be a number of milliseconds >= 10, got 5$/],
      ['an unknown field', { size: 1 }, /^redisStore option "local" has an unknown field "size"/],
    ]
    for (const [what, local, message] of invalid) {
      it(`should reject local with ${what} with a TypeError naming it`, function () {
        const client = newClient(server.port)
        opened.push(client)
        assert.throws(
          () => redisStore({ client, local: local as never }),
          (error: Error) => {
            assert.ok(error instanceof TypeError)
            assert.match(error.message, message)
            return true
          },
        )
      })
    }

    it('should refuse a Cluster client with a TypeError naming the option', async function () {
      this.timeout(30_000)
      const cluster = await getRedisCluster()
      const { Cluster } = await import('ioredis')
      const client = new Cluster([...cluster.startupNodes])
      try {
        assert.throws(() => redisStore({ client, local: {} }), /^TypeError: redisStore option "local" needs a single-node client/)
      } finally {
        client.disconnect()
      }
    })
  })

  describe('the Store contract with the local tier on', function () {
    runStoreContract(
      'redisStore({ client, local })',
      () => {
        const client = newClient(server.port)
        const store = redisStore({ client, prefix: unique(), local: LOCAL })
        return {
          store,
          async cleanup() {
            await store.clear()
            await store.close()
            client.disconnect()
          },
        }
      },
      { keepsRecords: true, setIf: true },
    )

    runStoreContract('redisStore({ client, local }), written in one process and read in another', () => {
      const prefix = unique()
      const [a, b] = [newClient(server.port), newClient(server.port)]
      const writer = redisStore({ client: a, prefix, local: LOCAL })
      const reader = redisStore({ client: b, prefix, local: LOCAL })
      const store: Store = {
        name: 'redis (two instances)',
        get: (key) => reader.get(key),
        set: (key, value, ttl) => writer.set(key, value, ttl),
        // Deletes and compare-and-sets go through the reader, whose own changes drop its copies at
        // once; changes by the writer reach the reader's copies one message later (the tests above).
        setIf: (key, expected, value, ttl) => reader.setIf(key, expected, value, ttl),
        delete: (key) => reader.delete(key),
        deleteMatching: (pattern) => reader.deleteMatching(pattern),
        clear: () => writer.clear(),
      }
      return {
        store,
        async cleanup() {
          await writer.clear()
          await Promise.all([writer.close(), reader.close()])
          a.disconnect()
          b.disconnect()
        },
      }
    })
  })
})
