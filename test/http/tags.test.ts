/** Cache tags and soft purge: Surrogate-Key / Cache-Tag / cacheRoute({ tags }), invalidateTags(), soft invalidation, onInvalidate, on every store and across processes. */
import { randomUUID } from 'node:crypto'
import { expect } from 'chai'
import { Redis } from 'ioredis'
import memjs from 'memjs'
import { invalidate, invalidateTags, cacheRoute } from '../../src/route.js'
import { memcachedStore } from '../../src/stores/memcached.js'
import { redisStore } from '../../src/stores/redis.js'
import type { InvalidationEvent } from '../../src/options.js'
import { RECORD_PREFIX } from '../../src/pattern.js'
import type { Store } from '../../src/types.js'
import { mapStore } from '../../examples/custom-store/store.js'
import { closeAll, eventually, setup, sleep, storeFactories, type Harness, type StoreFactory } from '../support/app.js'
import { getMemcached, getRedis, type RedisServer } from '../support/servers.js'

const STORES = storeFactories.filter((s) => s.name === 'memory' || s.name === 'redis' || s.name === 'memcached')
const CC60 = { 'Cache-Control': 'max-age=60' }
/** One host for two processes' requests: the host is part of the key. */
const SITE = { Host: 'site.example' }

/** A second store on the same backend and prefix as `h`'s: what another process would open. */
async function sameBackend(s: StoreFactory, h: Harness, local?: object): Promise<{ store: Store; close(): Promise<void> }> {
  const prefix = h.created?.prefix ?? (h.store as Store & { prefix: string }).prefix
  if (s.name === 'redis') {
    const server = h.created!.server as RedisServer
    const client = new Redis(server.port, server.host, { maxRetriesPerRequest: 1 })
    client.on('error', () => {})
    const store = redisStore({ client, prefix, local })
    return { store, close: async () => void (await store.close(), client.disconnect()) }
  }
  const m = await getMemcached()
  const store = memcachedStore({ servers: [m.address] }, { prefix, local, maxItemSize: m.itemSize - 4096, clientOptions: { logger: { log() {} } } })
  return { store, close: async () => void (await store.close()) }
}

