/** test/CHECKLIST.md F (items 50–53): invalidation by unsafe methods and by pattern, on every store. */
import { expect } from 'chai'
import { Cluster, Redis } from 'ioredis'
import { hostPart, storageKey } from '../../../src/key.js'
import { invalidate } from '../../../src/route.js'
import { memcachedStore } from '../../../src/stores/memcached.js'
import { redisStore } from '../../../src/stores/redis.js'
import type { Store } from '../../../src/types.js'
import { mapStore } from '../../../examples/custom-store/store.js'
import { closeAll, eventually, landed, rawRequest, setup, sleep, slowWrites, storeFactories, type Harness, type StoreFactory } from '../../support/app.js'
import { monitorRedis } from '../../support/monitor.js'
import { getMemcached, getMemcached2, type RedisCluster, type RedisServer } from '../../support/servers.js'

const CC60 = { 'Cache-Control': 'max-age=60' }

/** Polls `store` for `ms` milliseconds and fails if `key` is ever present. */
async function neverHeld(store: Store, key: string, ms: number): Promise<void> {
  for (const until = Date.now() + ms; Date.now() < until; await sleep(5)) {
    const bytes = await store.get(key)
    expect(bytes ?? undefined, `${key} is in the store`).to.equal(undefined)
  }
}

/** GET a raw path (no client-side encoding), returning status, body and X-Cache. */
async function raw(h: Harness, path: string, headers: Record<string, string> = {}) {
  const res = await rawRequest(h.port, path, headers)
  const i = res.rawHeaders.findIndex((v, k) => k % 2 === 0 && v.toLowerCase() === 'x-cache')
  return { status: res.status, body: res.body.toString(), cache: i === -1 ? undefined : res.rawHeaders[i + 1] }
}

/** A second store on the same backend and prefix as `h`'s: what another process would open. */
async function sameBackend(s: StoreFactory, h: Harness): Promise<{ store: Store; close(): Promise<void> }> {
  const created = h.created!
  const prefix = created.prefix!
  if (s.name === 'redis') {
    const server = created.server as RedisServer
    const client = new Redis(server.port, server.host, { maxRetriesPerRequest: 1 })
    client.on('error', () => {})
    return { store: redisStore({ client, prefix }), close: async () => void client.disconnect() }
  }
  if (s.name === 'redis-cluster') {
    const server = created.server as RedisCluster
    const client = new Cluster([...server.startupNodes], { redisOptions: { maxRetriesPerRequest: 1 } })
    client.on('error', () => {})
    return { store: redisStore({ client, prefix }), close: async () => void client.disconnect() }
  }
  const servers = s.name === 'memcached-2' ? [await getMemcached(), await getMemcached2()] : [await getMemcached()]
  const store = memcachedStore(
    { servers: servers.map((m) => m.address) },
    { prefix, maxItemSize: Math.min(...servers.map((m) => m.itemSize)) - 4096, clientOptions: { logger: { log() {} } } },
  )
  return { store, close: async () => void (await store.close()) }
}

