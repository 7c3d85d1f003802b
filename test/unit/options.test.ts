/** Options are checked once, at construction: a TypeError names the option and shows the value. */
import { expect } from 'chai'
import {
  responseCache,
  cacheRoute,
  cached,
  createCache,
  dynamodbStore,
  invalidate,
  invalidateTags,
  memoryStore,
  memcachedStore,
  postgresStore,
  redisStore,
  sqliteStore,
} from '../../src/index.js'
import { parseDuration } from '../../src/options.js'

describe('responseCache(options)', () => {
  const bad: Array<[string, unknown, RegExp]> = [
    ['ttl', -1, /option "ttl" .*got -1/],
    ['ttl', '30', /option "ttl" .*got "30"/],
    ['ttl', '5 minutes', /option "ttl" .*got "5 minutes"/],
    ['ttl', NaN, /option "ttl"/],
    ['store', {}, /option "store" must implement/],
    ['coder', { encode: 1 }, /option "coder" must implement/],
    ['key', 'url', /option "key" must be a function, got "url"/],
    ['maxBodySize', -5, /option "maxBodySize" .*got -5/],
    ['maxBodySize', 1.5, /option "maxBodySize"/],
    ['maxKeyLength', 0, /option "maxKeyLength" .*got 0/],
    ['statusCodes', [200, 'x'], /option "statusCodes"/],
    ['statusCodes', [206], /option "statusCodes" cannot include 206/],
    ['statusHeader', 'X Cache', /option "statusHeader" must be a header name or false, got "X Cache"/],
    ['storeTimeout', 0, /option "storeTimeout" must be longer than 0/],
    ['lockTimeout', '1 sec', /option "lockTimeout"/],
    ['maxVariants', 0, /option "maxVariants"/],
    ['heuristicFraction', 2, /option "heuristicFraction" must be a number from 0 to 1, got 2/],
    ['maxHeuristicTtl', true, /option "maxHeuristicTtl" .*got true/],
    ['storeSetCookie', 'yes', /option "storeSetCookie" must be true or false, got "yes"/],
    ['surrogate', 'my cache', /option "surrogate" must be true, false or a device token .*got "my cache"/],
    ['surrogate', 1, /option "surrogate" .*got 1/],
    ['onError', 42, /option "onError" must be a function, got 42/],
    ['now', 'today', /option "now" must be a function/],
  ]
  for (const [name, value, message] of bad) {
    it(`should throw a TypeError for ${name}: ${JSON.stringify(value) ?? String(value)}`, () => {
      expect(() => responseCache({ [name]: value } as never)).to.throw(TypeError, message)
    })
  }
  it('should reject an unknown option by name', () => {
    expect(() => responseCache({ tll: 5 } as never)).to.throw(TypeError, /unknown option "tll"/)
  })
  it('should reject options that are not an object', () => {
    expect(() => responseCache('5m' as never)).to.throw(TypeError, /must be an object, got "5m"/)
  })
  it('should accept every documented option', () => {
    const cache = responseCache({
      store: memoryStore(),
      ttl: '5m',
      key: (req) => req.url ?? '',
      maxBodySize: 10,
      maxKeyLength: 100,
      statusCodes: [200],
      statusHeader: false,
      storeTimeout: '50ms',
      lockTimeout: 1,
      maxVariants: 2,
      heuristicFraction: 0,
      maxHeuristicTtl: '1h',
      storeSetCookie: true,
      surrogate: 'edge-1',
      onError: () => {},
      now: () => 0,
    })
    expect(cache).to.be.a('function')
    return cache.close()
  })
})

describe('cacheRoute(ttl, options)', () => {
  it('should accept seconds, unit strings, 0 and false', () => {
    for (const ttl of [30, '500ms', '30s', '5m', '1h', '1d', 0, false] as const) expect(cacheRoute(ttl)).to.be.a('function')
  })
  it('should throw a TypeError naming the bad ttl', () => {
    expect(() => cacheRoute('soon' as never)).to.throw(TypeError, /cacheRoute\(ttl\) .*got "soon"/)
    expect(() => cacheRoute(true as never)).to.throw(TypeError, /cacheRoute\(ttl\) .*got true/)
  })
  it('should throw a TypeError for a bad route option', () => {
    expect(() => cacheRoute(5, { key: 'x' } as never)).to.throw(TypeError, /cacheRoute option "key" must be a function/)
    expect(() => cacheRoute(5, { allowCookies: 1 } as never)).to.throw(TypeError, /cacheRoute option "allowCookies"/)
    expect(() => cacheRoute(5, { colour: 1 } as never)).to.throw(TypeError, /unknown option "colour"/)
  })
})

describe('memoryStore(options)', () => {
  it('should throw a TypeError naming a bad cap', () => {
    expect(() => memoryStore({ maxBytes: 0 })).to.throw(TypeError, /"maxBytes" must be a positive integer, got 0/)
    expect(() => memoryStore({ maxEntries: Infinity })).to.throw(TypeError, /"maxEntries" must be a positive integer, got Infinity/)
  })
})