for (const s of STORES) {
  describe(`cache tags (on ${s.name})`, function () {
    this.timeout(20_000)
    afterEach(closeAll)

    describe("when responses carry Surrogate-Key, Cache-Tag or a route's tags", () => {
      it('should drop every entry carrying a tag on invalidateTags(), whatever its path, and keep the others', async () => {
        const h = await setup(s, {
          routes: (app, O) => {
            app.get('/posts/:id', cacheRoute('1m', { tags: (req) => [`post:${(req as unknown as { params: { id: string } }).params.id}`] }), O.handle)
            app.use(O.handle)
          },
        })
        h.O.script = (_n, req) => {
          if (req.url === '/posts') return { headers: { ...CC60, 'Surrogate-Key': 'posts post:42 post:7' } }
          if (req.url === '/feed') return { headers: { ...CC60, 'Cache-Tag': 'feed, post:42' } }
          if (req.url === '/about') return { headers: CC60 }
          return { headers: {} }
        }
        for (const path of ['/posts', '/feed', '/posts/42', '/about']) await h.get(path).expect('X-Cache', 'MISS')
        for (const path of ['/posts', '/feed', '/posts/42', '/about']) await h.get(path).expect('X-Cache', 'HIT')
        const calls = h.O.calls
        await invalidateTags(['post:42'])
        for (const path of ['/posts', '/feed', '/posts/42']) await h.get(path).expect('X-Cache', 'MISS')
        await h.get('/about').expect('X-Cache', 'HIT')
        expect(h.O.calls).to.equal(calls + 3)
      })

      it('should take the tag headers off what clients receive, unless forwardTags is set', async () => {
        const h = await setup(s)
        h.O.headers = { ...CC60, 'Surrogate-Key': 'a b', 'Cache-Tag': 'c' }
        const miss = await h.get('/t').expect('X-Cache', 'MISS')
        const hit = await h.get('/t').expect('X-Cache', 'HIT')
        for (const res of [miss, hit]) {
          expect(res.headers['surrogate-key']).to.equal(undefined)
          expect(res.headers['cache-tag']).to.equal(undefined)
        }
        const f = await setup(s, { options: { forwardTags: true } })
        f.O.headers = { ...CC60, 'Surrogate-Key': 'a b' }
        expect((await f.get('/t').expect('X-Cache', 'MISS')).headers['surrogate-key']).to.equal('a b')
        expect((await f.get('/t').expect('X-Cache', 'HIT')).headers['surrogate-key']).to.equal('a b')
        await f.cache.invalidateTags(['b'])
        await f.get('/t').expect('X-Cache', 'MISS')
      })

      it('should reach every variant and every host of a tagged key', async () => {
        const h = await setup(s)
        h.O.headers = { ...CC60, Vary: 'Accept-Language', 'Surrogate-Key': 'page' }
        for (const lang of ['en', 'fr']) await h.get('/v', { 'Accept-Language': lang }).expect('X-Cache', 'MISS')
        await h.get('/v', { Host: 'other.example' }).expect('X-Cache', 'MISS')
        await h.cache.invalidateTags(['page'])
        for (const lang of ['en', 'fr']) await h.get('/v', { 'Accept-Language': lang }).expect('X-Cache', 'MISS')
        await h.get('/v', { Host: 'other.example' }).expect('X-Cache', 'MISS')
      })
    })

    describe('when a tag is purged softly', () => {
      it('should revalidate the entry, and keep it on a 304', async () => {
        const h = await setup(s)
        h.O.script = (n) => ({ status: n === 2 ? 304 : 200, headers: { ...CC60, ETag: '"p"', 'Surrogate-Key': 'soft' } })
        await h.get('/s').expect(200, 'v1')
        await h.cache.invalidateTags(['soft'], { soft: true })
        h.clock.advance(1000)
        await h.get('/s').expect(200, 'v1').expect('X-Cache', 'REVALIDATED')
        await sleep(30)
        await h.get('/s').expect(200, 'v1').expect('X-Cache', 'HIT')
        expect(h.O.calls).to.equal(2)
      })

      it('should serve stale while one background refresh runs, when the entry allows stale-while-revalidate', async () => {
        const h = await setup(s)
        h.O.script = (n) => ({ headers: { 'Cache-Control': 'max-age=60, stale-while-revalidate=60', 'Surrogate-Key': 'swr' }, delay: n === 2 ? 100 : 0 })
        await h.get('/w').expect(200, 'v1')
        await h.cache.invalidateTags(['swr'], { soft: true })
        h.clock.advance(1000)
        const all = await Promise.all(Array.from({ length: 5 }, () => h.get('/w')))
        for (const res of all) expect(res.headers['x-cache']).to.equal('STALE')
        await eventually(() => h.O.calls === 2, 'the background refresh')
        await sleep(150)
        expect(h.O.calls).to.equal(2)
        await h.get('/w').expect(200, 'v2').expect('X-Cache', 'HIT')
      })
    })

    describe('when a request for a tagged key is computing while its tag is invalidated', () => {
      it('should not store the old response afterwards', async () => {
        let row = 'old'
        let release!: () => void
        const held = new Promise<void>((resolve) => (release = resolve))
        let calls = 0
        const h = await setup(s, {
          routes: (app) =>
            app.get('/r', async (_req, res) => {
              calls++
              const read = row
              if (calls === 1) await held
              res.set({ ...CC60, 'Surrogate-Key': 'row' }).send(read)
            }),
        })
        const first = h.get('/r').then((r) => r)
        await eventually(() => calls === 1, 'the first request to reach the app')
        row = 'new'
        await invalidateTags(['row'])
        release()
        expect((await first).text).to.equal('old')
        await sleep(50)
        await h.get('/r').expect(200, 'new')
      })
    })

    if (s.name !== 'memory') {
      describe('when another process shares the store', () => {
        it('should invalidate there too, hard and soft', async () => {
          const a = await setup(s)
          const other = await sameBackend(s, a)
          try {
            const b = await setup(s, { store: other.store, clockFrom: a })
            for (const h of [a, b]) h.O.headers = { ...CC60, ETag: '"x"', 'Surrogate-Key': 'shared' }
            await a.get('/x', { Host: 'site.example' }).expect('X-Cache', 'MISS')
            await eventually(async () => (await b.get('/x', { Host: 'site.example' })).headers['x-cache'] === 'HIT', 'the entry in the other process')
            await a.cache.invalidateTags(['shared'])
            // Tag marks compare times across processes: the next request comes a moment later.
            b.clock.advance(1000)
            await b.get('/x', { Host: 'site.example' }).expect('X-Cache', 'MISS')
            await sleep(50)
            await b.get('/x', { Host: 'site.example' }).expect('X-Cache', 'HIT')
            a.clock.advance(2000)
            await a.cache.invalidateTags(['shared'], { soft: true })
            b.clock.advance(2000)
            b.O.status = 304
            await b.get('/x', { Host: 'site.example' }).expect('X-Cache', 'REVALIDATED')
          } finally {
            await other.close()
          }
        })

        it('should keep both marks when two processes invalidate one tag at once', async () => {
          const a = await setup(s)
          const other = await sameBackend(s, a)
          // B's reads of the cache's records answer only once A's invalidation has landed: B read
          // the tag's mark before A wrote it, and writes after A did.
          let holding = false
          let release!: () => void
          const released = new Promise<void>((resolve) => (release = resolve))
          let sent!: () => void
          const readSent = new Promise<void>((resolve) => (sent = resolve))
          const held: Store = {
            ...other.store,
            get(key) {
              const answer = other.store.get(key)
              if (!holding || !key.startsWith(RECORD_PREFIX)) return answer
              sent()
              return released.then(() => answer)
            },
          }
          try {
            const b = await setup(s, { store: held, clockFrom: a })
            for (const h of [a, b]) h.O.headers = { ...CC60, ETag: '"x"', 'Surrogate-Key': 'shared' }
            await a.get('/x', SITE).expect('X-Cache', 'MISS')
            await eventually(async () => (await b.get('/x', SITE)).headers['x-cache'] === 'HIT', 'the entry in the other process')
            holding = true
            const soft = b.cache.invalidateTags(['shared'], { soft: true })
            // Through setIf, B needs no read first: its purge may end before A's begins.
            await Promise.race([readSent, soft])
            await a.cache.invalidateTags(['shared'])
            release()
            await soft
            holding = false
            b.clock.advance(1000)
            b.O.status = 304
            // A's hard purge holds in B, which itself made only a soft one: a MISS, not a revalidation.
            await b.get('/x', SITE).expect('X-Cache', 'MISS')
            expect(b.O.seen.at(-1)!.headers['if-none-match']).to.equal(undefined)
          } finally {
            release()
            await other.close()
          }
        })

        it('should keep both marks when one process invalidates one tag twice at once, on a store without setIf', async () => {
          const base = await setup(s)
          const [one, two] = [await sameBackend(s, base), await sameBackend(s, base)]
          try {
            // A custom store without compare-and-set: the cache reads each mark, then writes it.
            const a = await setup(s, { store: { ...one.store, setIf: undefined } })
            const b = await setup(s, { store: two.store, clockFrom: a })
            for (const h of [a, b]) h.O.headers = { ...CC60, ETag: '"x"', 'Surrogate-Key': 'shared' }
            await a.get('/x', SITE).expect('X-Cache', 'MISS')
            await eventually(async () => (await b.get('/x', SITE)).headers['x-cache'] === 'HIT', 'the entry in the other process')
            await Promise.all([a.cache.invalidateTags(['shared']), a.cache.invalidateTags(['shared'], { soft: true })])
            b.clock.advance(1000)
            b.O.status = 304
            // The hard purge holds in the other process: a MISS, not a revalidation.
            await b.get('/x', SITE).expect('X-Cache', 'MISS')
            expect(b.O.seen.at(-1)!.headers['if-none-match']).to.equal(undefined)
          } finally {
            await one.close()
            await two.close()
          }
        })

        for (const tier of [false, true]) {
          it(`should mark entries stale there too on a soft pattern purge, ${tier ? 'when both processes have the local tier' : 'without a local tier'}`, async () => {
            const base = await setup(s)
            const local = !tier ? undefined : s.name === 'redis' ? { heartbeat: 50 } : { ttl: 200 }
            const [one, two] = [await sameBackend(s, base, local), await sameBackend(s, base, local)]
            try {
              const a = await setup(s, { store: one.store })
              const b = await setup(s, { store: two.store, clockFrom: a })
              for (const h of [a, b]) h.O.headers = { ...CC60, ETag: '"p"' }
              await a.get('/posts/1', { Host: 'site.example' }).expect('X-Cache', 'MISS')
              await eventually(async () => (await b.get('/posts/1', { Host: 'site.example' })).headers['x-cache'] === 'HIT', 'the entry in the other process')
              await a.cache.invalidate('posts:*', { soft: true })
              b.clock.advance(1000)
              b.O.status = 304
              const calls = b.O.calls
              await eventually(
                async () => (await b.get('/posts/1', { Host: 'site.example' })).headers['x-cache'] === 'REVALIDATED',
                'the soft purge in the other process',
                5000,
              )
              expect(b.O.calls).to.equal(calls + 1)
              await b.get('/posts/1', { Host: 'site.example' }).expect('X-Cache', 'HIT')
              // Another soft purge, of a namespace not holding the key: the entry stays fresh.
              a.clock.advance(1000)
              await a.cache.invalidate('users:*', { soft: true })
              b.clock.advance(1000)
              await b.get('/posts/1', { Host: 'site.example' }).expect('X-Cache', 'HIT')
              if (!tier) {
                // Without the tier there is no bound to wait for: the very next request sees a purge.
                a.clock.advance(1000)
                await a.cache.invalidate('posts:1:*', { soft: true })
                b.clock.advance(1000)
                await b.get('/posts/1', { Host: 'site.example' }).expect('X-Cache', 'REVALIDATED')
              }
            } finally {
              await one.close()
              await two.close()
            }
          })
        }

        it('should invalidate there too when that process has the local tier, within the tier’s bound', async () => {
          const a = await setup(s)
          // Redis: the tier's bound is 2 × heartbeat; memcached: local.ttl.
          const other = await sameBackend(s, a, s.name === 'redis' ? { heartbeat: 50 } : { ttl: 200 })
          try {
            const b = await setup(s, { store: other.store, clockFrom: a })
            for (const h of [a, b]) h.O.headers = { ...CC60, ETag: '"x"', 'Surrogate-Key': 'tiered' }
            await a.get('/t', { Host: 'site.example' }).expect('X-Cache', 'MISS')
            await eventually(async () => (await b.get('/t', { Host: 'site.example' })).headers['x-cache'] === 'HIT', 'the entry in the other process')
            const calls = b.O.calls
            await a.cache.invalidateTags(['tiered'])
            b.clock.advance(1000)
            await eventually(
              async () => (await b.get('/t', { Host: 'site.example' })).headers['x-cache'] === 'MISS',
              'the invalidation in the other process',
              5000,
            )
            expect(b.O.calls).to.equal(calls + 1)
          } finally {
            await other.close()
          }
        })
      })
    }
  })
}

