/** test/CHECKLIST.md D (items 37–45): conditional requests and ETag, on every store. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type express from 'express'
import { expect } from 'chai'
import { closeAll, httpDate, setup, storeFactories, type Harness, type Reply } from '../../support/app.js'

const HOUR = 3_600_000

/** Store `/r` with the given headers (MISS then HIT), so conditionals are answered from the entry. */
async function stored(h: Harness, headers: Record<string, string | string[]>, path = '/r') {
  h.O.headers = headers
  const full = await h.get(path).expect(200, 'v1').expect('X-Cache', 'MISS')
  await h.get(path).expect(200, 'v1').expect('X-Cache', 'HIT')
  return full
}

for (const s of storeFactories) {
  describe(`checklist D — conditional requests and ETag (on ${s.name})`, function () {
    afterEach(closeAll)

    it('37a: strong If-None-Match → 304 HIT with ETag, Cache-Control, Date, Vary, Expires, Content-Location; no body', async () => {
      const h = await setup(s)
      const full = await stored(h, {
        'Cache-Control': 'max-age=60',
        ETag: '"v1"',
        Expires: httpDate(h.clock.now() + 60_000),
        'Content-Location': '/r.txt',
        Vary: 'Accept-Language',
      })
      const res = await h.get('/r', { 'If-None-Match': '"v1"' }).expect(304).expect('X-Cache', 'HIT')
      expect(res.text ?? '').to.equal('')
      expect(h.O.calls).to.equal(1)
      for (const name of ['etag', 'cache-control', 'date', 'vary', 'expires', 'content-location']) {
        expect(res.headers[name], name).to.equal(full.headers[name])
      }
      expect(res.headers.etag).to.equal('"v1"')
      expect(res.headers).not.to.have.property('content-type')
    })

    it('37b: the 304 carries Expires, Content-Location and Vary only when the 200 has them; never Content-Type or Set-Cookie', async () => {
      const h = await setup(s, { options: { storeSetCookie: true } })
      await stored(h, { 'Cache-Control': 'public, max-age=60', ETag: '"v1"', 'Set-Cookie': 'sid=1' })
      const res = await h.get('/r', { 'If-None-Match': '"v1"' }).expect(304).expect('X-Cache', 'HIT')
      expect(res.headers.etag).to.equal('"v1"')
      expect(res.headers['cache-control']).to.equal('public, max-age=60')
      expect(res.headers).to.have.property('date')
      for (const name of ['expires', 'content-location', 'vary', 'content-type', 'set-cookie']) {
        expect(res.headers, name).not.to.have.property(name)
      }
      expect(h.O.calls).to.equal(1)
    })

    it('38a: weak comparison — stored W/"v1", If-None-Match: "v1" → 304', async () => {
      const h = await setup(s)
      await stored(h, { 'Cache-Control': 'max-age=60', ETag: 'W/"v1"' })
      await h.get('/r', { 'If-None-Match': '"v1"' }).expect(304)
      expect(h.O.calls).to.equal(1)
    })

    it('38b: weak comparison — stored "v1", If-None-Match: W/"v1" → 304', async () => {
      const h = await setup(s)
      await stored(h, { 'Cache-Control': 'max-age=60', ETag: '"v1"' })
      await h.get('/r', { 'If-None-Match': 'W/"v1"' }).expect(304)
      expect(h.O.calls).to.equal(1)
    })

    it('38c: stored "v1", If-None-Match: "v2" → 200 with the full body', async () => {
      const h = await setup(s)
      await stored(h, { 'Cache-Control': 'max-age=60', ETag: '"v1"' })
      await h.get('/r', { 'If-None-Match': '"v2"' }).expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(h.O.calls).to.equal(1)
    })

    it('39a: If-None-Match list "x", "v1", "y" → 304', async () => {
      const h = await setup(s)
      await stored(h, { 'Cache-Control': 'max-age=60', ETag: '"v1"' })
      await h.get('/r', { 'If-None-Match': '"x", "v1", "y"' }).expect(304)
    })

    it('39b: If-None-Match list "x", "y" → 200', async () => {
      const h = await setup(s)
      await stored(h, { 'Cache-Control': 'max-age=60', ETag: '"v1"' })
      await h.get('/r', { 'If-None-Match': '"x", "y"' }).expect(200, 'v1')
    })

    it('39c: If-None-Match: * with an entry present → 304', async () => {
      const h = await setup(s)
      await stored(h, { 'Cache-Control': 'max-age=60', ETag: '"v1"' })
      await h.get('/r', { 'If-None-Match': '*' }).expect(304)
      expect(h.O.calls).to.equal(1)
    })

    describe('40: If-Modified-Since against a stored Last-Modified L', function () {
      const cases: [string, (l: number) => string, number][] = [
        ['IMS = L → 304', (l) => httpDate(l), 304],
        ['IMS = L + 1 h → 304', (l) => httpDate(l + HOUR), 304],
        ['IMS = L − 1 h → 200', (l) => httpDate(l - HOUR), 200],
        ['IMS invalid ("yesterday") → 200', () => 'yesterday', 200],
      ]
      for (const [label, ims, status] of cases) {
        it(`40: ${label}`, async () => {
          const h = await setup(s)
          const l = h.clock.now() - 24 * HOUR
          await stored(h, { 'Cache-Control': 'max-age=60', 'Last-Modified': httpDate(l) })
          const res = await h
            .get('/r', { 'If-Modified-Since': ims(l) })
            .expect(status)
            .expect('X-Cache', 'HIT')
          expect(res.text ?? '').to.equal(status === 200 ? 'v1' : '')
          expect(h.O.calls).to.equal(1)
        })
      }

      it('40: stored response without Last-Modified — IMS ≥ stored Date → 304', async () => {
        const h = await setup(s)
        const full = await stored(h, { 'Cache-Control': 'max-age=60' })
        await h.get('/r', { 'If-Modified-Since': full.headers.date }).expect(304).expect('X-Cache', 'HIT')
        await h.get('/r', { 'If-Modified-Since': httpDate(Date.parse(full.headers.date) + HOUR) }).expect(304)
        await h.get('/r', { 'If-Modified-Since': httpDate(Date.parse(full.headers.date) - HOUR) }).expect(200, 'v1')
      })
    })

    it('41a: precedence — If-None-Match "zzz" + If-Modified-Since L+1h → 200 (IMS ignored when INM present)', async () => {
      const h = await setup(s)
      const l = h.clock.now() - 24 * HOUR
      await stored(h, { 'Cache-Control': 'max-age=60', ETag: '"v1"', 'Last-Modified': httpDate(l) })
      await h.get('/r', { 'If-None-Match': '"zzz"', 'If-Modified-Since': httpDate(l + HOUR) }).expect(200, 'v1')
    })

    it('41b: precedence — If-None-Match "v1" + If-Modified-Since L−1h → 304', async () => {
      const h = await setup(s)
      const l = h.clock.now() - 24 * HOUR
      await stored(h, { 'Cache-Control': 'max-age=60', ETag: '"v1"', 'Last-Modified': httpDate(l) })
      await h.get('/r', { 'If-None-Match': '"v1"', 'If-Modified-Since': httpDate(l - HOUR) }).expect(304)
    })

    it('42a: a conditional MISS may answer 304, but the entry stored is the full 200', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'max-age=60', ETag: '"v1"' }
      const first = await h.get('/r', { 'If-None-Match': '"v1"' })
      expect(first.status).to.be.oneOf([200, 304])
      expect(h.O.calls).to.equal(1)
      expect(h.O.seen[0].headers, 'the client validator is held aside').not.to.have.property('if-none-match')
      const hit = await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(hit.headers['content-length']).to.equal('2')
      expect(h.O.calls).to.equal(1)
    })

    it('42b: a conditional MISS on an Express res.send route (which answers 304 itself) still stores the full body', async () => {
      const h = await setup(s, {
        routes(app: express.Express, O) {
          app.get('/send', (_req: express.Request, res: express.Response) => {
            O.calls++
            res.set('Cache-Control', 'max-age=60').set('ETag', '"v1"').send('full body')
          })
        },
      })
      const first = await h.get('/send', { 'If-None-Match': '"v1"' })
      expect(first.status).to.be.oneOf([200, 304])
      const hit = await h.get('/send').expect(200, 'full body').expect('X-Cache', 'HIT')
      expect(hit.headers['content-length']).to.equal('9')
      expect(h.O.calls).to.equal(1)
    })

    it('43a: generated ETags — the same body gives the same ETag on repeated misses and across processes', async () => {
      const a = await setup(s)
      const b = await setup(s)
      for (const h of [a, b]) h.O.script = () => ({ headers: { 'Cache-Control': 'max-age=60' }, body: 'same body' })
      const one = await a.get('/one').expect(200, 'same body')
      const two = await a.get('/two').expect(200, 'same body')
      const other = await b.get('/one').expect(200, 'same body')
      expect(one.headers.etag).to.be.a('string').and.not.equal('')
      expect(two.headers.etag).to.equal(one.headers.etag)
      expect(other.headers.etag).to.equal(one.headers.etag)
      const hit = await a.get('/one').expect(200, 'same body').expect('X-Cache', 'HIT')
      expect(hit.headers.etag).to.equal(one.headers.etag)
    })

    it('43b: generated ETags — a different body gives a different ETag', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'max-age=60' }
      const one = await h.get('/one').expect(200, 'v1')
      const two = await h.get('/two').expect(200, 'v2')
      expect(one.headers.etag).to.be.a('string')
      expect(two.headers.etag).to.be.a('string').and.not.equal(one.headers.etag)
    })

    it('43c: an ETag provided by O is never replaced', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'max-age=60', ETag: '"mine"' }
      await h.get('/r').expect(200, 'v1').expect('ETag', '"mine"').expect('X-Cache', 'MISS')
      await h.get('/r').expect(200, 'v1').expect('ETag', '"mine"').expect('X-Cache', 'HIT')
    })

    it('44: revalidation of a stale entry — INM sent to O, a 304 freshens the entry, client gets 200 REVALIDATED', async () => {
      const h = await setup(s)
      h.O.script = (n, req): Reply =>
        n === 1
          ? { headers: { 'Cache-Control': 'max-age=1', ETag: '"e1"' } }
          : req.headers['if-none-match'] === '"e1"'
            ? { status: 304, headers: { 'Cache-Control': 'max-age=60', 'X-New': '1', ETag: '"e1"' } }
            : { headers: { 'Cache-Control': 'max-age=60', ETag: '"e2"' } }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      h.clock.advance(1500)
      const res = await h.get('/r').expect(200, 'v1').expect('X-Cache', 'REVALIDATED')
      expect(h.O.calls).to.equal(2)
      expect(h.O.seen[1].headers['if-none-match']).to.equal('"e1"')
      expect(res.headers['x-new']).to.equal('1')
      expect(res.headers['cache-control']).to.equal('max-age=60')
      expect(res.headers['content-length']).to.equal('2')
      h.clock.advance(10_000)
      const next = await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(next.headers['x-new']).to.equal('1')
      expect(h.O.calls).to.equal(2)
    })

    it('44b: a 304 never changes the fields that describe the stored body (ETag, Content-Length, Content-Encoding, digests)', async () => {
      const h = await setup(s)
      const body = { ETag: '"e1"', 'Content-MD5': 'rL0Y20zC+Fzt72VPzMSk2A==', 'Repr-Digest': 'sha-256=:AAA=:' }
      h.O.script = (n): Reply =>
        n === 1
          ? { headers: { 'Cache-Control': 'max-age=1', 'X-Kept': 'a', ...body } }
          : {
              status: 304,
              headers: {
                'Cache-Control': 'max-age=60',
                'X-Kept': 'b',
                ETag: '"other"',
                'Content-MD5': 'N7UdGUp1E+RbVvZSTy1R8g==',
                'Repr-Digest': 'sha-256=:BBB=:',
                'Content-Digest': 'sha-256=:CCC=:',
                'Content-Encoding': 'gzip',
              },
            }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      h.clock.advance(1500)
      for (const label of ['REVALIDATED', 'HIT']) {
        const res = await h.get('/r').expect(200, 'v1').expect('X-Cache', label)
        expect(res.headers['x-kept'], label).to.equal('b') // other fields are updated
        expect(res.headers['cache-control'], label).to.equal('max-age=60')
        expect(res.headers.etag, label).to.equal('"e1"')
        expect(res.headers['content-md5'], label).to.equal(body['Content-MD5'])
        expect(res.headers['repr-digest'], label).to.equal(body['Repr-Digest'])
        expect(res.headers['content-digest'], label).to.equal(undefined)
        expect(res.headers['content-encoding'], label).to.equal(undefined)
        expect(res.headers['content-length'], label).to.equal('2')
      }
      expect(h.O.calls).to.equal(2)
    })

    it('45: conditionals on unsafe methods pass through — PUT with If-None-Match: * reaches O unchanged', async () => {
      const h = await setup(s, {
        routes(app, O) {
          app.use((req: IncomingMessage, res: ServerResponse, next: (e?: unknown) => void) => O.handle(req, res, next))
        },
      })
      await stored(h, { 'Cache-Control': 'max-age=60', ETag: '"v1"' })
      const res = await h.agent.put('/r').set('If-None-Match', '*').expect('X-Cache', 'BYPASS')
      expect(res.status).to.equal(200)
      expect(res.text).to.equal('v2')
      expect(h.O.calls).to.equal(2)
      expect(h.O.seen[1].method).to.equal('PUT')
      expect(h.O.seen[1].headers['if-none-match']).to.equal('*')
    })
  })
}
