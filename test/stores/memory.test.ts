/** memoryStore() against the shared Store contract, on an injected clock. */
import assert from 'node:assert/strict'
import { memoryStore } from '../../src/stores/memory.js'
import { runStoreContract } from '../support/store-contract.js'

runStoreContract(
  'memoryStore()',
  () => {
    let clock = 1_700_000_000_000
    const store = memoryStore({ now: () => clock })
    return {
      store,
      async advance(ms) {
        clock += ms
        // lru-cache memoises "now" for ttlResolution (default 1 ms) on a timer, so an injected
        // clock is only read again after that timer fires. Remove this wait once memoryStore
        // passes ttlResolution: 0 to lru-cache.
        await new Promise((resolve) => setTimeout(resolve, 5))
      },
      cleanup: () => store.close?.(),
    }
  },
  {},
  { rejectsNonBytes: ['set'] },
)

describe('memoryStore() deleteMatching()', function () {
  const bytes = (text: string) => new TextEncoder().encode(text)
  /** Keys as the middleware writes them: escaped segments, query, host part and variant parts. */
  const keys = [
    'GET#h',
    'items:GET#h',
    'items:GET?page=2#h',
    'items:GET#h#accept=json',
    'items:1:GET#h',
    'items:1:GET#h#accept=json',
    'items:1:GET?a=1&b=2#h',
    'items:10:GET#h',
    'items:1:reviews:GET#h',
    'items%3A1:GET#h',
    'items%2A:GET#h',
    'itemsx:GET#h',
    'item:GET#h',
    'a%3Aitems:1:GET#h',
    'users:items:1:GET#h',
    'users:1:GET?q=items:1#h',
  ]
  let clock: number
  let store: ReturnType<typeof memoryStore>

  beforeEach(function () {
    clock = 1_700_000_000_000
    store = memoryStore({ now: () => clock })
    for (const key of keys) store.set(key, bytes(key), 60_000)
  })

  const left = () => keys.filter((key) => store.get(key) !== undefined)

  async function expectRemoved(pattern: string, removed: string[]): Promise<void> {
    const count = await store.deleteMatching(pattern)
    assert.deepEqual(
      left(),
      keys.filter((key) => !removed.includes(key)),
      `left after ${JSON.stringify(pattern)}`,
    )
    assert.equal(count, removed.length, `count for ${JSON.stringify(pattern)}`)
    assert.equal(store.stats().entries, keys.length - removed.length)
  }

  describe('with a prefix pattern', function () {
    it("should remove a path and everything below it with 'items:*', and nothing escaped or merely similar", async function () {
      await expectRemoved('items:*', [
        'items:GET#h',
        'items:GET?page=2#h',
        'items:GET#h#accept=json',
        'items:1:GET#h',
        'items:1:GET#h#accept=json',
        'items:1:GET?a=1&b=2#h',
        'items:10:GET#h',
        'items:1:reviews:GET#h',
      ])
    })
    it("should stop at the segment boundary with 'items:1:*'", async function () {
      await expectRemoved('items:1:*', ['items:1:GET#h', 'items:1:GET#h#accept=json', 'items:1:GET?a=1&b=2#h', 'items:1:reviews:GET#h'])
    })
    it("should match an escaped segment literally with 'items%3A1:*'", async function () {
      await expectRemoved('items%3A1:*', ['items%3A1:GET#h'])
    })
    it("should match a partial segment with 'items:1*'", async function () {
      await expectRemoved('items:1*', ['items:1:GET#h', 'items:1:GET#h#accept=json', 'items:1:GET?a=1&b=2#h', 'items:10:GET#h', 'items:1:reviews:GET#h'])
    })
    it("should remove the variants of one key, and keep the key, with 'items:1:GET#h#*'", async function () {
      await expectRemoved('items:1:GET#h#*', ['items:1:GET#h#accept=json'])
    })
    it("should remove every query of one path with 'items:GET?*'", async function () {
      await expectRemoved('items:GET?*', ['items:GET?page=2#h'])
    })
    it("should treat runs of '*' as one ('items:1:**')", async function () {
      await expectRemoved('items:1:**', ['items:1:GET#h', 'items:1:GET#h#accept=json', 'items:1:GET?a=1&b=2#h', 'items:1:reviews:GET#h'])
    })
    it("should remove everything with '*'", async function () {
      await expectRemoved('*', keys)
    })
    it('should remove nothing when no key has the prefix', async function () {
      await expectRemoved('orders:*', [])
    })
  })

  describe('with a wildcard elsewhere', function () {
    it("should match across segments with 'items:*:GET#h'", async function () {
      await expectRemoved('items:*:GET#h', ['items:1:GET#h', 'items:10:GET#h', 'items:1:reviews:GET#h'])
    })
    it("should match a suffix with '*#accept=json'", async function () {
      await expectRemoved('*#accept=json', ['items:GET#h#accept=json', 'items:1:GET#h#accept=json'])
    })
    it("should match two wildcards with '*items:1*'", async function () {
      await expectRemoved('*items:1*', [
        'items:1:GET#h',
        'items:1:GET#h#accept=json',
        'items:1:GET?a=1&b=2#h',
        'items:10:GET#h',
        'items:1:reviews:GET#h',
        'a%3Aitems:1:GET#h',
        'users:items:1:GET#h',
        'users:1:GET?q=items:1#h',
      ])
    })
  })

  describe('with a literal pattern', function () {
    it('should remove exactly that key', async function () {
      await expectRemoved('items:1:GET#h', ['items:1:GET#h'])
    })
  })

  describe('after entries left the cache', function () {
    it('should neither count nor find keys that were deleted, evicted or expired', async function () {
      const small = memoryStore({ now: () => clock, maxEntries: 3 })
      small.set('items:1:GET#h', bytes('1'), 60_000)
      small.set('items:2:GET#h', bytes('2'), 60_000)
      small.set('items:3:GET#h', bytes('3'), 10)
      small.delete('items:2:GET#h')
      small.set('items:4:GET#h', bytes('4'), 60_000)
      small.set('items:5:GET#h', bytes('5'), 60_000) // evicts items:1
      clock += 20 // items:3 expires
      assert.equal(await small.deleteMatching('items:*'), 2)
      assert.equal(small.stats().entries, 0)
      assert.equal(small.stats().bytes, 0)
    })
    it('should count an overwritten key once', async function () {
      store.set('items:1:GET#h', bytes('again'), 60_000)
      await expectRemoved('items:1:GET#h*', ['items:1:GET#h', 'items:1:GET#h#accept=json'])
    })
    it('should find a key written again after an invalidation removed it', async function () {
      await store.deleteMatching('items:*')
      store.set('items:1:GET#h', bytes('back'), 60_000)
      assert.equal(await store.deleteMatching('items:*'), 1)
      assert.equal(store.get('items:1:GET#h'), undefined)
    })
  })

  describe('over more keys than one chunk', function () {
    const many = 30_000

    function fillMany(target: ReturnType<typeof memoryStore>): void {
      const value = bytes('v')
      for (let i = 0; i < many; i++) {
        target.set(`items:${i}:GET#h`, value, 60_000)
        if (i % 3 === 0) target.set(`other:${i}:GET#h`, value, 60_000)
      }
    }

    it('should remove exactly the matching keys and release their bytes', async function () {
      const big = memoryStore({ now: () => clock })
      fillMany(big)
      const others = Math.ceil(many / 3)
      const removed = await big.deleteMatching('items:*')
      assert.equal(removed, many)
      assert.equal(big.stats().entries, others)
      for (let i = 0; i < many; i += 997) assert.equal(big.get(`items:${i}:GET#h`), undefined)
      for (let i = 0; i < many; i += 3) assert.notEqual(big.get(`other:${i}:GET#h`), undefined, `other:${i}`)
      assert.equal(await big.deleteMatching('other:*'), others)
      assert.equal(big.stats().bytes, 0)
    })

    it('should yield to the event loop and keep serving unrelated keys meanwhile', async function () {
      const big = memoryStore({ now: () => clock })
      fillMany(big)
      let seen: { hit: boolean; entries: number } | undefined
      const done = big.deleteMatching('items:*')
      setImmediate(() => {
        seen = { hit: big.get('other:0:GET#h') !== undefined, entries: big.stats().entries }
      })
      assert.equal(await done, many)
      assert.ok(seen, 'no callback ran while the invalidation was in progress')
      assert.equal(seen.hit, true)
      assert.ok(seen.entries > big.stats().entries, 'the callback ran only after the invalidation had finished')
    })

    it('should keep entries written while the invalidation runs', async function () {
      const big = memoryStore({ now: () => clock })
      fillMany(big)
      const others = Math.ceil(many / 3)
      // The least and the most recently used key: whichever order the sweep takes, one of them
      // is still waiting for deletion when it is written again.
      const rewritten = ['items:0:GET#h', `items:${many - 1}:GET#h`, 'items:new:GET#h']
      const fresh = bytes('fresh')
      const done = big.deleteMatching('items:*')
      setImmediate(() => {
        for (const key of rewritten) big.set(key, fresh, 60_000)
      })
      const removed = await done
      for (const key of rewritten) assert.equal(big.get(key), fresh, `${key} written after invalidate() started was removed`)
      assert.equal(big.stats().entries, others + rewritten.length)
      assert.ok(removed === many - 1 || removed === many, `removed ${removed}`)
    })
  })
})