/**
 * A memjs client whose GETs are answered in rounds: each GET goes to memcached at once, but its
 * answer waits until every GET sent while no answer came back has been answered too, and all of
 * them are answered together. `rounds` then counts the round trips that followed one another;
 * `hold()` makes each round wait for a `step()` (or `release()`).
 */
function steppedClient(inner: memjs.Client) {
  const counts = { rounds: 0, gets: 0, keys: [] as string[] }
  type Reply = { value: Buffer | null }
  let waiting: { reply: Promise<Reply>; settle: (result: PromiseSettledResult<Reply>) => void }[] = []
  let held = false
  const parked: (() => void)[] = []
  const answer = async () => {
    const round = waiting
    waiting = []
    counts.rounds++
    const results = await Promise.allSettled(round.map((w) => w.reply))
    if (held) await new Promise<void>((resolve) => parked.push(resolve))
    round.forEach((w, i) => w.settle(results[i]))
  }
  const client = {
    servers: inner.servers,
    get(key: string): Promise<Reply> {
      counts.gets++
      counts.keys.push(key)
      const reply = inner.get(key) as Promise<Reply>
      // Handled when its round is answered.
      reply.catch(() => undefined)
      return new Promise((resolve, reject) => {
        if (waiting.length === 0) setImmediate(answer)
        waiting.push({ reply, settle: (r) => (r.status === 'fulfilled' ? resolve(r.value) : reject(r.reason)) })
      })
    },
    set: (key: string, value: string | Buffer, options: { expires?: number }) => inner.set(key, value, options),
    add: (key: string, value: string | Buffer, options: { expires?: number }) => inner.add(key, value, options),
    delete: (key: string) => inner.delete(key),
    close: () => inner.close(),
  }
  return {
    client,
    counts,
    parked,
    hold: () => void (held = true),
    step: () => parked.shift()?.(),
    release() {
      held = false
      for (const resume of parked.splice(0)) resume()
    },
  }
}

