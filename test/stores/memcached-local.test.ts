/**
 * memcachedStore({ local }) and memcachedStore locks on a real memcached, with two store instances
 * on separate clients standing for two processes; and misses coalesced across two apps.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import memjs from 'memjs'
import { memcachedStore, type LocalMemcachedStore, type MemcachedStore } from '../../src/stores/memcached.js'
import type { Store } from '../../src/types.js'
import { runStoreContract } from '../support/store-contract.js'
import { getMemcached } from '../support/servers.js'
import { spyOnWire } from '../support/memjs-wire.js'
import { closeAll, eventually, fakeClock, setup, storeFactories, type Harness } from '../support/app.js'

const unique = () => `ml${randomUUID().slice(0, 8)}:`
const quiet = { log() {} }
const text = (bytes: Uint8Array | undefined | null) => (bytes == null ? undefined : Buffer.from(bytes).toString())

/** A memjs client that counts the requests it sends (see spyOnWire). */
function countingClient(address: string) {
  const client = memjs.Client.create(address, { logger: quiet, retries: 1, timeout: 0.5 })
  const { sent } = spyOnWire(client)
  return {
    client,
    counts: {
      get sent() {
        return sent.length
      },
    },
  }
}

describe('memcachedStore({ local })', function () {
  this.timeout(20_000)
  let address: string
  const clients: memjs.Client[] = []
  const stores: LocalMemcachedStore[] = []

  before(async function () {
    this.timeout(30_000)
    address = (await getMemcached()).address
  })

  afterEach(async function () {
    for (const store of stores.splice(0)) {
      await store.clear().catch(() => undefined)
      await store.close()
    }
    for (const client of clients.splice(0)) client.close()
  })

  /** Two processes on one prefix; B has the local tier and runs on a clock the test moves. */
  function pair(local: { ttl?: number; maxBytes?: number } = {}, options: { generationCacheMs?: number } = {}) {
    const prefix = unique()
    const clock = fakeClock()
    const a = countingClient(address)
    const b = countingClient(address)
    clients.push(a.client, b.client)
    const A = memcachedStore({ client: a.client }, { prefix, local, ...options })
    const B = memcachedStore({ client: b.client }, { prefix, local, now: clock.now, ...options })
    stores.push(A, B)
    return { A, B, b: b.counts, clock }
  }

  describe('when a value is read again within local.ttl', function () {
    it('should answer from process memory with no command sent, the same bytes object each time', async function () {
      const { A, B, b } = pair()
      await A.set('k:GET', Buffer.from('v'), 60_000)
      const first = await B.get('k:GET')
      const before = b.sent
      const again = B.get('k:GET')
      assert.ok(Buffer.isBuffer(again), 'a local hit is answered synchronously, not with a promise')
      assert.equal(again, first)
      assert.equal(b.sent, before, 'commands sent for a local hit')
      assert.equal(text(first), 'v')
    })
  })

  describe('when a key is absent', function () {
    it('should answer the absence from process memory within local.ttl (a tag with no invalidation), and see the key once it exists', async function () {
      const { A, B, b, clock } = pair({ ttl: 1000 })
      assert.equal(await B.get('cachet~tag:post:1'), undefined) // no namespace written yet
      await A.set('other:1', Buffer.from('x'), 60_000)
      assert.equal(await B.get('other:2'), undefined) // namespaces exist, the key does not
      const before = b.sent
      assert.equal(B.get('cachet~tag:post:1'), undefined, 'answered synchronously')
      assert.equal(B.get('other:2'), undefined, 'answered synchronously')
      assert.equal(b.sent, before, 'commands sent for local answers of absent keys')
      await A.set('cachet~tag:post:1', Buffer.from('mark'), 60_000)
      await A.set('other:2', Buffer.from('y'), 60_000)
      clock.advance(1000)
      assert.equal(text((await B.get('cachet~tag:post:1')) ?? null), 'mark')
      assert.equal(text((await B.get('other:2')) ?? null), 'y')
      // This process's own set drops its copy of the absence at once.
      assert.equal(await B.get('mine:1'), undefined)
      await B.set('mine:1', Buffer.from('z'), 60_000)
      assert.equal(text((await B.get('mine:1')) ?? null), 'z')
    })
  })

  describe('when many reads of one key miss the local tier at once', function () {
    it('should send the commands of one read for all of them', async function () {
      const { A, B, b, clock } = pair({ ttl: 1000 })
      await A.set('posts:1:GET', Buffer.from('v'), 60_000)
      let before = b.sent
      const values = await Promise.all(Array.from({ length: 10 }, () => B.get('posts:1:GET')))
      const ten = b.sent - before
      assert.deepEqual(
        values.map((v) => text(v)),
        Array(10).fill('v'),
      )
      clock.advance(1000)
      before = b.sent
      assert.equal(text(await B.get('posts:1:GET')), 'v')
      assert.equal(ten, b.sent - before, 'commands of 10 concurrent reads = commands of 1')
    })
  })

  describe('when another process changes a key', function () {
    it('should serve the new value once local.ttl has passed since the copy was read', async function () {
      const { A, B, clock } = pair({ ttl: 1000 })
      await A.set('k:GET', Buffer.from('old'), 60_000)
      assert.equal(text(await B.get('k:GET')), 'old')
      await A.set('k:GET', Buffer.from('new'), 60_000)
      clock.advance(999)
      assert.equal(text(await B.get('k:GET')), 'old', 'within the stated bound')
      clock.advance(1)
      assert.equal(text(await B.get('k:GET')), 'new')
    })

    it("should stop serving copies after deleteMatching('posts:*') and clear() by another process, within local.ttl", async function () {
      const { A, B, clock } = pair({ ttl: 1000 })
      for (const key of ['posts:GET', 'posts:1:GET', 'users:1:GET']) {
        await A.set(key, Buffer.from(key), 60_000)
        assert.equal(text(await B.get(key)), key)
      }
      await A.deleteMatching('posts:*')
      clock.advance(1000)
      assert.equal(await B.get('posts:GET'), undefined)
      assert.equal(await B.get('posts:1:GET'), undefined)
      assert.equal(text(await B.get('users:1:GET')), 'users:1:GET')
      await A.clear()
      clock.advance(1000)
      assert.equal(await B.get('users:1:GET'), undefined)
    })

    it('should drop a copy at once when the generations this process reads show an invalidation (generationCacheMs)', async function () {
      const { A, B, clock } = pair({ ttl: 60_000 }, { generationCacheMs: 100 })
      await A.set('posts:1:GET', Buffer.from('old'), 60_000)
      assert.equal(text(await B.get('posts:1:GET')), 'old')
      await A.deleteMatching('posts:*')
      // B reads the generations again for another key under posts: and learns the new token.
      clock.advance(100)
      assert.equal(await B.get('posts:2:GET'), undefined)
      assert.equal(await B.get('posts:1:GET'), undefined)
    })
  })

  describe('when this process changes a key', function () {
    it('should drop its own copies at once on set, delete, deleteMatching and clear', async function () {
      const { B } = pair({ ttl: 60_000 })
      await B.set('a:GET', Buffer.from('1'), 60_000)
      assert.equal(text(await B.get('a:GET')), '1')
      await B.set('a:GET', Buffer.from('2'), 60_000)
      assert.equal(text(await B.get('a:GET')), '2')
      await B.delete('a:GET')
      assert.equal(await B.get('a:GET'), undefined)
      await B.set('posts:1:GET', Buffer.from('p'), 60_000)
      assert.equal(text(await B.get('posts:1:GET')), 'p')
      await B.deleteMatching('posts:*')
      assert.equal(await B.get('posts:1:GET'), undefined)
      await B.set('b:GET', Buffer.from('b'), 60_000)
      assert.equal(text(await B.get('b:GET')), 'b')
      await B.clear()
      assert.equal(await B.get('b:GET'), undefined)
    })

    it('should keep no copy from a read that was on its way while this process changed the key', async function () {
      const { B, clock } = pair({ ttl: 60_000 })
      await B.set('k:GET', Buffer.from('old'), 60_000)
      const reading = B.get('k:GET')
      const writing = B.set('k:GET', Buffer.from('new'), 60_000)
      await Promise.all([reading, writing])
      clock.advance(1)
      assert.equal(text(await B.get('k:GET')), 'new')
    })
  })

  describe('options', function () {
    const invalid: [string, unknown, RegExp][] = [
      ['a number', 5, /^memcachedStore option "local" must be false or an object/],
      ['maxBytes 0', { maxBytes: 0 }, /^memcachedStore option "local.maxBytes" must be a positive integer, got 0$/],
      ['ttl -1', { ttl: -1 }, /^memcachedStore option "local.ttl" must be a positive number of milliseconds, got -1$/],
      ['a heartbeat (Redis only)', { heartbeat: 100 }, /^memcachedStore option "local" has an unknown field "heartbeat"/],
    ]
    for (const [what, local, message] of invalid) {
      it(`should reject local with ${what} with a TypeError naming it`, function () {
        assert.throws(
          () => memcachedStore({ servers: address, local: local as never }),
          (error: Error) => {
            assert.ok(error instanceof TypeError)
            assert.match(error.message, message)
            return true
          },
        )
      })
    }
  })

  describe('the Store contract with the local tier on', function () {
    runStoreContract(
      'memcachedStore({ client, local })',
      () => {
        const client = memjs.Client.create(address, { logger: quiet })
        const store = memcachedStore({ client }, { prefix: unique(), local: {} })
        return {
          store,
          async cleanup() {
            await store.clear()
            client.close()
          },
        }
      },
      { patterns: 'namespaces', counts: false, ttl: { ms: 2000, waitMs: 3100 }, keepsRecords: true, setIf: true },
    )
  })
})