describe('parseDuration()', () => {
  it('should read a number as seconds and strings by their unit', () => {
    expect(parseDuration(30, 'x')).to.equal(30_000)
    expect(parseDuration(0.5, 'x')).to.equal(500)
    expect(parseDuration('500ms', 'x')).to.equal(500)
    expect(parseDuration('30s', 'x')).to.equal(30_000)
    expect(parseDuration('5m', 'x')).to.equal(300_000)
    expect(parseDuration('1h', 'x')).to.equal(3_600_000)
    expect(parseDuration('1d', 'x')).to.equal(86_400_000)
    expect(parseDuration('1.5s', 'x')).to.equal(1500)
  })
  it('should reject anything else', () => {
    for (const v of ['30', '', 'ms', '-1s', '1w', '1e3s', null, {}, [], Infinity, -0.1]) {
      expect(() => parseDuration(v, 'option "ttl"'), String(v)).to.throw(TypeError, /option "ttl"/)
    }
  })
})

/** The error a call throws or rejects with. */
async function errorOf(run: () => unknown): Promise<Error> {
  try {
    await run()
  } catch (error) {
    return error as Error
  }
  throw new Error('expected an error, got none')
}

describe('store factories(options)', () => {
  describe('when an option is unknown or misspelt', () => {
    it('should throw a TypeError from memoryStore() naming it and the close name', () => {
      expect(() => memoryStore({ maxByte: 1 } as never)).to.throw(TypeError, /memoryStore: unknown option "maxByte" \(did you mean "maxBytes"\?\)/)
      expect(() => memoryStore({ colour: 1 } as never)).to.throw(TypeError, /memoryStore: unknown option "colour"$/)
    })
    it('should throw a TypeError from redisStore() naming it, in either argument', () => {
      expect(() => redisStore({ url: 'redis://127.0.0.1:1', prefx: 'a:' } as never)).to.throw(
        TypeError,
        /redisStore: unknown option "prefx" \(did you mean "prefix"\?\)/,
      )
      expect(() => redisStore({ url: 'redis://127.0.0.1:1' }, { hotbytes: 0 } as never)).to.throw(
        TypeError,
        /redisStore: unknown option "hotbytes" \(did you mean "hotBytes"\?\)/,
      )
      expect(() => redisStore({ url: 'redis://127.0.0.1:1' }, { servers: 'x' } as never)).to.throw(TypeError, /redisStore: unknown option "servers"/)
    })
    it('should throw a TypeError from memcachedStore() naming it, in either argument', () => {
      expect(() => memcachedStore({ servers: '127.0.0.1:1', maxItemSzie: 1 } as never)).to.throw(
        TypeError,
        /memcachedStore: unknown option "maxItemSzie" \(did you mean "maxItemSize"\?\)/,
      )
      expect(() => memcachedStore({ servers: '127.0.0.1:1' }, { url: 'memcached://x' } as never)).to.throw(TypeError, /memcachedStore: unknown option "url"/)
    })
    it('should throw a TypeError from sqliteStore(), postgresStore() and dynamodbStore() naming it, in either argument', () => {
      expect(() => sqliteStore({ path: '/nonexistent/never-opened.db', maxEntrie: 5 } as never)).to.throw(
        TypeError,
        /sqliteStore: unknown option "maxEntrie" \(did you mean "maxEntries"\?\)/,
      )
      expect(() => sqliteStore({ path: '/nonexistent/never-opened.db' }, { path: 'x' } as never)).to.throw(TypeError, /sqliteStore: unknown option "path"/)
      expect(() => postgresStore({ connectionString: 'postgres://127.0.0.1:1/x', tabel: 't' } as never)).to.throw(
        TypeError,
        /postgresStore: unknown option "tabel" \(did you mean "table"\?\)/,
      )
      expect(() => postgresStore({ connectionString: 'postgres://127.0.0.1:1/x' }, { ttl: 5 } as never)).to.throw(
        TypeError,
        /postgresStore: unknown option "ttl"/,
      )
      const client = { send: async () => ({}) }
      expect(() => dynamodbStore({ client, table: 'cache', consistentread: false } as never)).to.throw(
        TypeError,
        /dynamodbStore: unknown option "consistentread" \(did you mean "consistentRead"\?\)/,
      )
      expect(() => dynamodbStore({ client, table: 'cache' }, { table: 'other' } as never)).to.throw(TypeError, /dynamodbStore: unknown option "table"/)
    })
  })

  describe('when a custom store lacks a required method', () => {
    it('should name the missing methods', () => {
      const store = { get() {}, set() {}, delete() {} }
      expect(() => responseCache({ store } as never)).to.throw(TypeError, /option "store" .*missing deleteMatching\b/)
      expect(() => responseCache({ store: { get() {} } } as never)).to.throw(TypeError, /option "store" .*missing set, delete, deleteMatching\b/)
      expect(() => responseCache({ store: { get: 1, set() {}, delete() {}, deleteMatching() {} } } as never)).to.throw(
        TypeError,
        /option "store" .*missing get\b/,
      )
    })
  })
})

