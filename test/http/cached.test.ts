/** cached(): the wrapped function's signature, its keys, coalescing, rejections and a failing store. */
import { expect } from 'chai'
import { cached, createCache, invalidate, StoreTimeoutError, UnkeyableArgumentError, type Store, type ValueCache } from '../../src/index.js'
import { cacheKey } from '../../src/cached.js'
import { storeFactories, type CreatedStore } from '../support/stores.js'
import { serve } from '../support/app.js'
import { createApp as postsAndQueries } from '../../examples/posts-and-queries/app.js'

/** A store timeout no loaded test machine reaches, where a test is not about timeouts. */
const SLOW_MACHINE = '2s'
const factories = storeFactories.filter((f) => f.name === 'memory' || f.name === 'redis' || f.name === 'memcached')

async function waitFor(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

function gate() {
  let open!: () => void
  const promise = new Promise<void>((resolve) => (open = resolve))
  return { promise, open }
}

// Type-level checks, compiled by `tsc --noEmit` (tsconfig includes test/): the wrapper has the
// wrapped function's exact type.
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
function assertType<T extends true>(_proof?: T): void {}
interface Post {
  id: number
  title: string
}
declare const listPosts: (page: number, filter?: { author?: string }) => Promise<Post[]>
declare const countSync: (tag: string) => number
assertType<Equal<ReturnType<typeof cached<typeof listPosts>>, typeof listPosts>>()
assertType<Equal<ReturnType<typeof cached<typeof countSync>>, (tag: string) => Promise<number>>>()

describe('cached()', () => {
  const caches: ValueCache[] = []
  const cacheFor = (options: Parameters<typeof createCache>[0] = {}) => {
    const cache = createCache(options)
    caches.push(cache)
    return cache
  }
  afterEach(async () => {
    for (const cache of caches.splice(0)) await cache.close()
  })

  describe('when it is constructed', () => {
    it('should refuse an anonymous function without namespace or key', () => {
      expect(() => cached(async () => 1)).to.throw(TypeError, /anonymous function needs the "namespace" or "key" option/)
      expect(() => cached(async () => 1, { namespace: 'n' })).not.to.throw()
      expect(() => cached(async () => 1, { key: () => 'k' })).not.to.throw()
    })
    it('should refuse bad options with a TypeError naming them', () => {
      async function f() {
        return 1
      }
      expect(() => cached(f, { ttl: -1 })).to.throw(TypeError, /cached option "ttl"/)
      expect(() => cached(f, { cacheRejections: 'often' })).to.throw(TypeError, /cached option "cacheRejections"/)
      expect(() => cached(f, { namespace: 'a*' })).to.throw(TypeError, /"namespace".*"a\*"/)
      expect(() => cached(f, { namespace: 'a', key: () => 'k' })).to.throw(TypeError, /"key" or "namespace", not both/)
      expect(() => cached(f, { cache: {} as ValueCache })).to.throw(TypeError, /option "cache" must be a cache made by createCache/)
      expect(() => cached(f, { tags: ['x'] } as never)).to.throw(TypeError, /option "tags" must be a function/)
      expect(() => cached(f, { tag: () => [] } as never)).to.throw(TypeError, /unknown option "tag"/)
      expect(() => cached('f' as never)).to.throw(TypeError, /fn must be a function/)
    })
  })

  describe('when it builds the default key', () => {
    it('should be `<namespace>:<canonical arguments>`, object keys sorted', () => {
      expect(cacheKey('posts:list', [1])).to.equal('posts:list:1')
      expect(cacheKey('q', [])).to.equal('q:')
      expect(cacheKey('q', ['a', 2, true, null, undefined, 3n])).to.equal('q:"a",2,true,null,undefined,3n')
      expect(cacheKey('q', [{ b: 1, a: [1, { d: 2, c: 3 }] }])).to.equal(cacheKey('q', [{ a: [1, { c: 3, d: 2 }], b: 1 }]))
      expect(cacheKey('q', [new Date(0)])).to.equal('q:Date(1970-01-01T00:00:00.000Z)')
      expect(
        cacheKey('q', [
          new Map([
            ['b', 1],
            ['a', 2],
          ]),
        ]),
      ).to.equal(
        cacheKey('q', [
          new Map([
            ['a', 2],
            ['b', 1],
          ]),
        ]),
      )
      expect(cacheKey('q', [new Set([2, 1])])).to.equal('q:Set[1,2]')
      expect(cacheKey('q', ['1'])).not.to.equal(cacheKey('q', [1]))
      expect(cacheKey('q', ['a', 'b'])).not.to.equal(cacheKey('q', ['a,"b']))
      for (const text of ['plain', 'a"b', 'a\\b', 'line\nbreak', '\u0001', '\ud800 lone', 'pair 😀', 'é']) {
        expect(cacheKey('q', [text]), text).to.equal('q:' + JSON.stringify(text))
        expect(cacheKey('q', [{ [text]: 1, a: 2 }]), text).to.equal(
          'q:{' +
            [
              [JSON.stringify('a'), '2'],
              [JSON.stringify(text), '1'],
            ]
              .sort((x, y) => (JSON.parse(x[0]) < JSON.parse(y[0]) ? -1 : 1))
              .map((p) => p.join(':'))
              .join(',') +
            '}',
        )
      }
    })
    it('should escape wildcard and separator characters and hash a long argument part', () => {
      expect(cacheKey('q', ['a*b?c#d%'])).to.equal('q:"a%2Ab%3Fc%23d%25"')
      expect(cacheKey('q', ['%2A'])).not.to.equal(cacheKey('q', ['*']))
      const long = cacheKey('q', ['x'.repeat(500)])
      expect(long).to.match(/^q:~[A-Za-z0-9_-]{43}$/)
      expect(long).not.to.equal(cacheKey('q', ['x'.repeat(501)]))
    })
  })

  describe('when arguments have no stable key', () => {
    it('should reject with UnkeyableArgumentError naming the argument, without calling fn', async () => {
      let calls = 0
      const find = cached(
        async function find(_q: unknown) {
          calls++
          return 1
        },
        { cache: cacheFor() },
      )
      const cyclic: Record<string, unknown> = {}
      cyclic.self = cyclic
      class Query {
        a = 1
      }
      for (const [arg, what] of [
        [() => 1, /argument #1 is a function/],
        [Symbol('s'), /a symbol/],
        [cyclic, /#1.self is a cycle/],
        [new Query(), /an instance of Query/],
        [{ deep: [1, () => 2] }, /#1.deep\[1\] is a function/],
      ] as const) {
        const error = await find(arg).then(
          () => undefined,
          (e: Error) => e,
        )
        expect(error).to.be.instanceOf(UnkeyableArgumentError)
        expect(error).to.be.instanceOf(TypeError)
        expect(error!.message)
          .to.match(what)
          .and.match(/pass the "key" option/)
      }
      expect(calls).to.equal(0)
    })
    it('should key such calls with a key function', async () => {
      let calls = 0
      const find = cached(async (q: { run(): number }) => ++calls + q.run(), { cache: cacheFor(), key: () => 'find:all' })
      expect(await find({ run: () => 10 })).to.equal(11)
      expect(await find({ run: () => 20 })).to.equal(11)
    })
  })

  for (const factory of factories) {
    describe(`on the ${factory.name} store`, () => {
      let created: CreatedStore
      beforeEach(async () => {
        created = await factory.create()
      })
      afterEach(async () => {
        for (const cache of caches.splice(0)) await cache.close()
        await created.cleanup()
      })

      describe('when it is called again with equal arguments', () => {
        it('should call fn once, whatever the order of object keys', async () => {
          const cache = cacheFor({ store: created.store, storeTimeout: SLOW_MACHINE })
          let calls = 0
          const search = cached(
            async function search(page: number, filter: { a?: number; b?: number }) {
              calls++
              return { page, filter }
            },
            { cache },
          )
          const first = await search(1, { a: 1, b: 2 })
          await waitFor(async () => (await cache.get(cacheKey('search', [1, { a: 1, b: 2 }]))) !== undefined)
          expect(await search(1, { b: 2, a: 1 })).to.deep.equal(first)
          expect(calls).to.equal(1)
          await search(2, { a: 1, b: 2 })
          expect(calls).to.equal(2)
        })
        it('should store under `<namespace>:<args>` so invalidate(`<namespace>:*`) drops the results', async () => {
          const cache = cacheFor({ store: created.store, storeTimeout: SLOW_MACHINE })
          let version = 0
          const listPosts = cached(async (page: number) => [`v${++version}`, page], { cache, namespace: 'posts:list' })
          expect(await listPosts(1)).to.deep.equal(['v1', 1])
          await waitFor(async () => (await cache.get('posts:list:1')) !== undefined)
          expect(await listPosts(1)).to.deep.equal(['v1', 1])
          await invalidate('posts:*')
          expect(await listPosts(1)).to.deep.equal(['v2', 1])
        })
      })

      describe('when many callers miss at once', () => {
        it('should call fn once and give every caller its result', async () => {
          const cache = cacheFor({ store: created.store, storeTimeout: SLOW_MACHINE })
          const held = gate()
          let calls = 0
          const load = cached(
            async function load(id: number) {
              calls++
              await held.promise
              return { id }
            },
            { cache },
          )
          const callers = Array.from({ length: 25 }, () => load(7))
          await waitFor(() => calls === 1)
          held.open()
          const results = await Promise.all(callers)
          expect(calls).to.equal(1)
          expect(results.every((r) => r.id === 7)).to.equal(true)
        })
      })

      describe('when fn rejects', () => {
        it('should pass the rejection on and call fn again next time', async () => {
          const cache = cacheFor({ store: created.store, storeTimeout: SLOW_MACHINE })
          let calls = 0
          const flaky = cached(
            async function flaky() {
              if (++calls === 1) throw new Error('first call fails')
              return 'ok'
            },
            { cache },
          )
          await flaky().then(
            () => expect.fail('resolved'),
            (e: Error) => expect(e.message).to.equal('first call fails'),
          )
          expect(await flaky()).to.equal('ok')
          expect(calls).to.equal(2)
        })
        it('should store the rejection when cacheRejections is set', async () => {
          const cache = cacheFor({ store: created.store, storeTimeout: SLOW_MACHINE })
          let calls = 0
          const missing = cached(
            async function missing(id: number): Promise<string> {
              calls++
              throw new RangeError(`no post ${id}`)
            },
            { cache, cacheRejections: '30s' },
          )
          await missing(4).catch(() => undefined)
          await waitFor(async () => {
            const error = await missing(4).then(
              () => undefined,
              (e: Error) => e,
            )
            return calls === 1 && error?.name === 'RangeError' && error.message === 'no post 4'
          })
        })
      })

      if (factory.name !== 'memory') {
        describe('when the store server stops answering', () => {
          it('should call fn after storeTimeout and report the timeout', async () => {
            const errors: Error[] = []
            const cache = cacheFor({ store: created.store, storeTimeout: '50ms', lockTimeout: '1h', onError: (e) => errors.push(e) })
            let calls = 0
            const load = cached(
              async function load(id: number) {
                calls++
                return `row ${id}`
              },
              { cache },
            )
            expect(await load(1)).to.equal('row 1')
            await created.server!.pause()
            try {
              expect(await load(2)).to.equal('row 2')
              expect(calls).to.equal(2)
              expect(errors.some((e) => e instanceof StoreTimeoutError)).to.equal(true)
            } finally {
              created.server!.resume()
            }
          })
        })
      }

      describe('when staleWhileRevalidate is set', () => {
        it('should answer with the stale result while fn runs once in the background', async () => {
          let now = 1_700_000_000_000
          const cache = cacheFor({ store: created.store, storeTimeout: SLOW_MACHINE, now: () => now })
          let calls = 0
          const held = gate()
          const stats = cached(
            async function stats() {
              if (++calls > 1) await held.promise
              return calls
            },
            { cache, ttl: '10s', staleWhileRevalidate: '10m' },
          )
          expect(await stats()).to.equal(1)
          await waitFor(async () => (await cache.get('stats:')) === 1)
          now += 60_000
          expect(await Promise.all([stats(), stats()])).to.deep.equal([1, 1])
          await waitFor(() => calls === 2)
          held.open()
          const seen: unknown[] = []
          await waitFor(async () => {
            const v = await stats()
            seen.push(v)
            return v === 2
          }).catch(async (e) => {
            console.log('DEBUG calls', calls, seen.slice(0, 5), seen.length, cache.stats())
            throw e
          })
          expect(calls).to.equal(2)
        })
      })
    })
  }

  describe('when the store fails', () => {
    it('should call fn within storeTimeout and send the error to onError', async () => {
      const errors: Error[] = []
      const never = () => new Promise<never>(() => {})
      const stalled: Store = { get: never, set: never, delete: never, deleteMatching: never }
      const cache = cacheFor({ store: stalled, storeTimeout: '20ms', lockTimeout: '1h', onError: (e) => errors.push(e) })
      let calls = 0
      const load = cached(
        async function load(id: number) {
          calls++
          return id * 2
        },
        { cache },
      )
      expect(await load(21)).to.equal(42)
      expect(calls).to.equal(1)
      expect(errors.some((e) => e instanceof StoreTimeoutError)).to.equal(true)
    })
    it('should call fn when the store throws', async () => {
      const errors: Error[] = []
      const broken: Store = {
        get: () => Promise.reject(new Error('connection refused')),
        set: () => Promise.reject(new Error('connection refused')),
        delete: () => Promise.reject(new Error('connection refused')),
        deleteMatching: () => Promise.reject(new Error('connection refused')),
      }
      const load = cached(
        async function load() {
          return 'fresh'
        },
        { cache: cacheFor({ store: broken, onError: (e) => errors.push(e) }) },
      )
      expect(await load()).to.equal('fresh')
      expect(errors.map((e) => e.message)).to.include('connection refused')
    })
  })
})

describe('examples/posts-and-queries', () => {
  for (const factory of factories) {
    describe(`when both caches share the ${factory.name} store`, () => {
      it('should drop the cached GET /posts and the cached listPosts() with one invalidate()', async () => {
        const created = await factory.create()
        const { app, stats, close } = postsAndQueries(created.store)
        const served = await serve(app)
        try {
          await served.agent.get('/posts').expect(200).expect('X-Cache', 'MISS')
          await served.agent.get('/posts').expect(200).expect('X-Cache', 'HIT')
          expect((await served.agent.get('/summary').expect(200)).body).to.deep.equal({ firstPage: 1 })
          expect(stats).to.deep.equal({ queries: 1, renders: 1 })

          await served.agent.post('/posts').send({ title: 'Two' }).expect(201)
          // The query result is gone: /summary (no response caching) runs the query again.
          expect((await served.agent.get('/summary').expect(200)).body).to.deep.equal({ firstPage: 2 })
          expect(stats.queries).to.equal(2)
          // The response is gone too: rendered again, from the query result /summary just stored.
          const after = await served.agent.get('/posts').expect(200).expect('X-Cache', 'MISS')
          expect(after.body.map((p: { title: string }) => p.title)).to.deep.equal(['Hello', 'Two'])
          expect(stats).to.deep.equal({ queries: 2, renders: 2 })
        } finally {
          await served.close()
          await close()
          await created.cleanup()
        }
      })
    })
  }
})