describe('tagged HITs on memcached', function () {
  this.timeout(20_000)
  afterEach(closeAll)
  const memcached = storeFactories.find((s) => s.name === 'memcached')!
  /** Wait until `h` has written `n` responses to the store: HITs read memcached from then on. */
  const landed = (h: Harness, n: number) => eventually(() => h.cache.stats().stores >= n, `${n} writes to land`)

  async function steppedSetup(): Promise<{ h: Harness; stepped: ReturnType<typeof steppedClient>; close(): void }> {
    const server = await getMemcached()
    const inner = memjs.Client.create(server.address, { logger: { log() {} }, retries: 1 })
    const stepped = steppedClient(inner)
    const store = memcachedStore({ client: stepped.client }, { prefix: `tags-${randomUUID().slice(0, 8)}:`, maxItemSize: server.itemSize - 4096 })
    const h = await setup(memcached, { store })
    h.O.script = (_n, req) => ({
      headers: req.url!.startsWith('/tagged/') ? { ...CC60, ETag: '"t"', 'Surrogate-Key': `items item:${req.url!.split('/')[2]}` } : CC60,
    })
    return { h, stepped, close: () => inner.close() }
  }

  it('should take no more round trips to memcached than an untagged HIT', async () => {
    const { h, stepped, close } = await steppedSetup()
    try {
      // Tags invalidated before: their marks exist in memcached, as in any app that uses them.
      await h.cache.invalidateTags(['items', 'item:1'])
      h.clock.advance(1000)
      for (const path of ['/plain/1', '/tagged/1']) await h.get(path).expect('X-Cache', 'MISS')
      await landed(h, 2)
      const hit = async (path: string) => {
        stepped.counts.rounds = 0
        stepped.counts.keys.length = 0
        await h.get(path).expect('X-Cache', 'HIT')
        return { rounds: stepped.counts.rounds, keys: [...stepped.counts.keys] }
      }
      const plain = await hit('/plain/1')
      expect(plain.rounds).to.equal(2)
      // The MISS wrote the entry's tags down here: their marks are read with it.
      for (let i = 0; i < 2; i++) {
        const tagged = await hit('/tagged/1')
        expect(tagged.rounds).to.equal(plain.rounds)
        // Each memcached key once: the namespaces both marks and the entry share are read once.
        expect(new Set(tagged.keys).size, tagged.keys.join(' ')).to.equal(tagged.keys.length)
        // Beyond the untagged HIT's GETs: the two marks, kept outside namespace generations.
        expect(tagged.keys.length).to.equal(plain.keys.length + 2)
      }
    } finally {
      close()
    }
  })

  it("should read its namespaces' soft marks once per soft pattern purge, not on every hit", async () => {
    const { h, stepped, close } = await steppedSetup()
    try {
      await h.get('/plain/1').expect('X-Cache', 'MISS')
      await landed(h, 1)
      const rounds = async () => {
        stepped.counts.rounds = 0
        await h.get('/plain/1').expect('X-Cache', 'HIT')
        return stepped.counts.rounds
      }
      expect(await rounds()).to.equal(2)
      h.clock.advance(1000)
      await h.cache.invalidate('users:*', { soft: true })
      // The record of soft pattern purges is newer than the entry: its namespaces' marks are read.
      expect(await rounds()).to.equal(3)
      // None covers it, and the record has not changed since: nothing more to read.
      expect(await rounds()).to.equal(2)
      expect(await rounds()).to.equal(2)
    } finally {
      close()
    }
  })

  it('should read the marks of tags the entry gained since this process last read it', async () => {
    const { h, close } = await steppedSetup()
    const other = await sameBackend(memcached, h)
    try {
      const b = await setup(memcached, { store: other.store, clockFrom: h })
      await h.get('/tagged/1', SITE).expect('X-Cache', 'MISS')
      await landed(h, 1)
      await h.get('/tagged/1', SITE).expect('X-Cache', 'HIT')
      // Another process replaces the entry with one carrying another tag.
      b.O.headers = { ...CC60, 'Surrogate-Key': 'renamed' }
      b.clock.advance(1000)
      await b.cache.invalidate('tagged:1:GET#*')
      await b.get('/tagged/1', SITE).expect('X-Cache', 'MISS')
      await landed(b, 1)
      h.clock.advance(1000)
      await h.get('/tagged/1', SITE).expect('X-Cache', 'HIT')
      b.clock.advance(1000)
      await b.cache.invalidateTags(['renamed'])
      h.clock.advance(1000)
      await h.get('/tagged/1', SITE).expect('X-Cache', 'MISS')
    } finally {
      await other.close()
      close()
    }
  })

  it('should never judge an entry by a mark read sent before its request began', async () => {
    const { h, stepped, close } = await steppedSetup()
    const other = await sameBackend(memcached, h)
    try {
      const b = await setup(memcached, { store: other.store, clockFrom: h })
      await h.get('/tagged/7').expect('X-Cache', 'MISS')
      await landed(h, 1)
      await h.get('/tagged/7').expect('X-Cache', 'HIT')
      // The first request's reads: every round trip of it sent to memcached, the answers held.
      stepped.hold()
      const first = h.get('/tagged/7').then((res) => res)
      await eventually(() => stepped.parked.length === 1, 'the first round trip')
      stepped.step()
      await eventually(() => stepped.parked.length === 1, 'the second round trip')
      // Another process invalidates the tag; a request that begins afterwards must see it.
      b.clock.advance(1000)
      await b.cache.invalidateTags(['item:7'])
      h.clock.advance(1000)
      const gets = stepped.counts.gets
      const second = h.get('/tagged/7').then((res) => res)
      await eventually(() => stepped.counts.gets > gets, 'the second request to read')
      stepped.release()
      await first
      expect((await second).headers['x-cache']).to.equal('MISS')
    } finally {
      stepped.release()
      await other.close()
      close()
    }
  })
})