describe('invalidate(pattern)', () => {
  describe('when the pattern is written as a path', () => {
    it('should reject with a TypeError that shows the key form', async () => {
      const error = await errorOf(() => invalidate('/posts/*'))
      expect(error).to.be.instanceOf(TypeError)
      expect(error.message).to.match(/"\/posts\/\*" is a path, not a cache key.*did you mean "posts:\*"\?/)
    })
    it('should suggest the key form of a path without a wildcard, and of the root', async () => {
      expect((await errorOf(() => invalidate('/posts/42'))).message).to.include('did you mean "posts:42:*"?')
      expect((await errorOf(() => invalidate('/'))).message).to.include('did you mean "*"?')
      expect((await errorOf(() => invalidate('/posts/42/'))).message).to.include('did you mean "posts:42:*"?')
    })
    it("should be rejected by cache.invalidate(), cache.delete() and a store's deleteMatching() too", async () => {
      const cache = responseCache()
      try {
        expect(await errorOf(() => cache.invalidate('/posts/*'))).to.be.instanceOf(TypeError)
        expect((await errorOf(() => cache.delete('/posts/42'))).message).to.include('did you mean "posts:42:GET"?')
        expect(await errorOf(() => memoryStore().deleteMatching('/posts/*'))).to.be.instanceOf(TypeError)
      } finally {
        await cache.close()
      }
    })
  })
  describe('when the pattern is a key', () => {
    it('should resolve', async () => {
      expect(await invalidate('posts:*')).to.equal(0)
      expect(await invalidate('posts:42:GET')).to.equal(0)
    })
  })
})

describe('invalidation options ({ soft })', () => {
  it('should be checked alike by every invalidate() and invalidateTags(), naming the option', async () => {
    const cache = responseCache()
    const values = createCache()
    try {
      const calls: [string, () => unknown][] = [
        ['invalidate', () => invalidate('posts:*', { soft: 'yes' } as never)],
        ['invalidateTags', () => invalidateTags(['post:1'], { soft: 'yes' } as never)],
        ['cache.invalidate', () => cache.invalidate('posts:*', { soft: 'yes' } as never)],
        ['cache.invalidateTags', () => cache.invalidateTags(['post:1'], { soft: 'yes' } as never)],
        ['values.invalidate', () => values.invalidate('posts:*', { soft: 'yes' } as never)],
        ['values.invalidateTags', () => values.invalidateTags(['post:1'], { soft: 'yes' } as never)],
      ]
      for (const [name, call] of calls) {
        const error = await errorOf(call)
        expect(error, name).to.be.instanceOf(TypeError)
        expect(error.message, name).to.equal(`${name.replace(/^(cache|values)\./, '')} option "soft" must be true or false, got "yes"`)
      }
      for (const [name, call] of [
        ['values.invalidateTags', () => values.invalidateTags(['post:1'], { sfot: true } as never)],
        ['cache.invalidate', () => cache.invalidate('posts:*', { sfot: true } as never)],
      ] as [string, () => unknown][]) {
        expect((await errorOf(call)).message, name).to.match(/unknown option "sfot" \(did you mean "soft"\?\)/)
      }
      expect((await errorOf(() => values.invalidateTags(['post:1'], null as never))).message).to.equal('invalidateTags options must be an object, got null')
    } finally {
      await cache.close()
      await values.close()
    }
    // The module-level functions check them before any cache is asked, so also with none open.
    expect((await errorOf(() => invalidate('posts:*', { soft: 1 } as never))).message).to.equal('invalidate option "soft" must be true or false, got 1')
    expect((await errorOf(() => invalidateTags(['a'], [] as never))).message).to.equal('invalidateTags options must be an object, got []')
  })
})

describe('misspelt options of responseCache(), cacheRoute(), createCache() and cached()', () => {
  it('should name the option probably meant', () => {
    expect(() => responseCache({ storeTimout: 5 } as never)).to.throw(
      TypeError,
      /responseCache: unknown option "storeTimout" \(did you mean "storeTimeout"\?\)/,
    )
    expect(() => cacheRoute(5, { overide: true } as never)).to.throw(TypeError, /cacheRoute: unknown option "overide" \(did you mean "override"\?\)/)
    expect(() => createCache({ lockTimout: 5 } as never)).to.throw(TypeError, /createCache: unknown option "lockTimout" \(did you mean "lockTimeout"\?\)/)
    expect(() => cached(async () => 1, { namspace: 'x' } as never)).to.throw(TypeError, /cached: unknown option "namspace" \(did you mean "namespace"\?\)/)
  })
})