describe('memcachedStore lock() and unlock()', function () {
  this.timeout(20_000)
  let address: string
  const stores: MemcachedStore[] = []

  before(async function () {
    this.timeout(30_000)
    address = (await getMemcached()).address
  })

  afterEach(async function () {
    for (const store of stores.splice(0)) await store.close()
  })

  function two(): [MemcachedStore, MemcachedStore] {
    const prefix = unique()
    const made = [0, 1].map(() => memcachedStore({ servers: address, prefix, clientOptions: { logger: quiet } }))
    stores.push(...made)
    return [made[0], made[1]]
  }

  it('should grant a lock to one holder at a time, released only by its token', async function () {
    const [a, b] = two()
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

  it('should let a sub-second lock expire by itself (rounded up to whole seconds, plus one)', async function () {
    const [a, b] = two()
    assert.equal(typeof (await a.lock('k', 300)), 'string')
    assert.equal(await b.lock('k', 300), null)
    await eventually(async () => typeof (await b.lock('k', 300)) === 'string', 'the lock to expire', 5000)
  })

  it('should keep lock keys out of clear()', async function () {
    const [a, b] = two()
    const token = await a.lock('k', 5000)
    await a.clear()
    assert.equal(await b.lock('k', 5000), null)
    assert.equal(await a.unlock('k', token!), true)
  })

  it('should reject a ttl that is not a positive number', async function () {
    const [a] = two()
    await assert.rejects(async () => a.lock('k', 0), /^TypeError: memcachedStore.lock ttlMs must be a positive number, got 0$/)
  })
})

describe('responseCache on memcachedStore, two processes', function () {
  this.timeout(30_000)
  afterEach(closeAll)

  it('should make 1 origin call for 100 concurrent misses split between the two', async function () {
    const factory = storeFactories.find((f) => f.name === 'memcached')!
    const server = await getMemcached()
    const prefix = unique()
    const made: Store[] = [0, 1].map(() => memcachedStore({ servers: server.address, prefix, clientOptions: { logger: quiet } }))
    const options = { storeTimeout: '2s', lockTimeout: '10s' } as const
    const apps: Harness[] = []
    for (const store of made) apps.push(await setup(factory, { store, realTime: true, options }))
    try {
      for (const h of apps) {
        h.O.delay = 50
        h.O.headers = { 'Cache-Control': 'max-age=60' }
      }
      // One public host for both, as behind a load balancer: the Host is part of the key.
      const host = apps[0].host
      const responses = await Promise.all(Array.from({ length: 100 }, (_, i) => apps[i % 2].get('/posts/1', { Host: host }).expect(200)))
      assert.equal(apps[0].O.calls + apps[1].O.calls, 1, `origin calls: ${apps[0].O.calls} + ${apps[1].O.calls}`)
      assert.ok(
        responses.every((r) => r.text === 'v1'),
        'every response is the one origin answer',
      )
    } finally {
      for (const store of made) await store.close?.()
    }
  })
})
