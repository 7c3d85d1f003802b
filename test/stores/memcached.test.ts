/** memcachedStore() on real memcached servers (one and two), across independent clients. */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Socket } from 'node:net'
import memjs from 'memjs'
import type { Store } from '../../src/types.js'
import { classifyPattern, memcachedStore, namespacesOf, UnsupportedPatternError } from '../../src/stores/memcached.js'
import { runStoreContract } from '../support/store-contract.js'
import { getMemcached, getMemcached2, startMemcached } from '../support/servers.js'
import { spyOnWire } from '../support/memjs-wire.js'

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const unique = () => `t${randomUUID().slice(0, 8)}:`
const quiet = { log() {} }
/** memcached counts ttl in whole seconds on a 1 s clock: 2 s lives at least 1 s, gone within 3. */
const REAL_TTL = { ms: 2000, waitMs: 3100 }

/** A memjs client that records every request it sends (see spyOnWire). */
function spiedClient(addresses: string[]) {
  const client = memjs.Client.create(addresses.join(','), { logger: quiet, retries: 1 })
  return { client, ...spyOnWire(client) }
}

/** Count what reaches the first server's socket: each _write or _writev is one system call. */
function countWrites(client: memjs.Client): { count: number } {
  const socket = (client as unknown as { servers: { _socket: Socket }[] }).servers[0]._socket
  const writes = { count: 0 }
  for (const method of ['_write', '_writev'] as const) {
    const original = socket[method]!.bind(socket)
    ;(socket as unknown as Record<string, unknown>)[method] = (...args: unknown[]) => {
      writes.count++
      return (original as (...a: unknown[]) => void)(...args)
    }
  }
  return writes
}

/** Two store instances on separate clients behave as two processes: write with one, read with the other. */
function crossProcess(writer: Store, reader: Store): Store {
  return {
    name: 'memcached (two instances)',
    get: (key) => reader.get(key),
    getMany: (keys) => reader.getMany!(keys),
    set: (key, value, ttl) => writer.set(key, value, ttl),
    setIf: (key, expected, value, ttl) => writer.setIf!(key, expected, value, ttl),
    delete: (key) => reader.delete(key),
    deleteMatching: (pattern) => reader.deleteMatching(pattern),
    clear: () => writer.clear!(),
  }
}

