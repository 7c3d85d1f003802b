/** test/CHECKLIST.md C (items 29–36): freshness, Age, Date, request directives, on every store. */
import { expect } from 'chai'
import { closeAll, httpDate, intHeader, isMemory, rawRequest, rawValues, setup, sleep, storeFactories } from '../../support/app.js'

const CC60 = { 'Cache-Control': 'max-age=60' }
const DAY = 86_400_000

for (const s of storeFactories) {
  describe(`checklist C — freshness, Age, Date (on ${s.name})`, function () {
    afterEach(closeAll)

    it('29: expiry — max-age=2 is a HIT at t+1 s and goes to O at t+3 s', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'max-age=2' }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      h.clock.advance(1000)
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      h.clock.advance(2000)
      const res = await h.get('/r').expect(200, 'v2')
      expect(res.headers['x-cache']).to.be.oneOf(['MISS', 'REVALIDATED'])
      expect(h.O.calls).to.equal(2)
    })

    if (!isMemory(s)) {
      // max-age=3, not 2: Date has whole seconds, so the entry may start almost 1 s old, and a
      // loaded machine must not push the HIT at t+1 s past its lifetime.
      it('29 (real time): expiry on the real store — max-age=3 is a HIT at t+1 s and goes to O at t+4 s', async function () {
        this.timeout(10_000)
        const h = await setup(s, { realTime: true })
        h.O.headers = { 'Cache-Control': 'max-age=3' }
        await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
        await sleep(1000)
        await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
        await sleep(3100)
        const res = await h.get('/r').expect(200, 'v2')
        expect(res.headers['x-cache']).to.be.oneOf(['MISS', 'REVALIDATED'])
        expect(h.O.calls).to.equal(2)
      })
    }

    it('30a: a HIT carries exactly one Age, an integer ≥ the whole seconds since storage', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      await h.get('/r').expect(200, 'v1')
      h.clock.advance(5400)
      const hit = await rawRequest(h.port, '/r')
      expect(rawValues(hit.rawHeaders, 'x-cache')).to.deep.equal(['HIT'])
      const ages = rawValues(hit.rawHeaders, 'age')
      expect(ages).to.have.length(1)
      expect(ages[0]).to.match(/^\d+$/)
      expect(Number(ages[0])).to.be.at.least(5)
    })

    it('30b: O sending Age: 10 with max-age=60 gives a HIT Age ≥ 10', async () => {
      const h = await setup(s)
      h.O.headers = { ...CC60, Age: '10' }
      await h.get('/r').expect(200, 'v1')
      const hit = await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(intHeader(hit, 'Age')).to.be.at.least(10)
    })

    it('30c: O sending Age: 100 with max-age=60 is never served fresh', async () => {
      const h = await setup(s)
      h.O.headers = { ...CC60, Age: '100' }
      await h.get('/r').expect(200, 'v1')
      const second = await h.get('/r').expect(200, 'v2')
      expect(second.headers['x-cache']).not.to.equal('HIT')
      expect(h.O.calls).to.equal(2)
    })

    it('30d: Age: 2147483648 is treated as stale, not negative', async () => {
      const h = await setup(s)
      h.O.headers = { ...CC60, Age: '2147483648' }
      await h.get('/r').expect(200, 'v1')
      const second = await h.get('/r').expect(200, 'v2')
      expect(second.headers['x-cache']).not.to.equal('HIT')
      expect(h.O.calls).to.equal(2)
    })

    it("31a: Date is not regenerated — the HIT replays O's Date byte for byte", async () => {
      const h = await setup(s)
      const date = httpDate(h.clock.now())
      h.O.headers = { ...CC60, Date: date }
      await h.get('/r').expect(200, 'v1').expect('Date', date)
      h.clock.advance(7000)
      await sleep(1100) // the real clock moves too: a regenerated Date would differ
      const hit = await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(hit.headers.date).to.equal(date)
    })

    it('31b: without a Date from O, the Date recorded at store time is replayed on every HIT', async () => {
      const h = await setup(s)
      h.O.sendDate = false
      h.O.headers = CC60
      const stored = h.clock.now()
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      h.clock.advance(3000)
      const first = await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      h.clock.advance(4000)
      await sleep(1100)
      const second = await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(first.headers.date).to.equal(httpDate(stored))
      expect(second.headers.date).to.equal(first.headers.date)
    })

    it('32a: heuristic freshness — Last-Modified 10 days ago, no CC: reused only up to min(10% × age, maxHeuristicTtl)', async () => {
      const h = await setup(s)
      h.O.headers = { 'Last-Modified': httpDate(h.clock.now() - 10 * DAY) }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      h.clock.advance(59 * 60_000)
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      h.clock.advance(2 * 60_000) // past the default maxHeuristicTtl of 1 h
      const res = await h.get('/r').expect(200, 'v2')
      expect(res.headers['x-cache']).not.to.equal('HIT')
    })

    it('32a: heuristic freshness — with a large maxHeuristicTtl the lifetime is 10% of Date − Last-Modified', async () => {
      const h = await setup(s, { options: { maxHeuristicTtl: '30d' } })
      h.O.headers = { 'Last-Modified': httpDate(h.clock.now() - 10 * DAY) }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      h.clock.advance(23 * 3_600_000)
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      h.clock.advance(2 * 3_600_000) // 25 h > 1 day = 10% of 10 days
      const res = await h.get('/r').expect(200, 'v2')
      expect(res.headers['x-cache']).not.to.equal('HIT')
    })

    it('32b: heuristicFraction: 0 turns heuristic freshness off', async () => {
      const h = await setup(s, { options: { heuristicFraction: 0 } })
      h.O.headers = { 'Last-Modified': httpDate(h.clock.now() - 10 * DAY) }
      await h.get('/r').expect(200, 'v1')
      const second = await h.get('/r').expect(200, 'v2')
      expect(second.headers['x-cache']).not.to.equal('HIT')
      expect(h.O.calls).to.equal(2)
    })

    it('32c: 201, 403 and 500 with Last-Modified and no CC are never reused', async () => {
      const h = await setup(s)
      h.O.headers = { 'Last-Modified': httpDate(h.clock.now() - 10 * DAY) }
      for (const status of [201, 403, 500]) {
        h.O.status = status
        const calls = h.O.calls
        await h.get(`/s${status}`).expect(status)
        const second = await h.get(`/s${status}`).expect(status)
        expect(second.headers['x-cache'], String(status)).not.to.equal('HIT')
        expect(h.O.calls, String(status)).to.equal(calls + 2)
      }
    })

    const MUST = { 'Cache-Control': 'max-age=1, must-revalidate, stale-while-revalidate=60, stale-if-error=60' }

    it('33a: must-revalidate — a fresh entry is a HIT', async () => {
      const h = await setup(s)
      h.O.headers = MUST
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(h.O.calls).to.equal(1)
    })

    it('33b: must-revalidate — after 1.5 s O is called and the stale body is never served', async () => {
      const h = await setup(s)
      h.O.headers = MUST
      await h.get('/r').expect(200, 'v1')
      h.clock.advance(1500)
      const res = await h.get('/r').expect(200, 'v2')
      expect(res.headers['x-cache']).not.to.equal('STALE')
      expect(h.O.calls).to.equal(2)
    })

    it('33c: must-revalidate — after 1.5 s with O answering 500 or throwing, the client gets the error, never stale', async () => {
      const h = await setup(s)
      h.O.script = (n) => (n === 1 ? { headers: MUST } : n === 2 ? { status: 500, body: 'boom' } : { fail: 'throw' })
      await h.get('/r').expect(200, 'v1')
      h.clock.advance(1500)
      const failed = await h.get('/r').expect(500)
      expect(failed.text).to.equal('boom')
      expect(failed.headers['x-cache']).not.to.equal('STALE')
      const thrown = await h.get('/r')
      expect(thrown.status).to.be.oneOf([500, 504])
      expect(thrown.text).not.to.equal('v1')
      expect(thrown.headers['x-cache']).not.to.equal('STALE')
      expect(h.O.calls).to.equal(3)
    })

    for (const [label, headers] of [
      ['Cache-Control: no-cache', { 'Cache-Control': 'no-cache' }],
      ['Cache-Control: max-age=0', { 'Cache-Control': 'max-age=0' }],
      ['Pragma: no-cache (no request CC)', { Pragma: 'no-cache' }],
    ] as const) {
      it(`34: request ${label} on a fresh entry reaches O (conditionally) and is not a HIT`, async () => {
        const h = await setup(s)
        h.O.headers = { ...CC60, ETag: '"e1"' }
        await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
        const res = await h.get('/r', headers).expect(200)
        expect(res.headers['x-cache']).not.to.equal('HIT')
        expect(h.O.calls).to.equal(2)
        expect(h.O.seen[1].headers['if-none-match']).to.equal('"e1"')
      })
    }

    it('35a: only-if-cached with no entry → 504 without calling O', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      await h.get('/r', { 'Cache-Control': 'only-if-cached' }).expect(504)
      expect(h.O.calls).to.equal(0)
    })

    it('35b: only-if-cached with a fresh entry → HIT', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      await h.get('/r').expect(200, 'v1')
      await h.get('/r', { 'Cache-Control': 'only-if-cached' }).expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(h.O.calls).to.equal(1)
    })

    it('36a: request max-age=2 on an entry aged 5 s is not served from store', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      await h.get('/r').expect(200, 'v1')
      h.clock.advance(5000)
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      const res = await h.get('/r', { 'Cache-Control': 'max-age=2' }).expect(200, 'v2')
      expect(res.headers['x-cache']).not.to.equal('HIT')
      expect(h.O.calls).to.equal(2)
    })

    it('36b: request min-fresh=10 on an entry with 3 s of freshness left reaches O', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'max-age=10' }
      await h.get('/r').expect(200, 'v1')
      h.clock.advance(7000)
      await h.get('/r', { 'Cache-Control': 'min-fresh=2' }).expect(200, 'v1').expect('X-Cache', 'HIT')
      const res = await h.get('/r', { 'Cache-Control': 'min-fresh=10' }).expect(200, 'v2')
      expect(res.headers['x-cache']).not.to.equal('HIT')
      expect(h.O.calls).to.equal(2)
    })

    it('36c: request max-stale=10 accepts an entry stale by 5 s (served STALE without calling O)', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'max-age=1' }
      await h.get('/r').expect(200, 'v1')
      h.clock.advance(6000)
      await h.get('/r', { 'Cache-Control': 'max-stale=10' }).expect(200, 'v1').expect('X-Cache', 'STALE')
      expect(h.O.calls).to.equal(1)
      await h.get('/r', { 'Cache-Control': 'max-stale=2' }).expect(200, 'v2')
      expect(h.O.calls).to.equal(2)
    })
  })
}
