/** test/CHECKLIST.md B (items 10–28): storage eligibility, on every store. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { expect } from 'chai'
import { cacheRoute } from '../../../src/route.js'
import { binary, closeAll, httpDate, setup, storeFactories, type Harness } from '../../support/app.js'

const CC60 = { 'Cache-Control': 'max-age=60' }

/** Request twice; the second must reach the origin (nothing usable was stored). */
async function expectNotReused(h: Harness, path: string, headers: Record<string, string | string[]>) {
  h.O.headers = headers
  const before = h.O.calls
  await h.get(path).expect(200, `v${before + 1}`)
  const second = await h.get(path).expect(200, `v${before + 2}`)
  expect(second.headers['x-cache'], path).not.to.equal('HIT')
  expect(h.O.calls, path).to.equal(before + 2)
}

for (const s of storeFactories) {
  describe(`checklist B — storage eligibility (on ${s.name})`, function () {
    afterEach(closeAll)

    it('10: no-store (case-insensitive) — Cache-Control: No-Store, max-age=60 is never stored', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'No-Store, max-age=60' }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
      expect(h.O.calls).to.equal(2)
    })

    it('11: private (shared cache) — private, max-age=60 is never stored', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'private, max-age=60' }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
      expect(h.O.calls).to.equal(2)
    })

    it('12: qualified private="set-cookie" is treated as private — the listed field is never replayed', async () => {
      const h = await setup(s)
      h.O.script = (n) => ({ headers: { 'Cache-Control': 'private="set-cookie", max-age=60', 'Set-Cookie': `sid=${n}` } })
      const first = await h.get('/r').expect(200, 'v1')
      expect(first.headers['set-cookie']).to.deep.equal(['sid=1'])
      const second = await h.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
      expect(second.headers['set-cookie']).to.deep.equal(['sid=2'])
      expect(h.O.calls).to.equal(2)
    })

    it('13: response no-cache is never served without validation — a 304 from O gives 200 REVALIDATED', async () => {
      const h = await setup(s)
      h.O.script = (n, req) =>
        n > 1 && req.headers['if-none-match'] === '"e1"'
          ? { status: 304, headers: { 'Cache-Control': 'no-cache, max-age=60', ETag: '"e1"' } }
          : { headers: { 'Cache-Control': 'no-cache, max-age=60', ETag: '"e1"' } }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      const second = await h.get('/r').expect(200, 'v1').expect('X-Cache', 'REVALIDATED')
      expect(h.O.calls).to.equal(2)
      expect(h.O.seen[1].headers['if-none-match']).to.equal('"e1"')
      expect(second.headers.etag).to.equal('"e1"')
      // Still no-cache: the third request is validated again.
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'REVALIDATED')
      expect(h.O.calls).to.equal(3)
    })

    it('14: max-age=0, max-age=-1 and max-age=abc are never served without contacting O', async () => {
      const h = await setup(s)
      await expectNotReused(h, '/zero', { 'Cache-Control': 'max-age=0' })
      await expectNotReused(h, '/negative', { 'Cache-Control': 'max-age=-1' })
      await expectNotReused(h, '/invalid', { 'Cache-Control': 'max-age=abc' })
    })

    it('15a: s-maxage beats max-age — max-age=3600, s-maxage=1 is stale after 1.5 s', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'max-age=3600, s-maxage=1' }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      h.clock.advance(1500)
      await h.get('/r').expect(200, 'v2')
      expect(h.O.calls).to.equal(2)
    })

    it('15b: s-maxage beats max-age — max-age=1, s-maxage=60 is still a HIT after 1.5 s', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'max-age=1, s-maxage=60' }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      h.clock.advance(1500)
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(h.O.calls).to.equal(1)
    })

    it('16a: Expires in the past is not reused', async () => {
      const h = await setup(s)
      await expectNotReused(h, '/r', { Expires: httpDate(h.clock.now() - 3_600_000) })
    })

    it('16b: Expires: 0 is not reused', async () => {
      const h = await setup(s)
      await expectNotReused(h, '/r', { Expires: '0' })
    })

    it('16c: a future Expires with a "UTC" zone is invalid and not reused', async () => {
      const h = await setup(s)
      await expectNotReused(h, '/r', { Expires: httpDate(h.clock.now() + 3_600_000).replace('GMT', 'UTC') })
    })

    it('16d: max-age=60 with a past Expires is a HIT (max-age wins)', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'max-age=60', Expires: httpDate(h.clock.now() - 3_600_000) }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(h.O.calls).to.equal(1)
    })

    it('16e: a future IMF-fixdate Expires without Cache-Control is a HIT until that time', async () => {
      const h = await setup(s)
      h.O.headers = { Expires: httpDate(h.clock.now() + 10_000) }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      h.clock.advance(5000)
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      h.clock.advance(6000)
      await h.get('/r').expect(200, 'v2')
      expect(h.O.calls).to.equal(2)
    })

    it('17a: quoted strings do not create directives — foo="max-age=999, public", no-store is not stored', async () => {
      const h = await setup(s)
      await expectNotReused(h, '/r', { 'Cache-Control': 'foo="max-age=999, public", no-store' })
    })

    it('17b: quoted strings do not create directives — max-age=1, foo="max-age=999" is stale after 1 s', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': 'max-age=1, foo="max-age=999"' }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      h.clock.advance(1500)
      const res = await h.get('/r').expect(200, 'v2')
      expect(res.headers['x-cache']).not.to.equal('HIT')
      expect(h.O.calls).to.equal(2)
    })

    it('18: duplicate directives — max-age=1 and a second line max-age=3600 is not fresh after 1.5 s', async () => {
      const h = await setup(s)
      h.O.headers = { 'Cache-Control': ['max-age=1', 'max-age=3600'] }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      h.clock.advance(1500)
      const res = await h.get('/r').expect(200, 'v2')
      expect(res.headers['x-cache']).not.to.equal('HIT')
      expect(h.O.calls).to.equal(2)
    })

    it('19a: status allow-list — 200 203 204 300 301 308 404 405 410 414 501 with max-age=60 are stored', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      for (const status of [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]) {
        h.O.status = status
        const calls = h.O.calls
        await h.get(`/s${status}`).expect(status).expect('X-Cache', 'MISS')
        h.O.status = 200 // a HIT must replay the stored status, not the origin's current one
        const hit = await h.get(`/s${status}`).expect(status).expect('X-Cache', 'HIT')
        if (status !== 204) expect(hit.text, String(status)).to.equal(`v${calls + 1}`)
        expect(h.O.calls, String(status)).to.equal(calls + 1)
      }
    })

    it('19b: status allow-list — 201 202 302 307 400 401 403 500 502 503 504 are not stored by the ttl fallback', async () => {
      const h = await setup(s, { options: { ttl: '1m' } })
      for (const status of [201, 202, 302, 307, 400, 401, 403, 500, 502, 503, 504]) {
        h.O.status = status
        const calls = h.O.calls
        await h.get(`/s${status}`).expect(status).expect('X-Cache', 'MISS')
        await h.get(`/s${status}`).expect(status).expect('X-Cache', 'MISS')
        expect(h.O.calls, String(status)).to.equal(calls + 2)
      }
    })

    it('19b: any final status with explicit freshness is stored (RFC 9111 §3) — 302 and 503 with max-age=60', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      for (const status of [302, 503]) {
        h.O.status = status
        const calls = h.O.calls
        await h.get(`/e${status}`).expect(status).expect('X-Cache', 'MISS')
        await h.get(`/e${status}`).expect(status).expect('X-Cache', 'HIT')
        expect(h.O.calls, String(status)).to.equal(calls + 1)
      }
    })

    it('19c: status allow-list — 206 is not stored', async () => {
      const h = await setup(s)
      h.O.status = 206
      h.O.headers = { ...CC60, 'Content-Range': 'bytes 0-1/10' }
      await h.get('/r').expect(206, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r').expect(206, 'v2').expect('X-Cache', 'MISS')
      expect(h.O.calls).to.equal(2)
    })

    it('20a: defaultTtl (ttl option) stores a response whose headers are silent', async () => {
      const h = await setup(s, { options: { ttl: 30 } })
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      h.clock.advance(29_000)
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      h.clock.advance(2000)
      await h.get('/r').expect(200, 'v2')
      expect(h.O.calls).to.equal(2)
    })

    it('20b: defaultTtl never overrides explicit headers — max-age=1 is not served after 1.5 s', async () => {
      const h = await setup(s, { options: { ttl: 30 } })
      h.O.headers = { 'Cache-Control': 'max-age=1' }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      h.clock.advance(1500)
      const res = await h.get('/r').expect(200, 'v2')
      expect(res.headers['x-cache']).not.to.equal('HIT')
      expect(h.O.calls).to.equal(2)
    })

    it('20c: defaultTtl never stores no-store or private responses', async () => {
      const h = await setup(s, { options: { ttl: 30 } })
      await expectNotReused(h, '/no-store', { 'Cache-Control': 'no-store' })
      await expectNotReused(h, '/private', { 'Cache-Control': 'private' })
    })

    it('20d: spec mode (no ttl) does not store a response without caching headers or Last-Modified', async () => {
      const h = await setup(s)
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
      expect(h.O.calls).to.equal(2)
    })

    it('21: Vary: * (also "Accept, *" and two lines of *) is never stored', async () => {
      const h = await setup(s)
      await expectNotReused(h, '/star', { ...CC60, Vary: '*' })
      await expectNotReused(h, '/list', { ...CC60, Vary: 'Accept, *' })
      await expectNotReused(h, '/lines', { ...CC60, Vary: ['*', '*'] })
    })

    it('22a: Set-Cookie with max-age=60 is not stored; the 2nd response carries a fresh cookie, not a replay', async () => {
      const h = await setup(s)
      h.O.script = (n) => ({ headers: { ...CC60, 'Set-Cookie': `sid=${n}` } })
      const first = await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      expect(first.headers['set-cookie']).to.deep.equal(['sid=1'])
      const second = await h.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
      expect(second.headers['set-cookie']).to.deep.equal(['sid=2'])
      expect(h.O.calls).to.equal(2)
    })

    it('22b: Set-Cookie with public, max-age=60 is not stored by default (documented policy)', async () => {
      const h = await setup(s)
      h.O.script = (n) => ({ headers: { 'Cache-Control': 'public, max-age=60', 'Set-Cookie': `sid=${n}` } })
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      const second = await h.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
      expect(second.headers['set-cookie']).to.deep.equal(['sid=2'])
    })

    it('22c: with storeSetCookie: true the response is stored and the HIT never replays the cookie', async () => {
      const h = await setup(s, { options: { storeSetCookie: true } })
      h.O.script = (n) => ({ headers: { 'Cache-Control': 'public, max-age=60', 'Set-Cookie': `sid=${n}` } })
      const first = await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      expect(first.headers['set-cookie']).to.deep.equal(['sid=1'])
      const hit = await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(hit.headers['set-cookie']).to.equal(undefined)
      expect(h.O.calls).to.equal(1)
    })

    it('23: Authorization without explicit permission — not stored (BYPASS), never served to others', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      await h.get('/r', { Authorization: 'Bearer A' }).expect(200, 'v1').expect('X-Cache', 'BYPASS')
      await h.get('/r', { Authorization: 'Bearer B' }).expect(200, 'v2')
      expect(h.O.calls).to.equal(2)
      const anonymous = await h.get('/r').expect(200, 'v3').expect('X-Cache', 'MISS')
      expect(anonymous.text).not.to.equal('v1')
      expect(h.O.calls).to.equal(3)
    })

    for (const cc of ['public, max-age=60', 's-maxage=60', 'max-age=60, must-revalidate']) {
      it(`24: Authorization with explicit permission (${cc}) is stored and served while fresh`, async () => {
        const h = await setup(s)
        h.O.headers = { 'Cache-Control': cc }
        await h.get('/r', { Authorization: 'Bearer A' }).expect(200, 'v1').expect('X-Cache', 'MISS')
        await h.get('/r', { Authorization: 'Bearer B' }).expect(200, 'v1').expect('X-Cache', 'HIT')
        await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
        expect(h.O.calls).to.equal(1)
      })
    }

    it('25a: a request Cookie alone does not skip the cache in spec mode (the response headers decide)', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      await h.get('/r', { Cookie: 'sid=1' }).expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r', { Cookie: 'sid=2' }).expect(200, 'v1').expect('X-Cache', 'HIT')
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(h.O.calls).to.equal(1)
    })

    it('25b: a response with Vary: Cookie is keyed by the cookie', async () => {
      const h = await setup(s)
      h.O.headers = { ...CC60, Vary: 'Cookie' }
      await h.get('/r', { Cookie: 'sid=1' }).expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r', { Cookie: 'sid=2' }).expect(200, 'v2').expect('X-Cache', 'MISS')
      await h.get('/r', { Cookie: 'sid=1' }).expect(200, 'v1').expect('X-Cache', 'HIT')
    })

    it('25c: with the ttl fallback, a request carrying Cookie (or Authorization) is not stored', async () => {
      const h = await setup(s, { options: { ttl: 30 } })
      await h.get('/r', { Cookie: 'sid=1' }).expect(200, 'v1')
      await h.get('/r', { Cookie: 'sid=1' }).expect(200, 'v2').expect('X-Cache', 'MISS')
      const plain = await h.get('/r').expect(200, 'v3').expect('X-Cache', 'MISS')
      expect(plain.text).not.to.equal('v1')
      await h.get('/a', { Authorization: 'Bearer A' }).expect(200, 'v4')
      await h.get('/a').expect(200, 'v5').expect('X-Cache', 'MISS')
      expect(h.O.calls).to.equal(5)
    })

    it('25d: cacheRoute(ttl, { allowCookies: true }) opts a route in to storing requests with Cookie', async () => {
      const h = await setup(s, {
        routes(app, O) {
          app.get('/opt-in', cacheRoute(30, { allowCookies: true }), O.handle)
          app.get('/default', cacheRoute(30), O.handle)
        },
      })
      await h.get('/opt-in', { Cookie: 'sid=1' }).expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/opt-in', { Cookie: 'sid=1' }).expect(200, 'v1').expect('X-Cache', 'HIT')
      await h.get('/default', { Cookie: 'sid=1' }).expect(200, 'v2')
      await h.get('/default', { Cookie: 'sid=1' }).expect(200, 'v3').expect('X-Cache', 'MISS')
    })

    it('26: request no-store — the response is not stored; the next plain GET is a MISS', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      await h.get('/r', { 'Cache-Control': 'no-store' }).expect(200, 'v1')
      await h.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
      expect(h.O.calls).to.equal(2)
    })

    it('27: hop-by-hop fields are stripped; unknown end-to-end fields are replayed unchanged', async () => {
      const h = await setup(s)
      const csp = "default-src 'self'; img-src https://img.test"
      h.O.headers = {
        ...CC60,
        Connection: 'X-Foo',
        'X-Foo': '1',
        'Keep-Alive': 'timeout=5',
        'Proxy-Authenticate': 'Basic realm="p"',
        'X-Test': '1',
        'Content-Security-Policy': csp,
      }
      await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      const hit = await h.get('/r').set('Connection', 'close').expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(hit.headers).not.to.have.property('x-foo')
      expect(hit.headers).not.to.have.property('keep-alive')
      expect(hit.headers).not.to.have.property('transfer-encoding')
      expect(hit.headers).not.to.have.property('te')
      expect(hit.headers).not.to.have.property('upgrade')
      for (const name of Object.keys(hit.headers)) expect(name).not.to.match(/^proxy-/)
      expect(hit.headers['x-test']).to.equal('1')
      expect(hit.headers['content-security-policy']).to.equal(csp)
    })

    it('28a: body fidelity — a 64 KiB binary body (all 256 byte values) is replayed byte for byte', async () => {
      const h = await setup(s)
      const body = Buffer.alloc(64 * 1024)
      for (let i = 0; i < body.length; i++) body[i] = (i * 7 + (i >> 8)) & 0xff
      h.O.script = () => ({ headers: { ...CC60, 'Content-Type': 'application/octet-stream' }, body })
      const miss = await h.get('/bin').buffer(true).parse(binary).expect(200).expect('X-Cache', 'MISS')
      expect(Buffer.compare(miss.body as Buffer, body)).to.equal(0)
      const hit = await h.get('/bin').buffer(true).parse(binary).expect(200).expect('X-Cache', 'HIT')
      expect(Buffer.compare(hit.body as Buffer, body)).to.equal(0)
      expect(new Set(hit.body as Buffer).size).to.equal(256)
      expect(hit.headers['content-length']).to.equal(String(body.length))
      expect(hit.headers['content-type']).to.equal('application/octet-stream')
    })

    it('28b: body fidelity — a body streamed with res.write() × N is replayed byte for byte', async () => {
      const parts = Array.from({ length: 50 }, (_, i) => `chunk-${i}-${'x'.repeat(i * 10)}\n`)
      const h = await setup(s, {
        routes(app, O) {
          app.get('/stream', (req: IncomingMessage, res: ServerResponse) => {
            O.calls++
            res.setHeader('Cache-Control', 'max-age=60')
            res.setHeader('Content-Type', 'text/x-stream; charset=utf-8')
            let i = 0
            const pump = () => {
              if (i === parts.length) return res.end()
              res.write(parts[i++])
              setImmediate(pump)
            }
            pump()
          })
        },
      })
      const whole = parts.join('')
      await h.get('/stream').expect(200, whole).expect('X-Cache', 'MISS')
      const hit = await h.get('/stream').expect(200, whole).expect('X-Cache', 'HIT')
      expect(hit.headers['content-length']).to.equal(String(Buffer.byteLength(whole)))
      expect(hit.headers['content-type']).to.equal('text/x-stream; charset=utf-8')
      expect(h.O.calls).to.equal(1)
    })
  })
}
