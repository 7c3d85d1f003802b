/** test/CHECKLIST.md E (items 46–49): Vary, on every store. */
import { expect } from 'chai'
import { closeAll, setup, sleep, slowWrites, storeFactories } from '../../support/app.js'

for (const s of storeFactories) {
  describe(`checklist E — Vary (on ${s.name})`, function () {
    afterEach(closeAll)

    it('46: variants coexist — Accept-Encoding gzip and br each MISS once, then each HIT its own body', async () => {
      const h = await setup(s)
      h.O.script = (n, req) => ({
        headers: { 'Cache-Control': 'max-age=60', Vary: 'Accept-Encoding' },
        body: `${req.headers['accept-encoding']}-v${n}`,
      })
      await h.get('/r', { 'Accept-Encoding': 'gzip' }).expect(200, 'gzip-v1').expect('X-Cache', 'MISS')
      await h.get('/r', { 'Accept-Encoding': 'br' }).expect(200, 'br-v2').expect('X-Cache', 'MISS')
      await h.get('/r', { 'Accept-Encoding': 'gzip' }).expect(200, 'gzip-v1').expect('X-Cache', 'HIT')
      await h.get('/r', { 'Accept-Encoding': 'br' }).expect(200, 'br-v2').expect('X-Cache', 'HIT')
      expect(h.O.calls).to.equal(2)
    })

    it('47a: absent ≠ present — stored without Accept-Language, a request with Accept-Language: de is a MISS', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'max-age=60', Vary: 'Accept-Language' }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r', { 'Accept-Language': 'de' }).expect(200, 'v2').expect('X-Cache', 'MISS')
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
    })

    it('47b: absent ≠ present — stored with Accept-Language: de, a request without it is a MISS', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'max-age=60', Vary: 'Accept-Language' }
      await h.get('/r', { 'Accept-Language': 'de' }).expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
      await h.get('/r', { 'Accept-Language': 'de' }).expect(200, 'v1').expect('X-Cache', 'HIT')
      // An empty value is present, not absent.
      await h.get('/r', { 'Accept-Language': '' }).expect(200, 'v3').expect('X-Cache', 'MISS')
    })

    it('48a: Vary field names are case-insensitive — Vary: accept-language selects on Accept-Language', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'max-age=60', Vary: 'accept-language' }
      await h.get('/r', { 'Accept-Language': 'en' }).expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r', { 'Accept-Language': 'en' }).expect(200, 'v1').expect('X-Cache', 'HIT')
      await h.get('/r', { 'Accept-Language': 'de' }).expect(200, 'v2').expect('X-Cache', 'MISS')
    })

    it('48b: whitespace is normalised — "en,  de" and "en, de" select the same variant', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'max-age=60', Vary: 'Accept-Language' }
      await h.get('/r', { 'Accept-Language': 'en,  de' }).expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r', { 'Accept-Language': 'en, de' }).expect(200, 'v1').expect('X-Cache', 'HIT')
      await h.get('/r', { 'Accept-Language': 'en,de' }).expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(h.O.calls).to.equal(1)
    })

    it('48c: two request lines X-A: 1 and X-A: 2 match one line X-A: 1, 2', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'max-age=60', Vary: 'X-A' }
      await h
        .get('/r', { 'X-A': ['1', '2'] })
        .expect(200, 'v1')
        .expect('X-Cache', 'MISS')
      await h.get('/r', { 'X-A': '1, 2' }).expect(200, 'v1').expect('X-Cache', 'HIT')
      await h.get('/r', { 'X-A': '1' }).expect(200, 'v2').expect('X-Cache', 'MISS')
      expect(h.O.calls).to.equal(2)
    })

    it('49: variant cap — maxVariants: 5 with X-V 1..20 keeps at most 5 variants and never serves a wrong body', async function () {
      this.timeout(20_000)
      const h = await setup(s, { options: { maxVariants: 5 } })
      h.O.script = (n, req) => ({
        headers: { 'Cache-Control': 'max-age=60', Vary: 'X-V' },
        body: `x${req.headers['x-v']}-v${n}`,
      })
      const entries = () => h.cache.stats().entries ?? 0
      for (let v = 1; v <= 20; v++) {
        const res = await h.get('/r', { 'X-V': String(v) }).expect(200)
        expect(res.text).to.match(new RegExp(`^x${v}-v\\d+$`))
        // memory: every variant plus the one Vary record at the head key.
        if (s.name === 'memory') expect(entries(), `after X-V ${v}`).to.be.at.most(6)
      }
      await sleep(50) // evictions of remote variants are sent without waiting for them
      for (let v = 1; v <= 20; v++) {
        const res = await h.get('/r', { 'X-V': String(v) }).expect(200)
        expect(res.text, `X-V ${v}`).to.match(new RegExp(`^x${v}-v\\d+$`))
      }
      // The five newest variants (16..20 of the second round) are served without the origin.
      const before = h.O.calls
      for (let v = 16; v <= 20; v++) {
        await h
          .get('/r', { 'X-V': String(v) })
          .expect(200)
          .expect('X-Cache', 'HIT')
      }
      expect(h.O.calls).to.equal(before)
      if (s.counts) {
        await sleep(50)
        // Count what the store holds for /r: the Vary record plus the variants.
        const held = await h.store.deleteMatching('r:GET#*')
        expect(held).to.be.within(1, 6)
      }
    })
  })
}

describe('checklist E — Vary (on a store whose writes land after the response)', function () {
  afterEach(closeAll)

  it('49: variant cap — the newest maxVariants variants stay, in the order they were stored', async () => {
    const store = slowWrites(15)
    const h = await setup(storeFactories[0], { store, options: { maxVariants: 5 } })
    h.O.script = (n, req) => ({
      headers: { 'Cache-Control': 'max-age=60', Vary: 'X-V' },
      body: `x${req.headers['x-v']}-v${n}`,
    })
    // Each response is sent before its writes land, so the updates of the variant list overlap.
    for (let v = 1; v <= 20; v++) {
      const res = await h.get('/r', { 'X-V': String(v) }).expect(200)
      expect(res.text).to.match(new RegExp(`^x${v}-v\\d+$`))
    }
    await store.settled()
    const before = h.O.calls
    for (let v = 16; v <= 20; v++)
      await h
        .get('/r', { 'X-V': String(v) })
        .expect(200)
        .expect('X-Cache', 'HIT')
    expect(h.O.calls).to.equal(before)
    for (let v = 1; v <= 15; v++)
      await h
        .get('/r', { 'X-V': String(v) })
        .expect(200)
        .expect('X-Cache', 'MISS')
  })
})
