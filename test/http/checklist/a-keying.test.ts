/** test/CHECKLIST.md A (items 1–9): keying and basics, on every store. */
import { expect } from 'chai'
import { closeAll, setup, storeFactories } from '../../support/app.js'

const CC60 = { 'Cache-Control': 'max-age=60' }

/**
 * Response headers that legitimately differ between a MISS and its HIT: Age/X-Cache, per-connection
 * fields, and message framing (the MISS may stream chunked while the HIT knows its length).
 */
const PER_RESPONSE = new Set(['age', 'x-cache', 'cache-status', 'connection', 'keep-alive', 'transfer-encoding', 'content-length'])

for (const s of storeFactories) {
  describe(`checklist A — keying and basics (on ${s.name})`, function () {
    afterEach(closeAll)

    it('1: basic hit — second request is a HIT with the same status, body and headers', async () => {
      const h = await setup(s)
      h.O.headers = { ...CC60, 'X-Custom': 'abc' }
      const first = await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      expect(h.O.calls).to.equal(1)
      const second = await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(h.O.calls).to.equal(1)
      const strip = (headers: Record<string, unknown>) => Object.fromEntries(Object.entries(headers).filter(([name]) => !PER_RESPONSE.has(name)))
      expect(strip(second.headers)).to.deep.equal(strip(first.headers))
      expect(second.headers['content-length']).to.equal('2')
    })

    it('2: query order normalised — ?b=2&a=1 then ?a=1&b=2 is a HIT', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      await h.get('/r?b=2&a=1').expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r?a=1&b=2').expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(h.O.calls).to.equal(1)
    })

    it('3: repeated parameters keep their order — ?a=1&a=2 and ?a=2&a=1 are different keys', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      await h.get('/r?a=1&a=2').expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r?a=2&a=1').expect(200, 'v2').expect('X-Cache', 'MISS')
      expect(h.O.calls).to.equal(2)
      await h.get('/r?a=1&a=2').expect(200, 'v1').expect('X-Cache', 'HIT')
      await h.get('/r?a=2&a=1').expect(200, 'v2').expect('X-Cache', 'HIT')
    })

    it('4: different values are different keys — ?a=1 then ?a=2 is a MISS, bodies never swapped', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      await h.get('/r?a=1').expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r?a=2').expect(200, 'v2').expect('X-Cache', 'MISS')
      await h.get('/r?a=1').expect(200, 'v1').expect('X-Cache', 'HIT')
      await h.get('/r?a=2').expect(200, 'v2').expect('X-Cache', 'HIT')
      expect(h.O.calls).to.equal(2)
    })

    it('5: no lossy path normalisation — /R, /r/, /%72, /r%2F are each a MISS after /r is stored', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      let n = 1
      for (const path of ['/R', '/r/', '/%72', '/r%2F']) {
        n++
        const res = await h.get(path).expect(200).expect('X-Cache', 'MISS')
        expect(res.text, path).to.equal(`v${n}`)
        expect(h.O.seen[n - 1].url, path).to.equal(path)
      }
      expect(h.O.calls).to.equal(5)
      // Each raw path keeps its own response.
      await h.get('/r%2F').expect(200, 'v5').expect('X-Cache', 'HIT')
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
    })

    it('6: Host is keyed — Host a.test then Host b.test is a MISS', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      await h.get('/r', { Host: 'a.test' }).expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r', { Host: 'b.test' }).expect(200, 'v2').expect('X-Cache', 'MISS')
      expect(h.O.calls).to.equal(2)
      await h.get('/r', { Host: 'a.test' }).expect(200, 'v1').expect('X-Cache', 'HIT')
    })

    it('7a: HEAD served from GET — same status and headers (full Content-Length), empty body, no origin call', async () => {
      const h = await setup(s)
      h.O.headers = { ...CC60, 'X-Custom': 'abc' }
      const get = await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      const head = await h.agent.head('/r').expect(200).expect('X-Cache', 'HIT')
      expect(h.O.calls).to.equal(1)
      expect(head.headers['content-length']).to.equal('2')
      expect(head.headers['content-type']).to.equal(get.headers['content-type'])
      expect(head.headers['cache-control']).to.equal('max-age=60')
      expect(head.headers['x-custom']).to.equal('abc')
      expect(head.headers.etag).to.equal(get.headers.etag)
      expect(head.text ?? '').to.equal('')
    })

    it('7b: HEAD miss is passed through (MISS) and not stored; a following GET is a MISS', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      await h.agent.head('/x').expect(200).expect('X-Cache', 'MISS')
      expect(h.O.calls).to.equal(1)
      expect(h.O.seen[0].method).to.equal('HEAD')
      await h.get('/x').expect(200, 'v2').expect('X-Cache', 'MISS')
      expect(h.O.calls).to.equal(2)
    })

    it('8: unsafe and other methods are never served from cache — BYPASS, origin called every time', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      const methods = ['post', 'put', 'patch', 'delete', 'options'] as const
      for (const method of methods) {
        // Re-store /r before each method (a successful unsafe request invalidates it).
        await h.get('/r')
        const calls = h.O.calls
        const stored = await h.get('/r').expect('X-Cache', 'HIT')
        const res = await h.agent[method]('/r').expect('X-Cache', 'BYPASS')
        expect(h.O.calls, method).to.equal(calls + 1)
        expect(h.O.seen[h.O.calls - 1].method).to.equal(method.toUpperCase())
        expect(res.text, method).to.equal(`v${calls + 1}`)
        expect(res.text, method).not.to.equal(stored.text)
      }
    })

    it('9: unknown request directives are ignored — Cache-Control: nothing-to-see-here, Pragma: foo → HIT', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r', { 'Cache-Control': 'nothing-to-see-here', Pragma: 'foo' }).expect(200, 'v1').expect('X-Cache', 'HIT')
      await h.get('/r', { Pragma: 'foo' }).expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(h.O.calls).to.equal(1)
    })
  })
}