describe('tagged HITs on Redis', function () {
  this.timeout(20_000)
  afterEach(closeAll)

  it('should send one command to Redis, as an untagged HIT does', async () => {
    const server = await getRedis()
    const client = new Redis(server.port, server.host, { maxRetriesPerRequest: 1 })
    client.on('error', () => {})
    const sent: string[] = []
    const send = client.sendCommand.bind(client)
    client.sendCommand = ((command: { name: string }, stream?: unknown) => (sent.push(command.name), send(command as never, stream as never))) as never
    try {
      const store = redisStore({ client }, { prefix: `tags-${randomUUID().slice(0, 8)}:` })
      const h = await setup(
        storeFactories.find((f) => f.name === 'redis')!,
        { store },
      )
      h.O.script = (_n, req) => ({ headers: req.url!.startsWith('/tagged/') ? { ...CC60, 'Surrogate-Key': 'items item:1' } : CC60 })
      // Tags invalidated before: their marks exist in Redis, as in any app that uses them.
      await h.cache.invalidateTags(['items', 'item:1'])
      h.clock.advance(1000)
      for (const path of ['/plain/1', '/tagged/1']) await h.get(path).expect('X-Cache', 'MISS')
      await eventually(() => h.cache.stats().stores >= 2, 'two writes to land')
      const hit = async (path: string) => {
        sent.length = 0
        await h.get(path).expect('X-Cache', 'HIT')
        return [...sent]
      }
      // Redis learns the scripts the first time they run (EVAL after NOSCRIPT): count afterwards.
      for (const path of ['/plain/1', '/tagged/1']) await hit(path)
      const plain = await hit('/plain/1')
      expect(plain).to.have.length(1)
      for (let i = 0; i < 2; i++) expect(await hit('/tagged/1')).to.deep.equal(plain)
    } finally {
      client.disconnect()
    }
  })
})

