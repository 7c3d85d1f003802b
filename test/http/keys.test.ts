/** The default key over HTTP: one family per resource, key functions that cannot break requests, the `host` option, ignoreParams / onlyParams. */
import { expect } from 'chai'
import express from 'express'
import request from 'supertest'
import { cacheRoute, invalidate, responseCache } from '../../src/index.js'
import { closeAll, express4App, rawRequest, serve, setup, storeFactories, type Harness } from '../support/app.js'

const memory = storeFactories[0]

/** GET a raw path (no client-side encoding), returning status, body and X-Cache. */
async function raw(h: Harness, path: string, headers: Record<string, string> = {}, method = 'GET') {
  const res = await rawRequest(h.port, path, headers, method)
  const i = res.rawHeaders.findIndex((v, k) => k % 2 === 0 && v.toLowerCase() === 'x-cache')
  return { status: res.status, body: res.body.toString(), cache: i === -1 ? undefined : res.rawHeaders[i + 1] }
}

/** GET each path twice: stored by the first request, a HIT on the second. */
async function stored(h: Harness, paths: string[]): Promise<void> {
  for (const p of paths) expect((await raw(h, p)).cache, `first ${p}`).to.equal('MISS')
  for (const p of paths) expect((await raw(h, p)).cache, `second ${p}`).to.equal('HIT')
}

const SPELLINGS = ['/posts/42', '/Posts/42', '/posts/42/', '/posts/%34%32', '/POSTS/%34%32/']