for (const s of storeFactories) {
  describe(`checklist F — invalidation (on ${s.name})`, function () {
    afterEach(closeAll)

    const unsafe: [string, number][] = [
      ['post', 201],
      ['put', 200],
      ['patch', 200],
      ['delete', 204],
      // Node's HTTP parser only accepts methods it knows, so an unknown method cannot reach the app;
      // PURGE is one it parses and cachet treats like any other non-GET/HEAD method.
      ['purge', 200],
    ]
    for (const [method, status] of unsafe) {
      it(`50: unsafe success invalidates — ${method.toUpperCase()} /r answered ${status} drops /r and all its variants`, async () => {
        const h = await setup(s)
        h.O.script = (n, req) =>
          req.method === 'GET' ? { headers: { ...CC60, Vary: 'Accept-Language' }, body: `${req.headers['accept-language']}-v${n}` } : { status }
        await h.get('/r', { 'Accept-Language': 'en' }).expect(200, 'en-v1')
        await h.get('/r', { 'Accept-Language': 'de' }).expect(200, 'de-v2')
        await h.get('/r?page=2', { 'Accept-Language': 'en' }).expect(200, 'en-v3')
        await h.get('/r', { 'Accept-Language': 'en' }).expect(200, 'en-v1').expect('X-Cache', 'HIT')
        await h.agent[method as 'post']('/r').expect(status).expect('X-Cache', 'BYPASS')
        expect(h.O.calls).to.equal(4)
        await h.get('/r', { 'Accept-Language': 'en' }).expect(200, 'en-v5').expect('X-Cache', 'MISS')
        await h.get('/r', { 'Accept-Language': 'de' }).expect(200, 'de-v6').expect('X-Cache', 'MISS')
        await h.get('/r?page=2', { 'Accept-Language': 'en' }).expect(200, 'en-v7').expect('X-Cache', 'MISS')
        expect(h.O.calls).to.equal(7)
      })
    }

    for (const status of [400, 500]) {
      it(`51: unsafe failure does not invalidate — POST /r answered ${status}, the next GET /r is a HIT`, async () => {
        const h = await setup(s)
        h.O.script = (_n, req) => (req.method === 'GET' ? { headers: CC60 } : { status })
        await h.get('/r').expect(200, 'v1')
        await h.agent.post('/r').expect(status).expect('X-Cache', 'BYPASS')
        await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
        expect(h.O.calls).to.equal(2)
      })
    }

    it('52a: Location and Content-Location of a 201 invalidate those same-origin URLs', async () => {
      const h = await setup(s)
      h.O.script = (_n, req) =>
        req.method === 'GET' ? { headers: CC60 } : { status: 201, headers: { Location: '/items/7', 'Content-Location': '/items/7?v=1' } }
      await h.get('/items/7').expect(200, 'v1')
      await h.get('/items/7?v=1').expect(200, 'v2')
      await h.get('/items/8').expect(200, 'v3')
      await h.get('/items/7').expect('X-Cache', 'HIT')
      await h.get('/items/7?v=1').expect('X-Cache', 'HIT')
      await h.agent.post('/items').expect(201)
      await h.get('/items/7').expect(200, 'v5').expect('X-Cache', 'MISS')
      await h.get('/items/7?v=1').expect(200, 'v6').expect('X-Cache', 'MISS')
      await h.get('/items/8').expect(200, 'v3').expect('X-Cache', 'HIT')
    })

    it('52b: a Location on another origin touches nothing on that origin', async () => {
      const h = await setup(s)
      h.O.script = (_n, req) => (req.method === 'GET' ? { headers: CC60 } : { status: 201, headers: { Location: 'https://other.test/items/7' } })
      await h.get('/items/7', { Host: 'other.test' }).expect(200, 'v1')
      await h.get('/items/7').expect(200, 'v2')
      await h.agent.post('/items').expect(201)
      await h.get('/items/7', { Host: 'other.test' }).expect(200, 'v1').expect('X-Cache', 'HIT')
      await h.get('/items/7').expect(200, 'v2').expect('X-Cache', 'HIT')
    })

    it("53a: invalidate('users:1:*') removes /users/1 (every query and variant) and /users/1/x, not /users/10", async () => {
      const h = await setup(s)
      h.O.script = (n, req) => ({
        headers: { ...CC60, Vary: 'Accept-Language' },
        body: `${req.url}-${req.headers['accept-language'] ?? ''}-v${n}`,
      })
      const paths = ['/users/1', '/users/1?page=2', '/users/1/x', '/users/10', '/users/10/x']
      for (const path of paths) {
        await h.get(path).expect(200)
        await h.get(path, { 'Accept-Language': 'de' }).expect(200)
      }
      for (const path of paths) await h.get(path).expect('X-Cache', 'HIT')
      await invalidate('users:1:*')
      for (const path of ['/users/1', '/users/1?page=2', '/users/1/x']) {
        await h.get(path).expect('X-Cache', 'MISS')
        await h.get(path, { 'Accept-Language': 'de' }).expect('X-Cache', 'MISS')
      }
      for (const path of ['/users/10', '/users/10/x']) {
        await h.get(path).expect('X-Cache', 'HIT')
        await h.get(path, { 'Accept-Language': 'de' }).expect('X-Cache', 'HIT')
      }
    })

    it('53b: only * is a wildcard — glob characters in patterns are literal and crafted paths neither widen nor dodge a purge', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      const paths = ['/files/a', '/files/b', '/files/a*b', '/files/x:y', '/files/x/y', '/files/[ab]', '/files/a?q=1']
      for (const path of paths) expect((await raw(h, path)).status, path).to.equal(200)
      for (const path of paths) expect((await raw(h, path)).cache, path).to.equal('HIT')
      // Glob syntax other than * is literal: these name no stored key.
      for (const pattern of ['files:[ab]:*', 'files:?:*', 'files:\\a:*']) {
        await h.cache.invalidate(pattern).catch(() => 0)
      }
      for (const path of paths) expect((await raw(h, path)).cache, `${path} after literal patterns`).to.equal('HIT')
      // A purge of /files/x/* does not reach /files/x:y (a ':' in a segment is not a separator).
      await h.cache.invalidate('files:x:*')
      expect((await raw(h, '/files/x/y')).cache).to.equal('MISS')
      expect((await raw(h, '/files/x:y')).cache).to.equal('HIT')
      // A purge of /files/a/* reaches /files/a and its queries, not /files/a*b.
      await h.cache.invalidate('files:a:*')
      expect((await raw(h, '/files/a')).cache).to.equal('MISS')
      expect((await raw(h, '/files/a?q=1')).cache).to.equal('MISS')
      expect((await raw(h, '/files/a*b')).cache).to.equal('HIT')
      expect((await raw(h, '/files/[ab]')).cache).to.equal('HIT')
      // A crafted path cannot dodge a purge of everything under /files.
      await h.cache.invalidate('files:*')
      for (const path of ['/files/b', '/files/a*b', '/files/x:y', '/files/[ab]']) {
        expect((await raw(h, path)).cache, `${path} after files:*`).to.equal('MISS')
      }
    })

    if (s.name === 'redis' || s.name === 'redis-cluster') {
      it('53c: no Redis KEYS or FLUSHDB is ever issued (MONITOR on every node)', async () => {
        const h = await setup(s)
        const server = h.created!.server as RedisServer | RedisCluster
        const ports = 'nodes' in server ? server.nodes.map((n) => n.port) : [server.port]
        const monitor = await monitorRedis(ports)
        try {
          h.O.script = (_n, req) => (req.method === 'GET' ? { headers: { ...CC60, Vary: 'X-V' } } : { status: 204 })
          await h.get('/users/1', { 'X-V': '1' })
          await h.get('/users/1/x')
          await h.agent.delete('/users/1').expect(204)
          await invalidate('users:*')
          await h.cache.delete('users:1:GET')
          await h.cache.clear()
        } finally {
          await monitor.stop()
        }
        const commands = monitor.names()
        expect(commands).to.include('SCAN')
        for (const forbidden of ['KEYS', 'FLUSHDB', 'FLUSHALL']) expect(commands).not.to.include(forbidden)
      })
    }

    it('53d: clear() only removes the keys of its own store (prefix)', async () => {
      const a = await setup(s)
      const b = await setup(s)
      for (const h of [a, b]) h.O.headers = CC60
      await a.get('/r', { Host: 'same.test' }).expect(200, 'v1')
      await b.get('/r', { Host: 'same.test' }).expect(200, 'v1')
      await a.cache.clear()
      await a.get('/r', { Host: 'same.test' }).expect(200, 'v2').expect('X-Cache', 'MISS')
      await b.get('/r', { Host: 'same.test' }).expect(200, 'v1').expect('X-Cache', 'HIT')
    })

    if (s.name !== 'memory') {
      it('53e: across processes — two app instances on one backend see each other’s invalidations', async () => {
        const a = await setup(s)
        const other = await sameBackend(s, a)
        try {
          const b = await setup(s, { store: other.store, clockFrom: a })
          a.O.headers = CC60
          b.O.headers = CC60
          const host = { Host: 'shared.test' }
          await a.get('/users/1', host).expect(200, 'v1').expect('X-Cache', 'MISS')
          await a.get('/users/2', host).expect(200, 'v2')
          await landed(a, 'users:1:GET', 'shared.test')
          await b.get('/users/1', host).expect(200, 'v1').expect('X-Cache', 'HIT')
          expect(b.O.calls).to.equal(0)
          await b.cache.invalidate('users:1:*')
          await a.get('/users/1', host).expect(200, 'v3').expect('X-Cache', 'MISS')
          await a.get('/users/2', host).expect(200, 'v2').expect('X-Cache', 'HIT')
        } finally {
          await closeAll()
          await other.close()
        }
      })

      for (const [name, purge] of [
        ["invalidate('users:1:*')", (h: Harness) => h.cache.invalidate('users:1:*')],
        ["delete('users:1:GET')", (h: Harness) => h.cache.delete('users:1:GET')],
        ["invalidate('*')", (h: Harness) => h.cache.invalidate('*')],
        ['clear()', (h: Harness) => h.cache.clear()],
      ] as const) {
        it(`53f: across processes — a response computed in one process while another ran ${name} is not kept for later requests`, async () => {
          let row = 'old'
          let release!: () => void
          const held = new Promise<void>((resolve) => (release = resolve))
          let reached = 0
          const a = await setup(s, { routes: (app) => app.get('/users/:id', (_req, res) => void res.set(CC60).send(row)) })
          const other = await sameBackend(s, a)
          try {
            const b = await setup(s, {
              store: other.store,
              clockFrom: a,
              routes: (app) =>
                app.get('/users/:id', async (_req, res) => {
                  reached++
                  const read = row
                  await held
                  res.set(CC60).send(read)
                }),
            })
            const host = { Host: 'shared.test' }
            const inFlight = b.get('/users/1', host).then((r) => r)
            await eventually(() => reached === 1, 'the request in the other process to reach its app')
            row = 'new'
            // Times compare across processes: the invalidation comes a moment after that request began.
            a.clock.advance(1000)
            await purge(a)
            a.clock.advance(1000)
            release()
            expect((await inFlight).text).to.equal('old')
            // The other process's write lands after the purge, and is taken back.
            await eventually(() => b.cache.stats().stores >= 1, "the other process's write to land")
            await eventually(async () => (await a.get('/users/1', host)).text === 'new', 'the old response to leave the store')
            await a.get('/users/1', host).expect(200, 'new').expect('X-Cache', 'HIT')
            await b.get('/users/1', host).expect(200, 'new').expect('X-Cache', 'HIT')
          } finally {
            await closeAll()
            await other.close()
          }
        })
      }
    }
  })
}