describe('invalidateTags() round trips on Redis', function () {
  this.timeout(20_000)
  afterEach(closeAll)

  it('should send one command per tag when this process wrote its mark last, two when another process did', async () => {
    const server = await getRedis()
    const prefix = `tags-${randomUUID().slice(0, 8)}:`
    const clients = [0, 1].map(() => new Redis(server.port, server.host, { maxRetriesPerRequest: 1 }))
    const sent: string[] = []
    const send = clients[0].sendCommand.bind(clients[0])
    clients[0].sendCommand = ((command: { name: string }, stream?: unknown) => (sent.push(command.name), send(command as never, stream as never))) as never
    try {
      const redis = storeFactories.find((f) => f.name === 'redis')!
      const a = await setup(redis, { store: redisStore({ client: clients[0] }, { prefix }) })
      const b = await setup(redis, { store: redisStore({ client: clients[1] }, { prefix }), clockFrom: a })
      // Redis learns the script the first time it runs (EVAL after NOSCRIPT): count afterwards.
      await a.cache.invalidateTags(['warm'])
      const purge = async (tags: string[]) => {
        sent.length = 0
        a.clock.advance(1000)
        await a.cache.invalidateTags(tags)
        return sent.length
      }
      expect(await purge(['posts'])).to.equal(1)
      expect(await purge(['posts'])).to.equal(1)
      expect(await purge(['posts', 'users'])).to.equal(2)
      // B's clock is now 1 s ahead of A's, so B's purge writes a later time over A's mark.
      b.clock.advance(4000)
      await b.cache.invalidateTags(['posts'])
      a.clock.advance(5000)
      expect(await purge(['posts'])).to.equal(2)
      expect(await purge(['posts'])).to.equal(1)
    } finally {
      for (const client of clients) client.disconnect()
    }
  })
})

