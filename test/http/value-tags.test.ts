/** Tags and soft purges on the value cache: createCache() and cached() values invalidated by invalidateTags() and invalidate(pattern, { soft }), alone and together with responses on one store. */
import { expect } from 'chai'
import { cached } from '../../src/cached.js'
import { invalidate, invalidateTags } from '../../src/route.js'
import { createCache } from '../../src/value-cache.js'
import { closeAll, setup, sleep, storeFactories } from '../support/app.js'

const STORES = storeFactories.filter((s) => s.name === 'memory' || s.name === 'redis' || s.name === 'memcached')

for (const s of STORES) {
  describe(`value cache tags (on ${s.name})`, function () {
    this.timeout(20_000)
    afterEach(closeAll)

    it('should reach a response and a value carrying the tag with one invalidateTags() on a shared store', async () => {
      const h = await setup(s)
      const values = createCache({ store: h.store, now: h.clock.now })
      try {
        h.O.headers = { 'Cache-Control': 'max-age=60', 'Surrogate-Key': 'post:42' }
        let computed = 0
        const load = () => values.getOrSet('posts:list:1', () => `list ${++computed}`, { tags: ['post:42'] })
        await h.get('/posts/42').expect('X-Cache', 'MISS')
        expect(await load()).to.equal('list 1')
        await sleep(30)
        expect(await load()).to.equal('list 1')
        await h.get('/posts/42').expect('X-Cache', 'HIT')
        await invalidateTags(['post:42'])
        h.clock.advance(1000)
        await h.get('/posts/42').expect('X-Cache', 'MISS')
        expect(await load()).to.equal('list 2')
      } finally {
        await values.close()
      }
    })

    it('should tag cached() results from the result and the arguments, and serve a soft-purged value stale while it recomputes', async () => {
      const h = await setup(s)
      const values = createCache({ store: h.store, now: h.clock.now, staleWhileRevalidate: '1m' })
      try {
        let calls = 0
        const getPost = cached(async (id: number) => ({ id, version: ++calls }), {
          cache: values,
          namespace: 'post',
          tags: (post, id) => [`post:${id}`, `v:${post.version}`],
        })
        expect((await getPost(7)).version).to.equal(1)
        await sleep(30)
        expect((await getPost(7)).version).to.equal(1)
        await values.invalidateTags(['post:7'], { soft: true })
        h.clock.advance(1000)
        expect((await getPost(7)).version).to.equal(1) // stale, while one recompute runs
        for (let i = 0; i < 100 && calls < 2; i++) await sleep(10)
        expect(calls).to.equal(2)
        await sleep(30)
        expect((await getPost(7)).version).to.equal(2)
        await values.invalidateTags(['post:7'])
        h.clock.advance(1000)
        expect((await getPost(7)).version).to.equal(3)
      } finally {
        await values.close()
      }
    })
  })
}

describe('soft pattern purges of values', function () {
  this.timeout(20_000)
  afterEach(closeAll)

  it('should serve a soft-purged value stale while one recompute runs (values.invalidate and the module-level invalidate), then the new one', async () => {
    const h = await setup(storeFactories[0])
    const values = createCache({ store: h.store, now: h.clock.now })
    try {
      let computed = 0
      const load = () => values.getOrSet('posts:list:1', () => `list ${++computed}`)
      expect(await load()).to.equal('list 1')
      expect(await values.invalidate('posts:*', { soft: true })).to.equal(0)
      h.clock.advance(1000)
      expect(await load()).to.equal('list 1') // stale, while one recompute runs
      await sleep(30)
      expect(computed).to.equal(2)
      expect(await load()).to.equal('list 2')
      await invalidate('posts:*', { soft: true })
      h.clock.advance(1000)
      expect(await load()).to.equal('list 2')
      await sleep(30)
      expect(await load()).to.equal('list 3')
      expect(computed).to.equal(3)
      expect(() => values.invalidate('posts:*', { soft: 'yes' } as never)).to.throw(TypeError, /soft/)
    } finally {
      await values.close()
    }
  })
})

describe('value cache tags: input checks', () => {
  it('should reject invalid tags with a TypeError', async () => {
    const values = createCache()
    try {
      expect(() => values.set('k', 1, { tags: 'x' as never })).to.throw(TypeError, /tags/)
      let caught: unknown
      await values.invalidateTags([]).catch((error) => (caught = error))
      expect(caught).to.be.instanceOf(TypeError)
    } finally {
      await values.close()
    }
  })
})
