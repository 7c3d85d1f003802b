/** The store factories the middleware suites use: each gives a fresh, empty, working store. */
import assert from 'node:assert/strict'
import { storeFactories } from '../support/stores.js'

describe('test/support/stores.ts', function () {
  it('should list memory, redis, redis-cluster, memcached and memcached-2', function () {
    assert.deepEqual(
      storeFactories.map((f) => f.name),
      ['memory', 'redis', 'redis-cluster', 'memcached', 'memcached-2'],
    )
  })

  for (const factory of storeFactories) {
    describe(`${factory.name}.create()`, function () {
      it('should give a fresh, empty store per call that works and cleans up', async function () {
        this.timeout(30_000)
        const first = await factory.create()
        const second = await factory.create()
        try {
          await first.store.set('posts:GET', Buffer.from('first'), 60_000)
          assert.equal(Buffer.from((await first.store.get('posts:GET'))!).toString(), 'first')
          assert.equal((await second.store.get('posts:GET')) ?? undefined, undefined, 'a second store starts empty')
          if (first.putRaw) {
            await first.putRaw('raw:GET', Buffer.from('raw'), 60_000)
            assert.equal(Buffer.from((await first.store.get('raw:GET'))!).toString(), 'raw')
          }
        } finally {
          await first.cleanup()
          await second.cleanup()
        }
      })
    })
  }
})
