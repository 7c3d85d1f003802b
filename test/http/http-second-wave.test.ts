/** RFC 9110 §14 ranges from the cache, RFC 9211 Cache-Status, RFC 9213 targeted fields and cacheRoute override, through the flow on every store. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { expect } from 'chai'
import express from 'express'
import { cacheRoute } from '../../src/route.js'
import { closeAll, rawRequest, rawValues, setup, storeFactories, binary } from '../support/app.js'

const STORES = storeFactories.filter((s) => s.name === 'memory' || s.name === 'redis' || s.name === 'memcached')
const TEN = 'abcdefghij'

for (const s of STORES) {
  describe(`second-wave HTTP (on ${s.name})`, function () {
    this.timeout(20_000)
    afterEach(closeAll)

    describe('Range requests answered from a stored 200 (RFC 9110 §14)', () => {
      const stored = async () => {
        const h = await setup(s)
        h.O.headers = { 'Cache-Control': 'max-age=60', ETag: '"r1"', 'Content-Type': 'text/plain' }
        h.O.script = () => ({ body: TEN })
        await h.get('/f').expect(200, TEN).expect('X-Cache', 'MISS')
        return h
      }

      it('should answer a single range with 206 and Content-Range', async () => {
        const h = await stored()
        const res = await h.get('/f', { Range: 'bytes=0-3' }).expect(206, 'abcd').expect('X-Cache', 'HIT')
        expect(res.headers['content-range']).to.equal('bytes 0-3/10')
        expect(res.headers['content-length']).to.equal('4')
        expect(h.O.calls).to.equal(1)
      })

      it('should answer a suffix range', async () => {
        const h = await stored()
        await h.get('/f', { Range: 'bytes=-3' }).expect(206, 'hij')
      })

      it('should answer an unsatisfiable range with 416 and Content-Range: bytes */len', async () => {
        const h = await stored()
        const res = await h.get('/f', { Range: 'bytes=20-30' }).expect(416)
        expect(res.headers['content-range']).to.equal('bytes */10')
      })

      it('should honour If-Range with a matching strong ETag, and send the whole 200 for a stale one', async () => {
        const h = await stored()
        await h.get('/f', { Range: 'bytes=2-4', 'If-Range': '"r1"' }).expect(206, 'cde')
        await h.get('/f', { Range: 'bytes=2-4', 'If-Range': '"old"' }).expect(200, TEN)
      })

      it('should answer several ranges as multipart/byteranges', async () => {
        const h = await stored()
        const res = await h.get('/f', { Range: 'bytes=0-1,4-5' }).buffer(true).parse(binary).expect(206)
        expect(res.headers['content-type']).to.match(/^multipart\/byteranges; boundary=/)
        const text = (res.body as Buffer).toString()
        expect(text).to.contain('Content-Range: bytes 0-1/10')
        expect(text).to.contain('Content-Range: bytes 4-5/10')
        expect(text).to.contain('ab')
        expect(text).to.contain('ef')
      })

      it('should send a Range request on a miss to the app unchanged and never store its 206', async () => {
        const dir = mkdtempSync(path.join(tmpdir(), 'cachet-range-'))
        try {
          writeFileSync(path.join(dir, 'a.txt'), TEN)
          const h = await setup(s, { options: { ttl: '1m' }, routes: (app) => app.use(express.static(dir)) })
          const part = await rawRequest(h.port, '/a.txt', { Range: 'bytes=0-1' })
          expect(part.status).to.equal(206)
          expect(part.body.toString()).to.equal('ab')
          // The 206 was not stored: the next full GET goes to the app, and only its 200 is stored.
          const full = await rawRequest(h.port, '/a.txt')
          expect(full.status).to.equal(200)
          expect(rawValues(full.rawHeaders, 'x-cache')).to.not.deep.equal(['HIT'])
        } finally {
          rmSync(dir, { recursive: true, force: true })
        }
      })
    })

    describe('Cache-Status (RFC 9211)', () => {
      it('should say a stored miss, then a hit, with the freshness left', async () => {
        const h = await setup(s)
        h.O.headers = { 'Cache-Control': 'max-age=60' }
        const miss = await h.get('/c').expect(200)
        expect(miss.headers['cache-status']).to.equal('cachet; fwd=uri-miss; stored; ttl=60')
        h.clock.advance(10_000)
        const hit = await h.get('/c').expect('X-Cache', 'HIT')
        expect(hit.headers['cache-status']).to.equal('cachet; hit; ttl=50')
      })

      it('should say why a response was not stored', async () => {
        const h = await setup(s)
        h.O.headers = { 'Cache-Control': 'private, max-age=60' }
        const res = await h.get('/p').expect(200)
        expect(res.headers['cache-status']).to.match(/^cachet; fwd=uri-miss; detail="[^"]*private[^"]*"$/)
      })

      it('should mark unsafe methods as forwarded for their method', async () => {
        const h = await setup(s)
        const res = await h.agent.post('/x').expect(200)
        expect(res.headers['cache-status']).to.equal('cachet; fwd=method')
      })

      it('should append to a Cache-Status the app or an upstream set, on the miss and on the hit', async () => {
        const h = await setup(s)
        h.O.headers = { 'Cache-Control': 'max-age=60', 'Cache-Status': 'upstream; hit' }
        const miss = await h.get('/u').expect(200)
        expect(miss.headers['cache-status']).to.equal('upstream; hit, cachet; fwd=uri-miss; stored; ttl=60')
        const hit = await h.get('/u').expect('X-Cache', 'HIT')
        expect(hit.headers['cache-status']).to.equal('upstream; hit, cachet; hit; ttl=60')
      })

      it('should add nothing with cacheStatus: false', async () => {
        const h = await setup(s, { options: { cacheStatus: false } })
        h.O.headers = { 'Cache-Control': 'max-age=60' }
        expect((await h.get('/n')).headers['cache-status']).to.equal(undefined)
        expect((await h.get('/n').expect('X-Cache', 'HIT')).headers['cache-status']).to.equal(undefined)
      })
    })

    describe('targeted cache-control (RFC 9213)', () => {
      const targets = ['cachet-cache-control', 'cdn-cache-control']

      it("should store by the first targeted field present, remove cachet's own, and leave Cache-Control to the client", async () => {
        const h = await setup(s, { options: { targets } })
        h.O.headers = { 'Cache-Control': 'no-store', 'Cachet-Cache-Control': 'max-age=60', 'CDN-Cache-Control': 'no-store' }
        const miss = await h.get('/t').expect(200, 'v1').expect('X-Cache', 'MISS')
        expect(miss.headers['cache-control']).to.equal('no-store')
        expect(miss.headers['cachet-cache-control']).to.equal(undefined)
        expect(miss.headers['cdn-cache-control']).to.equal('no-store')
        await h.get('/t').expect(200, 'v1').expect('X-Cache', 'HIT')
      })

      it('should obey a targeted no-store over a storable Cache-Control', async () => {
        const h = await setup(s, { options: { targets } })
        h.O.headers = { 'Cache-Control': 'max-age=60', 'CDN-Cache-Control': 'no-store' }
        await h.get('/n').expect(200, 'v1')
        await h.get('/n').expect(200, 'v2').expect('X-Cache', 'MISS')
      })

      it('should ignore an invalid targeted field and fall back to Cache-Control', async () => {
        const h = await setup(s, { options: { targets } })
        h.O.headers = { 'Cache-Control': 'max-age=60', 'Cachet-Cache-Control': 'max-age=60, =broken' }
        await h.get('/i').expect(200, 'v1')
        await h.get('/i').expect(200, 'v1').expect('X-Cache', 'HIT')
      })
    })

    describe('cacheRoute(ttl, { override: true })', () => {
      it("should let the route ttl win over max-age=0 for the cache, and leave the client's Cache-Control as sent", async () => {
        let n = 0
        const h = await setup(s, {
          routes: (app) => {
            app.get('/static', cacheRoute('1h', { override: true }), (_req, res) => {
              res.set('Cache-Control', 'public, max-age=0').send(`v${++n}`)
            })
            app.get('/plain', cacheRoute('1h'), (_req, res) => {
              res.set('Cache-Control', 'public, max-age=0').send(`p${++n}`)
            })
          },
        })
        await h.get('/static').expect(200, 'v1')
        const hit = await h.get('/static').expect(200, 'v1').expect('X-Cache', 'HIT')
        expect(hit.headers['cache-control']).to.equal('public, max-age=0')
        expect(n).to.equal(1)
        // Without override, max-age=0 means "revalidate every time": the handler runs again.
        await h.get('/plain').expect(200, 'p2')
        h.clock.advance(1000)
        const again = await h.get('/plain').expect(200, 'p3')
        expect(again.headers['x-cache']).to.not.equal('HIT')
        expect(n).to.equal(3)
      })

      it('should never override no-store', async () => {
        let n = 0
        const h = await setup(s, {
          routes: (app) =>
            app.get('/secret', cacheRoute('1h', { override: true }), (_req, res) => {
              res.set('Cache-Control', 'no-store').send(`s${++n}`)
            }),
        })
        await h.get('/secret').expect(200, 's1')
        await h.get('/secret').expect(200, 's2')
      })
    })
  })
}
