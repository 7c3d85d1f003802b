/**
 * redisStore() hot copies: recently read values kept in-process, validated on every get by a
 * stamp check in Redis, on a real redis-server and a real Redis Cluster.
 */
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { Cluster, Redis } from 'ioredis'
import { jsonCoder } from '../../src/coders/json.js'
import { msgpackCoder } from '../../src/coders/msgpack.js'
import { CorruptEntryError } from '../../src/entry.js'
import { Storage } from '../../src/storage.js'
import { redisStore } from '../../src/stores/redis.js'
import type { Coder, Entry, ResponseEntry, Store } from '../../src/types.js'
import { responseEntry } from '../support/entries.js'
import { monitorRedis } from '../support/monitor.js'
import { getRedis, getRedisCluster } from '../support/servers.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const unique = () => `hot${randomUUID().slice(0, 8)}:`
const text = (bytes: Uint8Array | null) => (bytes === null ? null : Buffer.from(bytes).toString())

/** Command names sent for keys under `prefix` (other suites share the server). */
function namesFor(commands: string[][], prefix: string): string[] {
  return commands.filter((args) => args.some((arg) => String(arg).startsWith(prefix))).map((args) => String(args[0]).toLowerCase())
}

/** A coder that counts its decodes. */
function counting(inner: Coder): Coder & { decodes: number } {
  const coder = {
    name: inner.name,
    decodes: 0,
    encode: (entry: Entry) => inner.encode(entry),
    decode(bytes: Uint8Array) {
      coder.decodes++
      return inner.decode(bytes)
    },
  }
  return coder
}

function storageOn(store: Store, coder: Coder, errors: Error[] = []): Storage {
  return new Storage({ store, coder, timeout: 2000, now: Date.now, report: (error) => void errors.push(error) })
}