describe('checklist F — invalidation (on a store whose writes land after the response)', function () {
  afterEach(closeAll)

  for (const [name, purge] of [
    ['clear()', (h: Harness) => h.cache.clear()],
    ["invalidate('r:*')", (h: Harness) => h.cache.invalidate('r:*')],
    ["delete('r:GET')", (h: Harness) => h.cache.delete('r:GET')],
  ] as const) {
    it(`53: ${name} while the entry's write is still on its way — the entry never comes back`, async () => {
      const store = slowWrites(50)
      const h = await setup(storeFactories[0], { store })
      h.O.headers = { 'Cache-Control': 'max-age=60' }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      await purge(h) // the write of v1 has not landed yet
      await h.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
      await store.settled()
      // v1's late write is deleted again when it lands; that may take v2 with it (a miss, never
      // a stale entry), but v1 is never served again.
      for (let i = 0; i < 2; i++) {
        const res = await h.get('/r').expect(200)
        expect(res.text).not.to.equal('v1')
      }
    })

    it(`53: once ${name} has resolved, the store never holds the entry whose write was on its way`, async () => {
      const store = slowWrites(50)
      const h = await setup(storeFactories[0], { store, options: { storeTimeout: '1s' } })
      h.O.headers = { 'Cache-Control': 'max-age=60' }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      await purge(h) // resolves only after v1's write has landed and been deleted again
      await neverHeld(store, storageKey('r:GET', hostPart(h.host)), 150)
    })
  }

  it('50: a POST is answered only once the write of the entry it invalidates has landed and been deleted again', async () => {
    const store = slowWrites(50)
    const h = await setup(storeFactories[0], { store, options: { storeTimeout: '1s' } })
    h.O.script = (n, req) => (req.method === 'GET' ? { headers: CC60, body: `v${n}` } : { status: 204 })
    await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
    await h.agent.post('/r').expect(204).expect('X-Cache', 'BYPASS') // v1's write is still on its way
    // Another process reading the store after the POST's response must not find v1 there.
    await neverHeld(store, storageKey('r:GET', hostPart(h.host)), 150)
    const res = await h.get('/r').expect(200)
    expect(res.text).not.to.equal('v1')
  })
})

describe('checklist F — invalidation (on a store whose pattern deletion takes a while)', function () {
  afterEach(closeAll)

  it('50: an entry stored after a POST whose invalidation is still running survives that invalidation', async () => {
    // Like SCAN + UNLINK: matching keys go at once, and again when the sweep ends 100 ms later,
    // taking keys written in between with them.
    const inner = mapStore()
    const store: Store = {
      ...inner,
      async deleteMatching(pattern) {
        const now = await inner.deleteMatching(pattern)
        await sleep(100)
        return Number(now) + Number(await inner.deleteMatching(pattern))
      },
    }
    const h = await setup(storeFactories[0], { store, realTime: true, options: { storeTimeout: '30ms', lockTimeout: '1s' } })
    h.O.script = (n, req) => (req.method === 'GET' ? { headers: CC60, body: `v${n}` } : { status: 204 })
    await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
    await h.agent.post('/r').expect(204).expect('X-Cache', 'BYPASS') // answered after storeTimeout, sweep still running
    await h.get('/r').expect(200, 'v3').expect('X-Cache', 'MISS')
    await sleep(250) // the sweep has ended, and the write that waited for it has landed
    await h.get('/r').expect(200, 'v3').expect('X-Cache', 'HIT')
  })
})