describe('invalidateTags() cost', () => {
  afterEach(closeAll)

  it('should take two store calls per tag, whatever the number of entries it covers', async () => {
    const inner = mapStore()
    let calls = 0
    const counted: Store = {
      ...inner,
      get: async (key) => (calls++, inner.get(key)),
      set: async (key, value, ttl) => (calls++, inner.set(key, value, ttl)),
      delete: async (key) => (calls++, inner.delete(key)),
      deleteMatching: async (pattern) => (calls++, inner.deleteMatching(pattern)),
    }
    const h = await setup(storeFactories[0], { store: counted })
    h.O.headers = { ...CC60, 'Surrogate-Key': 'many' }
    for (let i = 0; i < 200; i++) await h.get(`/m/${i}`)
    calls = 0
    await h.cache.invalidateTags(['many'])
    expect(calls).to.equal(2)
    await h.get('/m/7').expect('X-Cache', 'MISS')
  })

  it('should record a purge on the memory store without touching its entries', async () => {
    const h = await setup(storeFactories[0])
    h.O.headers = { ...CC60, 'Surrogate-Key': 'big' }
    for (let i = 0; i < 300; i++) await h.get(`/b/${i}`)
    const before = h.cache.stats().entries
    await h.cache.invalidateTags(['big'])
    expect(h.cache.stats().entries).to.equal(before)
    await h.get('/b/1').expect('X-Cache', 'MISS')
  })
})

describe('soft pattern invalidation and onInvalidate', () => {
  afterEach(closeAll)

  it('should mark matching entries stale with invalidate(pattern, { soft: true })', async () => {
    const h = await setup(storeFactories[0])
    h.O.script = (n) => ({ status: n === 2 ? 304 : 200, headers: { ...CC60, ETag: '"q"' } })
    await h.get('/posts/1').expect(200, 'v1')
    await invalidate('posts:*', { soft: true })
    h.clock.advance(1000)
    await h.get('/posts/1').expect('X-Cache', 'REVALIDATED')
    await h.get('/posts/1').expect('X-Cache', 'HIT')
  })

  it('should tell onInvalidate of every invalidation: patterns, tags, soft or hard, and unsafe requests', async () => {
    const events: InvalidationEvent[] = []
    const h = await setup(storeFactories[0], { options: { onInvalidate: (event) => void events.push(event) } })
    await h.cache.invalidate('posts:*')
    await h.cache.invalidateTags(['post:1'], { soft: true })
    await h.agent.post('/posts/1').expect(200)
    expect(events[0]).to.deep.equal({ patterns: ['posts:*'], soft: false, source: 'invalidate' })
    expect(events[1]).to.deep.equal({ tags: ['post:1'], soft: true, source: 'invalidateTags' })
    expect(events[2].source).to.equal('request')
    expect(events[2].patterns).to.include('posts:1:GET#*')
  })

  it('should reject invalid tags with a TypeError', async () => {
    const h = await setup(storeFactories[0])
    for (const bad of [[], [''], 'post:1', [1]]) {
      let caught: unknown
      try {
        await h.cache.invalidateTags(bad as string[])
      } catch (error) {
        caught = error
      }
      expect(caught, JSON.stringify(bad)).to.be.instanceOf(TypeError)
    }
  })
})