describe('redisStore() hot copies', function () {
  let client: Redis
  let other: Redis
  let port: number

  before(async function () {
    this.timeout(30_000)
    const server = await getRedis()
    port = server.port
    client = new Redis(server.port, server.host, { maxRetriesPerRequest: 1 })
    other = new Redis(server.port, server.host, { maxRetriesPerRequest: 1 })
  })

  after(function () {
    client?.disconnect()
    other?.disconnect()
  })

  describe('a hit on a value this process holds', function () {
    it('should return the very same bytes object, reading only a few bytes from Redis', async function () {
      const store = redisStore({ client, prefix: unique() })
      const value = randomBytes(100_000)
      await store.set('big:GET', value, 60_000)
      const first = await store.get('big:GET')
      assert.deepEqual(first, value)
      const before = client.stream.bytesRead
      const second = await store.get('big:GET')
      const read = client.stream.bytesRead - before
      assert.equal(second, first, 'the same object, not a new copy')
      assert.ok(read < 100, `a hot hit read ${read} bytes from Redis`)
      await store.clear()
    })

    it('should send one command and no GET for a hot hit, and a plain GET for the first read', async function () {
      const store = redisStore({ client, prefix: unique() })
      await store.set('k:GET', Buffer.from('value'), 60_000)
      const spy = await monitorRedis([port], { scripts: false })
      await store.get('k:GET')
      await spy.drain()
      const seenFirst = namesFor(spy.commands, store.prefix).length
      assert.equal(text(await store.get('k:GET')), 'value')
      const names = namesFor(await spy.stop(), store.prefix)
      assert.deepEqual(names.slice(0, seenFirst), ['get'])
      const hot = names.slice(seenFirst)
      assert.equal(hot.length, 1, `hot hit sent: ${hot}`)
      assert.ok(['evalsha', 'eval'].includes(hot[0]), `hot hit sent: ${hot}`)
      await store.clear()
    })

    it('should store a 16-byte write stamp, unique per write, then the bytes', async function () {
      const store = redisStore({ client, prefix: unique() })
      await store.set('posts:GET', Buffer.from('v'), 60_000)
      await store.set('posts:POST', Buffer.from('v'), 60_000)
      const a = (await client.getBuffer(`${store.prefix}posts:GET`))!
      const b = (await client.getBuffer(`${store.prefix}posts:POST`))!
      assert.equal(a.length, 17)
      assert.equal(a.subarray(16).toString(), 'v')
      assert.notDeepEqual(a.subarray(0, 16), b.subarray(0, 16), 'every write has its own stamp')
      await store.clear()
    })
  })

  describe('changes made elsewhere are seen on the very next get', function () {
    it('should see an overwrite by another process', async function () {
      const prefix = unique()
      const mine = redisStore({ client, prefix })
      const theirs = redisStore({ client: other, prefix })
      await mine.set('k:GET', Buffer.from('old'), 60_000)
      const held = await mine.get('k:GET')
      assert.equal(await mine.get('k:GET'), held, 'hot before the overwrite')
      await theirs.set('k:GET', Buffer.from('new'), 60_000)
      const next = await mine.get('k:GET')
      assert.equal(text(next), 'new')
      assert.equal(await mine.get('k:GET'), next, 'the new value is hot in turn')
      await mine.clear()
    })

    it('should see an overwrite of the same length and the same bytes as a new write', async function () {
      const prefix = unique()
      const mine = redisStore({ client, prefix })
      const theirs = redisStore({ client: other, prefix })
      await mine.set('k:GET', Buffer.from('same'), 60_000)
      const held = await mine.get('k:GET')
      await theirs.set('k:GET', Buffer.from('same'), 60_000)
      const next = await mine.get('k:GET')
      assert.equal(text(next), 'same')
      assert.notEqual(next, held, 'a new write is fetched again, whatever its bytes')
      await mine.clear()
    })

    it('should see a delete, an invalidation and a clear by another process', async function () {
      const prefix = unique()
      const mine = redisStore({ client, prefix })
      const theirs = redisStore({ client: other, prefix })
      for (const key of ['a:GET', 'b:GET', 'c:GET']) {
        await mine.set(key, Buffer.from(key), 60_000)
        await mine.get(key)
        assert.equal(text(await mine.get(key)), key)
      }
      await theirs.delete('a:GET')
      assert.equal(await mine.get('a:GET'), null)
      await theirs.deleteMatching('b:*')
      assert.equal(await mine.get('b:GET'), null)
      await theirs.clear()
      assert.equal(await mine.get('c:GET'), null)
    })

    it('should see a raw write without a stamp, and return its bytes as they are', async function () {
      const mine = redisStore({ client, prefix: unique() })
      await mine.set('k:GET', Buffer.from('stamped'), 60_000)
      await mine.get('k:GET')
      await other.set(`${mine.prefix}k:GET`, 'raw bytes', 'PX', 60_000)
      assert.equal(text(await mine.get('k:GET')), 'raw bytes')
      assert.equal(text(await mine.get('k:GET')), 'raw bytes')
      await mine.clear()
    })

    it('should miss once the key expired', async function () {
      const store = redisStore({ client, prefix: unique() })
      await store.set('k:GET', Buffer.from('v'), 150)
      await store.get('k:GET')
      assert.equal(text(await store.get('k:GET')), 'v')
      await sleep(300)
      assert.equal(await store.get('k:GET'), null)
    })

    it('should keep working after Redis forgot its scripts (SCRIPT FLUSH, a restart)', async function () {
      const store = redisStore({ client, prefix: unique() })
      await store.set('k:GET', Buffer.from('v'), 60_000)
      const held = await store.get('k:GET')
      assert.equal(await store.get('k:GET'), held)
      await other.script('FLUSH')
      assert.equal(await store.get('k:GET'), held)
      await other.set(`${store.prefix}k:GET`, 'changed', 'PX', 60_000)
      await other.script('FLUSH')
      assert.equal(text(await store.get('k:GET')), 'changed')
      await store.clear()
    })
  })

  describe('values this process did not write', function () {
    it('should return a value without a stamp whole, and never keep it hot', async function () {
      const store = redisStore({ client, prefix: unique() })
      await client.set(`${store.prefix}raw:GET`, Buffer.from([0xc1, 0x63, 0x73]), 'PX', 60_000)
      const first = await store.get('raw:GET')
      assert.deepEqual(first, Buffer.from([0xc1, 0x63, 0x73]))
      const second = await store.get('raw:GET')
      assert.deepEqual(second, first)
      assert.notEqual(second, first, 'fetched again: nothing to validate it with')
      await store.clear()
    })

    it('should make a corrupt value without a stamp a miss that is reported and deleted', async function () {
      const store = redisStore({ client, prefix: unique() })
      const errors: Error[] = []
      const storage = storageOn(store, jsonCoder(), errors)
      await client.set(`${store.prefix}bad:GET`, Buffer.from([0xff, 0x00, 0x13, 0x37]), 'PX', 60_000)
      assert.equal(await storage.read('bad:GET'), undefined)
      assert.ok(
        errors.some((e) => e instanceof CorruptEntryError),
        `errors: ${errors}`,
      )
      await sleep(50)
      assert.equal(await client.exists(`${store.prefix}bad:GET`), 0)
    })

    it('should make a corrupt value behind a valid-looking stamp a miss, also when it is hot', async function () {
      const store = redisStore({ client, prefix: unique() })
      const errors: Error[] = []
      const storage = storageOn(store, msgpackCoder(), errors)
      await store.set('bad:GET', Buffer.from([0xc1, 0xc1, 0xc1]), 60_000)
      await store.get('bad:GET') // now hot
      assert.equal(await storage.read('bad:GET'), undefined)
      assert.ok(
        errors.some((e) => e instanceof CorruptEntryError),
        `errors: ${errors}`,
      )
      await sleep(50)
      assert.equal(await client.exists(`${store.prefix}bad:GET`), 0)
      assert.equal(await store.get('bad:GET'), null)
    })
  })

  describe('bounds', function () {
    it('should fetch every time with hotBytes: 0', async function () {
      const store = redisStore({ client, prefix: unique(), hotBytes: 0 })
      await store.set('k:GET', Buffer.from('v'), 60_000)
      const spy = await monitorRedis([port], { scripts: false })
      const first = await store.get('k:GET')
      const second = await store.get('k:GET')
      assert.notEqual(second, first)
      assert.deepEqual(namesFor(await spy.stop(), store.prefix), ['get', 'get'])
      await store.clear()
    })

    it('should not keep a value larger than hotBytes', async function () {
      const store = redisStore({ client, prefix: unique(), hotBytes: 10_000 })
      await store.set('big:GET', randomBytes(20_000), 60_000)
      const first = await store.get('big:GET')
      const second = await store.get('big:GET')
      assert.notEqual(second, first)
      assert.deepEqual(second, first)
      await store.clear()
    })

    it('should evict the least recently used values beyond hotBytes', async function () {
      // Room for two of the three values (each costs its bytes plus a small overhead).
      const store = redisStore({ client, prefix: unique(), hotBytes: 3500 })
      for (const key of ['a:GET', 'b:GET', 'c:GET']) await store.set(key, randomBytes(1000), 60_000)
      const a = await store.get('a:GET')
      const b = await store.get('b:GET')
      assert.equal(await store.get('a:GET'), a) // a is now the most recently used
      await store.get('c:GET') // over the bound: b goes
      assert.equal(await store.get('a:GET'), a)
      const b2 = await store.get('b:GET')
      assert.deepEqual(b2, b)
      assert.notEqual(b2, b, 'b was evicted and fetched again')
      await store.clear()
    })

    const invalid: unknown[] = [-1, 1.5, '16MB', Number.NaN, Infinity, null]
    for (const value of invalid) {
      it(`should reject hotBytes = ${String(typeof value === 'string' ? JSON.stringify(value) : value)} with a TypeError naming it`, function () {
        assert.throws(
          () => redisStore({ client }, { hotBytes: value as number }),
          (error: Error) => {
            assert.ok(error instanceof TypeError)
            assert.match(error.message, /^redisStore option "hotBytes" must be a non-negative integer/)
            assert.ok(error.message.endsWith(`got ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`), error.message)
            return true
          },
        )
      })
    }
  })

  describe('Storage on top', function () {
    it('should decode a hot value once and hand out the same entry', async function () {
      const store = redisStore({ client, prefix: unique() })
      const coder = counting(msgpackCoder())
      const storage = storageOn(store, coder)
      await storage.write('k:GET', responseEntry('hello'), 60_000)
      const first = (await storage.read('k:GET')) as ResponseEntry
      const second = (await storage.read('k:GET')) as ResponseEntry
      assert.equal(Buffer.from(first.body).toString(), 'hello')
      assert.equal(second, first)
      assert.equal(coder.decodes, 1)
      await redisStore({ client: other, prefix: store.prefix }).set('k:GET', msgpackCoder().encode(responseEntry('changed')), 60_000)
      const third = (await storage.read('k:GET')) as ResponseEntry
      assert.equal(Buffer.from(third.body).toString(), 'changed')
      assert.equal(coder.decodes, 2)
      await store.clear()
    })

    it('should decode again when a store returns new bytes objects, even equal ones', async function () {
      const bytes = jsonCoder().encode(responseEntry('x'))
      const store: Store = {
        get: () => Buffer.from(bytes),
        set() {},
        delete() {},
        deleteMatching: () => 0,
      }
      const coder = counting(jsonCoder())
      const storage = storageOn(store, coder)
      const first = await storage.read('k')
      const second = await storage.read('k')
      assert.notEqual(second, first)
      assert.equal(coder.decodes, 2)
    })
  })

  describe('on a Cluster', function () {
    let cluster: Cluster
    let otherCluster: Cluster

    before(async function () {
      this.timeout(30_000)
      const servers = await getRedisCluster()
      const connect = async () => {
        const c = new Cluster([...servers.startupNodes], { redisOptions: { maxRetriesPerRequest: 1 } })
        await new Promise<void>((resolve, reject) => {
          c.once('ready', resolve)
          c.once('error', reject)
        })
        return c
      }
      cluster = await connect()
      otherCluster = await connect()
    })

    after(function () {
      cluster?.disconnect()
      otherCluster?.disconnect()
    })

    it('should serve hot hits with one command and no GET, and see changes by another client', async function () {
      const servers = await getRedisCluster()
      const prefix = unique()
      const mine = redisStore({ client: cluster, prefix })
      const theirs = redisStore({ client: otherCluster, prefix })
      const keys = Array.from({ length: 12 }, (_, i) => `spread:${i}:GET`)
      for (const key of keys) await mine.set(key, Buffer.from(key), 60_000)
      const held = new Map<string, Buffer | null>()
      for (const key of keys) held.set(key, await mine.get(key))
      // A first hot round loads the script on every master (EVALSHA, NOSCRIPT, then EVAL).
      for (const key of keys) assert.equal(await mine.get(key), held.get(key), key)
      const spy = await monitorRedis(
        servers.nodes.map((n) => n.port),
        { scripts: false },
      )
      for (const key of keys) assert.equal(await mine.get(key), held.get(key), key)
      const names = namesFor(await spy.stop(), prefix)
      assert.equal(names.length, keys.length, `commands: ${names}`)
      assert.ok(!names.includes('get'), `commands: ${names}`)
      await theirs.set(keys[0], Buffer.from('new'), 60_000)
      await theirs.delete(keys[1])
      assert.equal(text(await mine.get(keys[0])), 'new')
      assert.equal(await mine.get(keys[1]), null)
      await mine.clear()
    })
  })
})