describe('the default key (README "Keys and invalidation")', () => {
  afterEach(closeAll)

  describe('when Express routes several spellings of a path to one handler', () => {
    const routes = (app: express.Express, O: Harness['O']) => {
      app.get('/posts/:id', O.handle)
      app.put('/posts/:id', (_req, res) => void res.status(204).end())
      app.post('/posts', (_req, res) => void res.status(201).set('Location', '/Posts/42/').end())
    }

    it('should invalidate every spelling after PUT /posts/42 (RFC 9111 §4.4)', async () => {
      const h = await setup(memory, { options: { ttl: '1m' }, routes })
      await stored(h, SPELLINGS)
      expect((await raw(h, '/posts/42', {}, 'PUT')).status).to.equal(204)
      for (const p of SPELLINGS) expect((await raw(h, p)).cache, p).to.equal('MISS')
    })

    it('should invalidate every spelling of a same-origin Location target', async () => {
      const h = await setup(memory, { options: { ttl: '1m' }, routes })
      await stored(h, SPELLINGS)
      expect((await raw(h, '/posts', {}, 'POST')).status).to.equal(201)
      for (const p of SPELLINGS) expect((await raw(h, p)).cache, p).to.equal('MISS')
    })

    it("should let invalidate('posts:*') reach every spelling", async () => {
      const h = await setup(memory, { options: { ttl: '1m' }, routes })
      await stored(h, SPELLINGS)
      await invalidate('posts:*')
      for (const p of SPELLINGS) expect((await raw(h, p)).cache, p).to.equal('MISS')
    })

    it("should let cache.delete('posts:42:GET') remove every spelling", async () => {
      const h = await setup(memory, { options: { ttl: '1m' }, routes })
      await stored(h, SPELLINGS)
      expect(await h.cache.delete('posts:42:GET')).to.equal(SPELLINGS.length)
      for (const p of SPELLINGS) expect((await raw(h, p)).cache, p).to.equal('MISS')
    })

    it('should keep spellings whose handlers answer differently apart (req.params, literal routes)', async () => {
      const h = await setup(memory, {
        options: { ttl: '1m' },
        routes: (app) => {
          app.get('/users/:name', (req, res) => void res.send(`user ${req.params.name}`))
          app.get('/items/7', (_req, res) => void res.send('literal'))
          app.get('/items/:id', (req, res) => void res.send(`param ${req.params.id}`))
        },
      })
      expect((await raw(h, '/users/Alice')).body).to.equal('user Alice')
      expect((await raw(h, '/users/alice')).body).to.equal('user alice')
      expect(await raw(h, '/users/Alice')).to.include({ body: 'user Alice', cache: 'HIT' })
      expect((await raw(h, '/items/%37')).body).to.equal('param 7')
      expect((await raw(h, '/items/7')).body).to.equal('literal')
      expect(await raw(h, '/items/%37')).to.include({ body: 'param 7', cache: 'HIT' })
    })

    it('should keep case and trailing slash families apart when the app routes them apart', async () => {
      const h = await setup(memory, {
        options: { ttl: '1m' },
        before: (app) => {
          app.set('case sensitive routing', true)
          app.set('strict routing', true)
        },
        routes: (app, O) => {
          app.get('/posts/:id', O.handle)
          app.get('/posts/:id/', O.handle)
          app.get('/Posts/:id', O.handle)
          app.put('/posts/:id', (_req, res) => void res.status(204).end())
        },
      })
      await stored(h, ['/posts/42', '/posts/42/', '/Posts/42'])
      await raw(h, '/posts/42', {}, 'PUT')
      expect((await raw(h, '/posts/42')).cache).to.equal('MISS')
      expect((await raw(h, '/posts/42/')).cache).to.equal('HIT')
      expect((await raw(h, '/Posts/42')).cache).to.equal('HIT')
    })
  })

  describe('when the app is Express 4', () => {
    it('should read the same routing settings and invalidate every spelling', async () => {
      let calls = 0
      const app = express4App()
      const cache = responseCache({ ttl: '1m' })
      app.use(cache)
      app.get('/posts/:id', (_req, res) => void res.send(`v${++calls}`))
      app.put('/posts/:id', (_req, res) => void res.status(204).end())
      const served = await serve(app)
      const h = { port: served.port } as Harness
      try {
        await stored(h, SPELLINGS)
        await raw(h, '/posts/42', {}, 'PUT')
        for (const p of SPELLINGS) expect((await raw(h, p)).cache, p).to.equal('MISS')
      } finally {
        await served.close()
        await cache.close()
      }
    })
  })

  describe('when the query spells one parameter name two ways', () => {
    it('should not answer ?q=y&%71=x with the entry of ?%71=x&q=y', async () => {
      const h = await setup(memory, { options: { ttl: '1m' }, routes: (app) => app.get('/s', (req, res) => void res.json(req.query)) })
      expect(JSON.parse((await raw(h, '/s?%71=x&q=y')).body)).to.deep.equal({ q: ['x', 'y'] })
      expect(JSON.parse((await raw(h, '/s?q=y&%71=x')).body)).to.deep.equal({ q: ['y', 'x'] })
      expect(await raw(h, '/s?q=%78&q=y')).to.include({ cache: 'HIT' })
    })
  })
})

