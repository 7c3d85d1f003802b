/** test/CHECKLIST.md G (items 54–56): stale-while-revalidate, stale-if-error, request coalescing, on every store. */
import { expect } from 'chai'
import { mapStore } from '../../../examples/custom-store/store.js'
import { closeAll, intHeader, setup, sleep, storeFactories, type Harness } from '../../support/app.js'

/** Wait until the origin has been called `n` times (background work), or fail after `ms`. */
async function untilCalls(h: Harness, n: number, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms
  while (h.O.calls < n) {
    if (Date.now() > deadline) throw new Error(`origin called ${h.O.calls} times, expected ${n} within ${ms} ms`)
    await sleep(10)
  }
}

const SWR = { 'Cache-Control': 'max-age=1, stale-while-revalidate=10' }
const SIE = { 'Cache-Control': 'max-age=1, stale-if-error=10' }

for (const s of storeFactories) {
  describe(`checklist G — stale serving and coalescing (on ${s.name})`, function () {
    afterEach(closeAll)

    it('54a: stale-while-revalidate — at t+2 s ten concurrent requests get the stored body at once (STALE, Age ≥ 2) and O is called once in the background', async () => {
      const h = await setup(s)
      h.O.script = (n) => ({ headers: SWR, delay: n === 2 ? 300 : 0 })
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      h.clock.advance(2000)
      const started = Date.now()
      const all = await Promise.all(Array.from({ length: 10 }, () => h.get('/r')))
      const elapsed = Date.now() - started
      for (const res of all) {
        expect(res.status).to.equal(200)
        expect(res.text).to.equal('v1')
        expect(res.headers['x-cache']).to.equal('STALE')
        expect(intHeader(res, 'Age')).to.be.at.least(2)
      }
      expect(elapsed, 'served without waiting for the 300 ms refresh').to.be.below(300)
      await untilCalls(h, 2)
      await sleep(400) // let the background refresh finish and any duplicate show up
      expect(h.O.calls).to.equal(2)
    })

    it('54b: stale-while-revalidate — after the background refresh the next request is a HIT with the new body', async () => {
      const h = await setup(s)
      h.O.headers = SWR
      await h.get('/r').expect(200, 'v1')
      h.clock.advance(2000)
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'STALE')
      await untilCalls(h, 2)
      await sleep(100) // the refresh stores its response after O answers
      await h.get('/r').expect(200, 'v2').expect('X-Cache', 'HIT')
      expect(h.O.calls).to.equal(2)
    })

    it('54c: stale-while-revalidate — at t+12 s without a refresh the entry is not served stale (O called synchronously)', async () => {
      const h = await setup(s)
      h.O.headers = SWR
      await h.get('/r').expect(200, 'v1')
      h.clock.advance(12_000)
      const res = await h.get('/r').expect(200, 'v2')
      expect(res.headers['x-cache']).not.to.equal('STALE')
      expect(h.O.calls).to.equal(2)
    })

    for (const [label, fail] of [
      ['O answers 503', { status: 503 }],
      ['O throws', { fail: 'throw' }],
      ['O calls next(err)', { fail: 'next' }],
    ] as const) {
      it(`55a: stale-if-error — at t+2 s, ${label} → 200 with the stale body, X-Cache: STALE`, async () => {
        const h = await setup(s)
        h.O.script = (n) => (n === 1 ? { headers: SIE } : fail)
        await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
        h.clock.advance(2000)
        await h.get('/r').expect(200, 'v1').expect('X-Cache', 'STALE')
        expect(h.O.calls).to.equal(2)
      })
    }

    it('55a: stale-if-error — at t+2 s, O exceeding the configured timeout (lockTimeout) → 200 stale body, STALE', async function () {
      this.timeout(10_000)
      const h = await setup(s, { options: { lockTimeout: '300ms' } })
      h.O.script = (n) => (n === 1 ? { headers: SIE } : { delay: 3000, status: 200 })
      await h.get('/r').expect(200, 'v1')
      h.clock.advance(2000)
      const started = Date.now()
      await h.get('/r').timeout(2500).expect(200, 'v1').expect('X-Cache', 'STALE')
      expect(Date.now() - started).to.be.below(1500)
    })

    it("55b: stale-if-error — at t+12 s O's error is passed through", async () => {
      const h = await setup(s)
      h.O.script = (n) => (n === 1 ? { headers: SIE } : { status: 503, body: 'down' })
      await h.get('/r').expect(200, 'v1')
      h.clock.advance(12_000)
      const res = await h.get('/r').expect(503, 'down')
      expect(res.headers['x-cache']).not.to.equal('STALE')
    })

    for (const cc of ['no-cache, max-age=1, stale-if-error=10', 's-maxage=1, stale-if-error=10', 'max-age=1, proxy-revalidate, stale-if-error=10']) {
      it(`55c: stale-if-error is not applied when stale is forbidden (${cc})`, async () => {
        const h = await setup(s)
        h.O.script = (n) => (n === 1 ? { headers: { 'Cache-Control': cc, ETag: '"e1"' } } : { status: 503, body: 'down' })
        await h.get('/r').expect(200, 'v1')
        h.clock.advance(2000)
        const res = await h.get('/r').expect(503, 'down')
        expect(res.headers['x-cache']).not.to.equal('STALE')
      })
    }

    it('56a: coalescing — 50 concurrent GETs on an empty cache, O slow (200 ms): O.calls = 1, all get the same body', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'max-age=60' }
      h.O.delay = 200
      const all = await Promise.all(Array.from({ length: 50 }, () => h.get('/c')))
      expect(h.O.calls).to.equal(1)
      for (const res of all) {
        expect(res.status).to.equal(200)
        expect(res.text).to.equal('v1')
      }
    })

    it("56b: coalescing — with O answering private, no waiter receives the leader's body (O.calls = 50)", async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'private, max-age=60' }
      h.O.delay = 200
      const all = await Promise.all(Array.from({ length: 50 }, () => h.get('/c')))
      expect(h.O.calls).to.equal(50)
      const bodies = all.map((res) => res.text)
      expect(new Set(bodies).size, 'every client got its own response').to.equal(50)
    })

    it('56c: coalescing — with O hanging past lockTimeout, waiters go to O after the timeout; none hangs', async function () {
      this.timeout(10_000)
      const h = await setup(s, { options: { lockTimeout: '300ms' } })
      h.O.script = (n) => (n === 1 ? { fail: 'hang' } : { headers: { 'Cache-Control': 'max-age=60' } })
      const leader = h.get('/c').then(
        () => undefined,
        () => undefined,
      )
      await sleep(50)
      const started = Date.now()
      const waiters = await Promise.all(Array.from({ length: 5 }, () => h.get('/c').timeout(3000)))
      const elapsed = Date.now() - started
      for (const res of waiters) expect(res.status).to.equal(200)
      expect(elapsed).to.be.within(200, 2000)
      expect(h.O.calls).to.be.at.least(2)
      expect(waiters.map((r) => r.text).every((t) => t !== '')).to.equal(true)
      void leader
    })
  })
}

describe('checklist G — coalescing (on a store whose lock reply is lost)', function () {
  afterEach(closeAll)

  it('56: a lock taken but answered with an error is never waited on by the next miss', async function () {
    this.timeout(10_000)
    // The lock is set in the store, then the reply is lost: nobody holds its token.
    const held = new Set<string>()
    const store = {
      ...mapStore(),
      async lock(key: string) {
        if (held.has(key)) return null
        held.add(key)
        throw new Error('connection reset before the reply')
      },
      async unlock(key: string) {
        return held.delete(key)
      },
    }
    const h = await setup(storeFactories[0], { store, realTime: true, options: { lockTimeout: '3s' } })
    h.O.headers = { 'Cache-Control': 'no-store' } // never stored: nobody can find it by polling
    await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
    const started = Date.now()
    await h.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
    // Without the guard the second miss polls the orphaned lock for the whole lockTimeout.
    expect(Date.now() - started).to.be.below(1500)
  })
})