describe('memcachedStore()', function () {
  let one: string[]
  let two: string[]
  let itemSize: number

  before(async function () {
    this.timeout(30_000)
    const [a, b] = await Promise.all([getMemcached(), getMemcached2()])
    one = [a.address]
    two = [a.address, b.address]
    itemSize = Math.min(a.itemSize, b.itemSize)
  })

  const capabilities = { patterns: 'namespaces', counts: false, ttl: REAL_TTL, getMany: true, keepsRecords: true, setIf: true } as const

  describe('on one server, with a client it was given', function () {
    runStoreContract(
      'memcachedStore({ client })',
      () => {
        const client = memjs.Client.create(one.join(','), { logger: quiet })
        const prefix = unique()
        const store = memcachedStore({ client }, { prefix, maxItemSize: itemSize - 4096 })
        const foreignKey = `foreign-${prefix}`
        return {
          store,
          foreign: {
            put: async () => void (await client.set(foreignKey, 'x', { expires: 60 })),
            exists: async () => (await client.get(foreignKey)).value !== null,
          },
          cleanup: () => client.close(),
        }
      },
      capabilities,
      { rejectsNonBytes: ['set', 'setIf'] },
    )
  })

  describe('on two servers, with a client it opened itself', function () {
    runStoreContract(
      'memcachedStore({ servers: [a, b] })',
      () => {
        const store = memcachedStore({ servers: two, prefix: unique(), maxItemSize: itemSize - 4096 })
        return { store, cleanup: () => store.close() }
      },
      capabilities,
    )
  })

  describe('across two independent instances (two processes) on two servers', function () {
    runStoreContract(
      'memcachedStore() written by one instance, read and invalidated by another',
      () => {
        const prefix = unique()
        // Two clients, two stores: all they share is the servers (memjs hashes keys over the
        // server list, so both list the servers in the same order, as processes of one app do).
        const writer = memcachedStore({ servers: two, prefix, maxItemSize: itemSize - 4096 })
        const reader = memcachedStore({ servers: two, prefix, maxItemSize: itemSize - 4096 })
        return {
          store: crossProcess(writer, reader),
          async cleanup() {
            await writer.close()
            await reader.close()
          },
        }
      },
      capabilities,
    )

    it('should make an invalidation by one instance visible to the other at once', async function () {
      const prefix = unique()
      const a = memcachedStore({ servers: two, prefix })
      const b = memcachedStore({ servers: two, prefix })
      try {
        await a.set('posts:42:GET?a=1#host.example', Buffer.from('v1'), 60_000)
        await a.set('users:1:GET', Buffer.from('u1'), 60_000)
        assert.equal(String(await b.get('posts:42:GET?a=1#host.example')), 'v1')
        await b.deleteMatching('posts:*')
        assert.equal(await a.get('posts:42:GET?a=1#host.example'), undefined)
        assert.equal(String(await a.get('users:1:GET')), 'u1')
        await a.set('posts:42:GET?a=1#host.example', Buffer.from('v2'), 60_000)
        assert.equal(String(await b.get('posts:42:GET?a=1#host.example')), 'v2')
      } finally {
        await a.close()
        await b.close()
      }
    })
  })

  describe('invalidation design', function () {
    it('should list the namespaces the supported patterns can name', function () {
      assert.deepEqual(namespacesOf('posts:42:GET?a=1&b=2#host.example#accept-encoding=gzip'), [
        '',
        'posts:',
        'posts:42:',
        'posts:42:GET?',
        'posts:42:GET?a=1&b=2#',
      ])
      assert.deepEqual(namespacesOf('GET'), [''])
      // A ':' after the '?' or '#' is not a segment boundary.
      assert.deepEqual(namespacesOf('a:GET?t=1:2#x:y'), ['', 'a:', 'a:GET?', 'a:GET?t=1:2#'])
    })

    it('should classify patterns by namespace, widen the rest to the narrowest namespace holding them, and refuse the global one', function () {
      assert.deepEqual(classifyPattern('*'), { literal: false, namespace: '', widened: false })
      assert.deepEqual(classifyPattern('**'), { literal: false, namespace: '', widened: false })
      assert.deepEqual(classifyPattern('posts:42:*'), { literal: false, namespace: 'posts:42:', widened: false })
      assert.deepEqual(classifyPattern('posts:GET#*'), { literal: false, namespace: 'posts:GET#', widened: false })
      assert.deepEqual(classifyPattern('posts:GET?a=1#*'), { literal: false, namespace: 'posts:GET?a=1#', widened: false })
      assert.deepEqual(classifyPattern('posts:42:GET?*'), { literal: false, namespace: 'posts:42:GET?', widened: false })
      assert.deepEqual(classifyPattern('posts:GET'), { literal: true })
      const widened: Array<[string, string]> = [
        ['posts:4*', 'posts:'],
        ['posts:*:GET', 'posts:'],
        ['posts:42:GET?a=*', 'posts:42:GET?'],
        ['a?b:*', 'a?'],
        ['a#b:*', 'a#'],
        ['a#b?*', 'a#'],
        ['a#b#*', 'a#'],
        ['users:7:posts:*:comments:*', 'users:7:posts:'],
      ]
      for (const [pattern, namespace] of widened) assert.deepEqual(classifyPattern(pattern), { literal: false, namespace, widened: true }, pattern)
      for (const bad of ['*:GET', 'post*', '*posts', 'posts*:GET']) {
        assert.throws(
          () => classifyPattern(bad),
          (error: Error) => {
            assert.ok(error instanceof UnsupportedPatternError)
            assert.ok(error.message.includes(JSON.stringify(bad)), error.message)
            assert.match(error.message, /"<segments>:\*".*"<primary>#\*".*"<path>\?\*".*use "\*" to drop everything/)
            return true
          },
        )
      }
    })

    it('should make every key a widened pattern matches unreachable, in every process, and keep keys outside its namespace', async function () {
      const prefix = unique()
      const a = memcachedStore({ servers: two, prefix })
      const b = memcachedStore({ servers: two, prefix })
      try {
        for (const key of ['posts:42:GET', 'posts:7:GET', 'posts:GET?page=2', 'users:7:GET']) await a.set(key, Buffer.from(key), 60_000)
        assert.equal(await a.deleteMatching('posts:4*'), 0)
        for (const key of ['posts:42:GET', 'posts:7:GET', 'posts:GET?page=2']) assert.equal(await b.get(key), undefined, key)
        assert.equal(String(await b.get('users:7:GET')), 'users:7:GET')
      } finally {
        await a.close()
        await b.close()
      }
    })

    it('should cost one pipelined generation read plus one entry read per hit', async function () {
      const { client, sent } = spiedClient(two)
      const store = memcachedStore({ client }, { prefix: unique() })
      try {
        await store.set('posts:42:GET?a=1#host.example', Buffer.from('v'), 60_000)
        sent.length = 0
        assert.equal(String(await store.get('posts:42:GET?a=1#host.example')), 'v')
        // 5 namespaces ('', posts:, posts:42:, posts:42:GET?, posts:42:GET?a=1#) + the entry.
        assert.deepEqual(
          sent.map((s) => s.op),
          ['get', 'get', 'get', 'get', 'get', 'get'],
        )
        sent.length = 0
        assert.equal(await store.get('never:seen:GET'), undefined)
        assert.equal(sent.filter((s) => !s.key.includes(':g:')).length, 0, 'a miss on an unknown namespace stops early')
      } finally {
        client.close()
      }
    })

    it('should send one GET per memcached key for reads issued together, and fresh ones for a later read', async function () {
      const { client, sent } = spiedClient(one)
      const store = memcachedStore({ client }, { prefix: unique() })
      try {
        await store.set('posts:1:GET#h', Buffer.from('one'), 60_000)
        await store.set('posts:2:GET#h', Buffer.from('two'), 60_000)
        sent.length = 0
        const read = await Promise.all([store.get('posts:1:GET#h'), store.get('posts:2:GET#h'), store.get('posts:1:GET#h')])
        assert.deepEqual(read.map(String), ['one', 'two', 'one'])
        const keys = sent.map((s) => s.key)
        assert.equal(new Set(keys).size, keys.length, `each key once: ${keys.join(' ')}`)
        // Namespaces '', posts:, posts:1:, posts:2:, posts:1:GET#, posts:2:GET#, and the two entries.
        assert.equal(keys.length, 8)
        // Reads issued one after the other never share a GET.
        for (const expected of ['one', 'one']) {
          sent.length = 0
          assert.equal(String(await store.get('posts:1:GET#h')), expected)
          assert.equal(sent.length, 5)
        }
        // Nor does a read issued after a change made here, in the same turn of the event loop.
        const before = store.get('posts:1:GET#h')
        const removed = store.delete('posts:1:GET#h')
        const after = store.get('posts:1:GET#h')
        assert.equal(String(await before), 'one')
        assert.equal(await removed, true)
        assert.equal(await after, undefined)
      } finally {
        client.close()
      }
    })

    it('should send the GETs of one round trip as one request per server, however many keys', async function () {
      const { client, sent, counts } = spiedClient(two)
      const store = memcachedStore({ client }, { prefix: unique() })
      try {
        const keys = Array.from({ length: 20 }, (_, i) => `posts:${i}:GET#h`)
        for (const key of keys) await store.set(key, Buffer.from(key), 60_000)
        await store.set('cachet~tag:posts', Buffer.from('mark'), 60_000)
        sent.length = 0
        counts.writes = 0
        const read = await store.getMany!([...keys, 'cachet~tag:posts', 'cachet~tag:never'])
        assert.deepEqual(read.map(String), [...keys, 'mark', 'undefined'])
        // 42 namespaces ('', posts:, 20 × posts:<i>:, 20 × posts:<i>:GET#) and two records, then the
        // 20 entries: 64 GETs in two round trips, each one request per server (two servers).
        assert.equal(sent.filter((s) => s.op === 'get').length, 64)
        assert.ok(counts.writes <= 4, `${counts.writes} requests for 64 GETs`)
      } finally {
        client.close()
      }
    })

    it('should send the requests of one round trip in one write per server, not one write each', async function () {
      const { client } = spiedClient(one)
      const store = memcachedStore({ client }, { prefix: unique() })
      try {
        await store.set('posts:1:GET#h', Buffer.from('one'), 60_000)
        await store.set('posts:2:GET#h', Buffer.from('two'), 60_000)
        const writes = countWrites(client)
        const read = await store.getMany!(['posts:1:GET#h', 'posts:2:GET#h'])
        assert.deepEqual(read.map(String), ['one', 'two'])
        // Six generations in the first round trip, the two entries in the second.
        assert.equal(writes.count, 2)
        writes.count = 0
        assert.equal(String(await store.get('posts:1:GET#h')), 'one')
        assert.equal(writes.count, 2)
        // A compare-and-set sends its write and a GET together: one write, whether it is stored or not.
        const record = 'cachet~mark:posts'
        writes.count = 0
        assert.equal(await store.setIf!(record, null, Buffer.from('a'), 60_000), true)
        assert.equal(writes.count, 1)
        writes.count = 0
        assert.equal(String(await store.setIf!(record, null, Buffer.from('b'), 60_000)), 'a')
        assert.equal(writes.count, 1)
        writes.count = 0
        assert.equal(await store.setIf!(record, Buffer.from('a'), Buffer.from('c'), 60_000), true)
        assert.equal(writes.count, 1)
      } finally {
        client.close()
      }
    })

    it('should not resurrect old entries when a generation is evicted', async function () {
      const { client } = spiedClient(one)
      const prefix = unique()
      const store = memcachedStore({ client }, { prefix })
      try {
        await store.set('posts:GET', Buffer.from('v1'), 60_000)
        await store.deleteMatching('posts:*')
        await store.set('posts:GET', Buffer.from('v2'), 60_000)
        // Simulate LRU eviction of the namespace generation.
        assert.equal(await client.delete(`${prefix}g:posts:`), true)
        assert.equal(await store.get('posts:GET'), undefined)
        await store.set('posts:GET', Buffer.from('v3'), 60_000)
        assert.equal(String(await store.get('posts:GET')), 'v3')
      } finally {
        client.close()
      }
    })

    it('should resolve 0 for a wildcard pattern and say it cannot count', async function () {
      const store = memcachedStore({ servers: one, prefix: unique() })
      try {
        await store.set('posts:GET', Buffer.from('v'), 60_000)
        assert.equal(store.countsRemovals, false)
        assert.equal(await store.deleteMatching('posts:*'), 0)
        assert.equal(await store.get('posts:GET'), undefined)
      } finally {
        await store.close()
      }
    })

    describe('with generationCacheMs', function () {
      it('should see its own invalidations at once and others within the window', async function () {
        const prefix = unique()
        const cached = memcachedStore({ servers: two, prefix, generationCacheMs: 400 })
        const other = memcachedStore({ servers: two, prefix })
        try {
          await cached.set('posts:GET', Buffer.from('v1'), 60_000)
          assert.equal(String(await cached.get('posts:GET')), 'v1')
          await other.deleteMatching('posts:*')
          assert.equal(String(await cached.get('posts:GET')), 'v1', 'stale for up to generationCacheMs')
          await sleep(450)
          assert.equal(await cached.get('posts:GET'), undefined)
          await cached.set('posts:GET', Buffer.from('v2'), 60_000)
          await cached.deleteMatching('posts:*')
          assert.equal(await cached.get('posts:GET'), undefined, 'own invalidation is immediate')
        } finally {
          await cached.close()
          await other.close()
        }
      })
    })
  })

  describe('keys', function () {
    it('should send only keys of at most 250 bytes of printable ASCII', async function () {
      const { client, sent } = spiedClient(one)
      const store = memcachedStore({ client }, { prefix: unique() })
      try {
        const long = `posts:${'a b ü 🚀 '.repeat(300)}:GET?q=${'x'.repeat(2048)}#host.example`
        await store.set(long, Buffer.from('v'), 60_000)
        assert.equal(String(await store.get(long)), 'v')
        assert.ok(sent.length > 0)
        for (const { key } of sent) {
          assert.ok(Buffer.byteLength(key) <= 250, `${Buffer.byteLength(key)} bytes: ${key}`)
          assert.match(key, /^[\x21-\x7e]+$/)
        }
        // A hashed key keeps a readable head.
        assert.ok(
          sent.some(({ key }) => key.includes(`E:`) && key.includes(':posts:a')),
          sent.map((s) => s.key).join('\n'),
        )
      } finally {
        client.close()
      }
    })

    it('should keep a readable prefix + key when it fits', async function () {
      const { client, sent } = spiedClient(one)
      const prefix = unique()
      const store = memcachedStore({ client }, { prefix })
      try {
        await store.set('posts:42:GET', Buffer.from('v'), 60_000)
        const entry = sent.find((s) => s.op === 'set')!
        assert.match(entry.key, new RegExp(`^${prefix}e:[\\w-]{16}:posts:42:GET$`))
      } finally {
        client.close()
      }
    })
  })

  describe('ttl', function () {
    it('should send whole seconds, rounded up', async function () {
      const { client, sent } = spiedClient(one)
      const store = memcachedStore({ client }, { prefix: unique() })
      try {
        await store.set('a', Buffer.from('v'), 1100)
        await store.set('b', Buffer.from('v'), 1)
        await store.set('c', Buffer.from('v'), 30 * 24 * 3600 * 1000)
        const sets = sent.filter((s) => s.op === 'set').map((s) => s.expires)
        assert.deepEqual(sets, [2, 1, 30 * 24 * 3600])
      } finally {
        client.close()
      }
    })

    it('should send a ttl over 30 days as an absolute unix time, and keep the entry', async function () {
      const { client, sent } = spiedClient(one)
      const clock = Date.now()
      const store = memcachedStore({ client }, { prefix: unique(), now: () => clock })
      try {
        const ttl = 31 * 24 * 3600 * 1000
        await store.set('far:GET', Buffer.from('v'), ttl)
        const set = sent.find((s) => s.op === 'set')!
        assert.equal(set.expires, Math.ceil(clock / 1000) + 31 * 24 * 3600)
        // Sent as a relative 31 days it would be a date in 1970: already expired.
        assert.equal(String(await store.get('far:GET')), 'v')
      } finally {
        client.close()
      }
    })
  })

  describe('item size', function () {
    it('should skip values over maxItemSize and count them', async function () {
      const store = memcachedStore({ servers: one, prefix: unique(), maxItemSize: 1000 })
      try {
        assert.equal(await store.set('big:GET', new Uint8Array(1001), 60_000), false)
        assert.equal(await store.set('ok:GET', new Uint8Array(1000), 60_000), true)
        assert.equal(await store.get('big:GET'), undefined)
        assert.equal((await store.get('ok:GET'))!.length, 1000)
        assert.equal(store.stats().tooLarge, 1)
      } finally {
        await store.close()
      }
    })

    it("should count, not throw, when the server's own limit refuses a value", async function () {
      const store = memcachedStore({ servers: one, prefix: unique(), maxItemSize: 8 * 1024 * 1024 })
      try {
        assert.equal(await store.set('big:GET', new Uint8Array(itemSize + 1024), 60_000), false)
        assert.equal(store.stats().tooLarge, 1)
        assert.equal(await store.get('big:GET'), undefined)
      } finally {
        await store.close()
      }
    })

    it('should default maxItemSize to 1 MiB minus 1 KiB', async function () {
      const store = memcachedStore({ servers: one, prefix: unique() })
      try {
        assert.equal(await store.set('a', new Uint8Array(1_048_576 - 1023), 60_000), false)
        assert.equal(await store.set('b', new Uint8Array(1_048_576 - 1024), 60_000), true)
      } finally {
        await store.close()
      }
    })
  })

  describe('connections', function () {
    it('should not close a client it was given', async function () {
      const client = memjs.Client.create(one.join(','), { logger: quiet })
      const store = memcachedStore({ client }, { prefix: unique() })
      await store.set('k', Buffer.from('v'), 60_000)
      await store.close()
      assert.equal(String(await store.get('k')), 'v')
      client.close()
    })

    it('should close the client it opened, and refuse use afterwards', async function () {
      const store = memcachedStore({ servers: one, prefix: unique() })
      await store.set('k', Buffer.from('v'), 60_000)
      await store.close()
      await assert.rejects(async () => store.get('k'), /closed/)
    })

    it('should fail fast when its server stalls (SIGSTOP), then recover', async function () {
      this.timeout(20_000)
      const server = await startMemcached({ itemSize: '1m' })
      const store = memcachedStore({ servers: [server.address], prefix: unique() })
      try {
        await store.set('k', Buffer.from('v'), 60_000)
        await server.pause()
        const started = Date.now()
        await assert.rejects(async () => store.get('k'))
        assert.ok(Date.now() - started < 3000, `rejected after ${Date.now() - started} ms`)
        server.resume()
        assert.equal(String(await store.get('k')), 'v')
      } finally {
        await store.close()
        await server.stop()
      }
    })

    it('should fail over a read batch as memjs fails over a request, when the client is made to (clientOptions.failover)', async function () {
      this.timeout(20_000)
      const [down, up] = await Promise.all([startMemcached({ itemSize: '1m' }), startMemcached({ itemSize: '1m' })])
      const keys = Array.from({ length: 10 }, (_, i) => `posts:${i}:GET#h`)
      const plain = memcachedStore({ servers: [down.address, up.address], prefix: unique() })
      const failing = memcachedStore({ servers: [down.address, up.address], prefix: unique(), clientOptions: { failover: true, logger: quiet } })
      try {
        await down.stop()
        // 21 namespaces and 10 keys: some of them hash to the stopped server.
        await assert.rejects(async () => plain.getMany!(keys))
        assert.deepEqual(await failing.getMany!(keys), Array(10).fill(undefined))
        for (const key of keys) await failing.set(key, Buffer.from(key), 60_000)
        assert.deepEqual((await failing.getMany!(keys)).map(String), keys)
      } finally {
        await plain.close()
        await failing.close()
        await Promise.all([down.stop(), up.stop()])
      }
    })

    it('should not import memjs at module top (cachet loads without it)', function () {
      const source = readFileSync(new URL('../../src/stores/memcached.ts', import.meta.url), 'utf8')
      assert.equal(source.match(/^import\s+(?!type\b)[^\n]*['"]memjs['"]/gm), null)
      assert.match(source, /await import\('memjs'\)/)
    })
  })

  describe('options', function () {
    const cases: [string, unknown, RegExp][] = [
      ['prefix', 42, /^memcachedStore option "prefix" must be a string .*got 42$/],
      ['prefix', 'has space', /option "prefix" .*got "has space"/],
      ['maxItemSize', -1, /option "maxItemSize" must be a positive integer, got -1/],
      ['generationCacheMs', '1s', /option "generationCacheMs" must be a number of milliseconds >= 0, got "1s"/],
      ['clientOptions', 5, /option "clientOptions" must be an object, got 5/],
      ['now', 5, /option "now" must be a function, got 5/],
    ]
    for (const [name, value, message] of cases) {
      it(`should reject ${name} = ${JSON.stringify(value)} with a TypeError naming it`, function () {
        assert.throws(
          () => memcachedStore({ servers: 'localhost:11211' }, { [name]: value }),
          (error: Error) => {
            assert.ok(error instanceof TypeError)
            assert.match(error.message, message)
            return true
          },
        )
      })
    }

    it('should reject malformed servers and non-clients', function () {
      assert.throws(() => memcachedStore({ servers: [] }), /option "servers" must be/)
      assert.throws(() => memcachedStore({ servers: 'a b:1' }), /option "servers" must be .*got "a b:1"/)
      assert.throws(() => memcachedStore({ client: {} as never }), /option "client" must be a memjs Client, got an object \(Object\)/)
      assert.throws(() => memcachedStore({} as never), /needs a "client"/)
    })
  })
})