describe('responseCache({ key }) and cacheRoute(ttl, { key })', () => {
  afterEach(closeAll)

  const results: Array<[string, () => unknown, RegExp]> = [
    ['null', () => null, /returned null/],
    ['undefined', () => undefined, /returned undefined/],
    ['a Promise', () => Promise.resolve('k'), /returned a Promise.*async key functions are not supported/],
    ['a number', () => 42, /returned 42/],
    ['an object', () => ({ k: 1 }), /returned \{"k":1\}/],
    ['an empty string', () => '', /returned ""/],
  ]

  for (const [label, key, message] of results) {
    describe(`when the key function returns ${label}`, () => {
      it('should bypass the cache for that request and report it to onError, never a 500 or one shared key', async () => {
        const errors: Error[] = []
        const h = await setup(memory, { options: { ttl: '1m', key: key as () => string, onError: (e) => errors.push(e) } })
        await h.get('/a').expect(200, 'v1').expect('X-Cache', 'BYPASS')
        await h.get('/b').expect(200, 'v2').expect('X-Cache', 'BYPASS')
        await h.get('/a').expect(200, 'v3').expect('X-Cache', 'BYPASS')
        expect(errors).to.have.length(3)
        for (const e of errors) expect(e.message).to.match(message).and.include('option "key"')
      })

      it('should do the same for a cacheRoute() key', async () => {
        const errors: Error[] = []
        const h = await setup(memory, {
          options: { ttl: '1m', onError: (e) => errors.push(e) },
          routes: (app, O) => app.get('/r/:id', cacheRoute('1m', { key: key as () => string }), O.handle),
        })
        await h.get('/r/1').expect(200, 'v1').expect('X-Cache', 'BYPASS')
        await h.get('/r/2').expect(200, 'v2').expect('X-Cache', 'BYPASS')
        await h.get('/r/1').expect(200, 'v3').expect('X-Cache', 'BYPASS')
        expect(errors).to.have.length(3)
        for (const e of errors) expect(e.message).to.match(message).and.include('cacheRoute option "key"')
      })
    })
  }

  describe('when the key function returns a rejected Promise', () => {
    it('should bypass the cache without an unhandled rejection', async () => {
      const errors: Error[] = []
      const unhandled: unknown[] = []
      const onUnhandled = (reason: unknown) => unhandled.push(reason)
      process.on('unhandledRejection', onUnhandled)
      try {
        const h = await setup(memory, { options: { ttl: '1m', key: (() => Promise.reject(new Error('later'))) as never, onError: (e) => errors.push(e) } })
        await h.get('/a').expect(200, 'v1').expect('X-Cache', 'BYPASS')
        // Node reports an unhandled rejection once the microtask queue drains: a few turns later.
        for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
      } finally {
        process.off('unhandledRejection', onUnhandled)
      }
      expect(unhandled).to.deep.equal([])
      expect(errors).to.have.length(1)
      expect(errors[0].message).to.match(/returned a Promise/)
    })
  })

  describe('when a cacheRoute() key function throws', () => {
    it('should bypass the cache for that request and report the error', async () => {
      const errors: Error[] = []
      const h = await setup(memory, {
        options: { ttl: '1m', onError: (e) => errors.push(e) },
        routes: (app, O) =>
          app.get(
            '/r',
            cacheRoute('1m', {
              key: () => {
                throw new Error('no key')
              },
            }),
            O.handle,
          ),
      })
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'BYPASS')
      await h.get('/r').expect(200, 'v2').expect('X-Cache', 'BYPASS')
      expect(errors.map((e) => e.message)).to.deep.equal(['no key', 'no key'])
    })
  })
})

describe('responseCache({ host })', () => {
  afterEach(closeAll)

  describe('when given a bad value', () => {
    for (const value of ['', true, 42, 'a b', null]) {
      it(`should throw a TypeError naming the option for ${JSON.stringify(value)}`, () => {
        expect(() => responseCache({ host: value as string })).to.throw(TypeError, /option "host" must be false or a host name/)
      })
    }
  })

  describe('when it is false', () => {
    it('should share entries across Host headers but still key X-Forwarded-Host', async () => {
      const h = await setup(memory, { options: { ttl: '1m', host: false } })
      await h.get('/r', { Host: 'a.test' }).expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r', { Host: 'b.test' }).expect(200, 'v1').expect('X-Cache', 'HIT')
      await h.get('/r', { 'X-Forwarded-Host': 'evil.test' }).expect(200, 'v2').expect('X-Cache', 'MISS')
    })
  })

  describe('when it is a name', () => {
    it('should key every request under that name', async () => {
      const h = await setup(memory, { options: { ttl: '1m', host: 'Site.Test' } })
      await h.get('/r', { Host: 'a.test' }).expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r', { Host: 'b.test' }).expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(await h.cache.delete('r:GET')).to.equal(1)
    })
  })

  // The examples of README "Testing your app", as written there.
  describe('when testing an app with supertest (README "Testing your app")', () => {
    it('should HIT with request(app) when the host is pinned', async () => {
      const app = express()
      const cache = responseCache({ ttl: '1m', host: 'test.local' })
      app.use(cache)
      app.get('/posts', (req, res) => void res.json([{ id: 1 }]))

      await request(app).get('/posts').expect('X-Cache', 'MISS')
      await request(app).get('/posts').expect('X-Cache', 'HIT')
      await cache.close()
    })

    it('should HIT when the app listens once and every request goes to that server', async () => {
      const app = express()
      const cache = responseCache({ ttl: '1m' })
      app.use(cache)
      app.get('/posts', (req, res) => void res.json([{ id: 1 }]))

      const server = app.listen(0)
      const agent = request(server)
      try {
        await agent.get('/posts').expect('X-Cache', 'MISS')
        await agent.get('/posts').expect('X-Cache', 'HIT')
      } finally {
        server.close()
        await cache.close()
      }
    })

    it('should MISS every time with request(app) and the default host part (why the option exists)', async () => {
      const app = express()
      const cache = responseCache({ ttl: '1m' })
      app.use(cache)
      app.get('/posts', (req, res) => void res.json([{ id: 1 }]))
      await request(app).get('/posts').expect('X-Cache', 'MISS')
      await request(app).get('/posts').expect('X-Cache', 'MISS')
      await cache.close()
    })
  })
})

