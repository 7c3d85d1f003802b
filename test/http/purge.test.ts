/** purgeHandler(): PURGE and JSON POST purges behind authorize(), over HTTP. */
import { expect } from 'chai'
import express from 'express'
import { purgeHandler } from '../../src/purge.js'
import { rawRequest, setup, closeAll, storeFactories } from '../support/app.js'

const TOKEN = 'Bearer s3cret'
const CC60 = { 'Cache-Control': 'max-age=60' }

async function site() {
  return setup(storeFactories[0], {
    before: (app: express.Express) => app.use('/_cache', purgeHandler({ authorize: (req) => req.headers.authorization === TOKEN })),
  })
}

describe('purgeHandler()', () => {
  afterEach(closeAll)

  it('should refuse to be built without authorize()', () => {
    expect(() => purgeHandler({} as never)).to.throw(TypeError, /authorize/)
    expect(() => purgeHandler({ authorize: () => true, mystery: 1 } as never)).to.throw(TypeError, /mystery/)
  })

  describe('when the request is not allowed', () => {
    it('should answer 401 without credentials and 403 with wrong ones, and change nothing', async () => {
      const h = await site()
      h.O.headers = CC60
      await h.get('/posts/42').expect('X-Cache', 'MISS')
      expect((await rawRequest(h.port, '/_cache/posts/42', {}, 'PURGE')).status).to.equal(401)
      expect((await rawRequest(h.port, '/_cache/posts/42', { Authorization: 'Bearer nope' }, 'PURGE')).status).to.equal(403)
      const post = await rawRequest(h.port, '/_cache', { 'Content-Type': 'application/json', Authorization: 'x' }, 'POST', JSON.stringify({ patterns: ['*'] }))
      expect(post.status).to.equal(403)
      await h.get('/posts/42').expect('X-Cache', 'HIT')
    })
  })

  describe('when PURGE names a path', () => {
    it("should purge that path's key family", async () => {
      const h = await site()
      h.O.headers = CC60
      await h.get('/posts/42').expect('X-Cache', 'MISS')
      await h.get('/posts/42?page=2').expect('X-Cache', 'MISS')
      await h.get('/posts/7').expect('X-Cache', 'MISS')
      const res = await rawRequest(h.port, '/_cache/posts/42', { Authorization: TOKEN }, 'PURGE')
      expect(res.status).to.equal(200)
      expect(JSON.parse(res.body.toString()).invalidated.patterns).to.include('posts:42:GET#*')
      await h.get('/posts/42').expect('X-Cache', 'MISS')
      await h.get('/posts/42?page=2').expect('X-Cache', 'MISS')
      await h.get('/posts/7').expect('X-Cache', 'HIT')
    })

    it('should purge the tags of its Surrogate-Key header instead', async () => {
      const h = await site()
      h.O.headers = { ...CC60, 'Surrogate-Key': 'post:42' }
      await h.get('/feed').expect('X-Cache', 'MISS')
      const res = await rawRequest(h.port, '/_cache/', { Authorization: TOKEN, 'Surrogate-Key': 'post:42' }, 'PURGE')
      expect(JSON.parse(res.body.toString())).to.deep.equal({ invalidated: { keys: [], patterns: [], tags: ['post:42'] }, soft: false })
      await h.get('/feed').expect('X-Cache', 'MISS')
    })
  })

  describe('when a JSON POST names keys, patterns and tags', () => {
    it('should purge them all, softly when asked', async () => {
      const h = await site()
      h.O.script = (n, req) => ({ status: req.headers['if-none-match'] ? 304 : 200, headers: { ...CC60, ETag: '"e"', 'Surrogate-Key': 'a' } })
      for (const p of ['/k', '/p/1', '/t']) await h.get(p).expect('X-Cache', 'MISS')
      const body = JSON.stringify({ keys: ['k:GET'], patterns: ['p:*'], tags: ['a'], soft: true })
      const res = await rawRequest(h.port, '/_cache', { 'Content-Type': 'application/json', Authorization: TOKEN }, 'POST', body)
      expect(res.status).to.equal(200)
      h.clock.advance(1000)
      await h.get('/k').expect('X-Cache', 'MISS')
      await h.get('/p/1').expect('X-Cache', 'REVALIDATED')
    })

    it('should answer 400 for a malformed body and purge nothing', async () => {
      const h = await site()
      h.O.headers = CC60
      await h.get('/x').expect('X-Cache', 'MISS')
      for (const bad of ['nope', '{"patterns": "x:*"}', '{"what": 1}', '{}', '{"patterns": ["/x/*"]}']) {
        const res = await rawRequest(h.port, '/_cache', { 'Content-Type': 'application/json', Authorization: TOKEN }, 'POST', bad)
        expect(res.status, bad).to.equal(400)
      }
      await h.get('/x').expect('X-Cache', 'HIT')
    })
  })
})