describe('responseCache({ ignoreParams, onlyParams })', () => {
  afterEach(closeAll)

  describe('when given bad values', () => {
    const bad: Array<[string, object, RegExp]> = [
      ['both at once', { ignoreParams: ['a'], onlyParams: ['b'] }, /"ignoreParams" and "onlyParams" cannot be used together/],
      ['a string', { ignoreParams: 'utm_*' }, /option "ignoreParams" must be an array of non-empty parameter names.*got "utm_\*"/],
      ['an empty name', { onlyParams: ['page', ''] }, /option "onlyParams" must be an array/],
      ['a number in the list', { ignoreParams: [1] }, /option "ignoreParams" must be an array/],
    ]
    for (const [label, options, message] of bad) {
      it(`should throw a TypeError for ${label}`, () => {
        expect(() => responseCache(options as never)).to.throw(TypeError, message)
      })
    }
  })

  describe('when ignoreParams names tracking parameters', () => {
    it('should leave them out of the key, by decoded name and glob, while the app still sees them', async () => {
      const h = await setup(memory, {
        options: { ttl: '1m', ignoreParams: ['utm_*', 'gclid'] },
        routes: (app, O) => app.get('/p', O.handle),
      })
      await h.get('/p?utm_source=a').expect(200, 'v1').expect('X-Cache', 'MISS')
      expect(h.O.seen[0].url).to.equal('/p?utm_source=a')
      await h.get('/p?utm%5Fsource=b&gclid=1').expect(200, 'v1').expect('X-Cache', 'HIT')
      await h.get('/p').expect(200, 'v1').expect('X-Cache', 'HIT')
      await h.get('/p?page=2&utm_medium=x').expect(200, 'v2').expect('X-Cache', 'MISS')
      await h.get('/p?page=2').expect(200, 'v2').expect('X-Cache', 'HIT')
    })
  })

  describe('when onlyParams lists the parameters that matter', () => {
    it('should key on those alone', async () => {
      const h = await setup(memory, { options: { ttl: '1m', onlyParams: ['page'] }, routes: (app, O) => app.get('/p', O.handle) })
      await h.get('/p?page=1&x=1').expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/p?x=2&page=1').expect(200, 'v1').expect('X-Cache', 'HIT')
      await h.get('/p?page=2').expect(200, 'v2').expect('X-Cache', 'MISS')
    })
  })

  describe('when a custom key function is given', () => {
    it('should not apply them to it', async () => {
      const h = await setup(memory, { options: { ttl: '1m', ignoreParams: ['utm_*'], key: (req) => req.url ?? '/' } })
      await h.get('/p?utm_source=a').expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/p?utm_source=b').expect(200, 'v2').expect('X-Cache', 'MISS')
    })
  })
})
