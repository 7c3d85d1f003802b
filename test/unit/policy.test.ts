/** RFC 9111 rules: Cache-Control and HTTP-date parsing, and the storage decision (§3, §4.2). */
import { expect } from 'chai'
import {
  parseCacheControl,
  parseHttpDate,
  deltaSeconds,
  parseSurrogateControl,
  parseVary,
  storageDecision,
  type Directives,
  type FreshnessConfig,
  type StorageDecision,
} from '../../src/policy.js'
import { DEFAULT_STATUS_CODES, resolveRoute } from '../../src/options.js'

describe('parseCacheControl()', () => {
  it('should lower-case names and keep the first of duplicates', () => {
    const cc = parseCacheControl(['Max-Age=1', 'max-age=3600, No-Store'])
    expect(cc['max-age']).to.equal('1')
    expect(cc['no-store']).to.equal(true)
  })
  it('should never create directives from quoted strings', () => {
    const cc = parseCacheControl('foo="max-age=999, public", no-store')
    expect(cc.foo).to.equal('max-age=999, public')
    expect(cc.public).to.equal(undefined)
    expect(cc['max-age']).to.equal(undefined)
    expect(cc['no-store']).to.equal(true)
  })
  it('should unescape quoted pairs', () => {
    expect(parseCacheControl('private="a\\"b", x')).to.deep.include({ private: 'a"b', x: true })
  })
  it('should not treat __proto__ or constructor specially', () => {
    const cc = parseCacheControl('__proto__=1, constructor, max-age=5')
    expect(cc['max-age']).to.equal('5')
    expect(Object.getPrototypeOf(cc)).to.equal(null)
  })
  it('should parse a 64 KiB hostile header in linear time without throwing', () => {
    for (const text of ['"'.repeat(65536), ',='.repeat(32768), 'a='.repeat(32768), 'x="\\'.repeat(16384)]) {
      expect(() => parseCacheControl(text)).to.not.throw()
    }
  })
})

describe('deltaSeconds()', () => {
  it('should accept digits only and cap at 2^31', () => {
    expect(deltaSeconds('60', 0)).to.equal(60)
    expect(deltaSeconds('-1', 0)).to.equal(0)
    expect(deltaSeconds('abc', 7)).to.equal(7)
    expect(deltaSeconds('1.5', 7)).to.equal(7)
    expect(deltaSeconds('99999999999999999999', 0)).to.equal(2 ** 31)
    expect(deltaSeconds(true, 3)).to.equal(3)
  })
})

describe('parseHttpDate()', () => {
  const t = Date.UTC(1994, 10, 6, 8, 49, 37)
  it('should read IMF-fixdate, RFC 850 and asctime', () => {
    expect(parseHttpDate('Sun, 06 Nov 1994 08:49:37 GMT')).to.equal(t)
    expect(parseHttpDate('Sunday, 06-Nov-94 08:49:37 GMT')).to.equal(t)
    expect(parseHttpDate('Sun Nov  6 08:49:37 1994')).to.equal(t)
  })
  it('should reject anything else as invalid', () => {
    for (const v of ['0', '-1', 'Sun, 06 Nov 1994 08:49:37 UTC', '1994-11-06T08:49:37Z', 'yesterday', 'Sun, 31 Feb 1994 08:49:37 GMT', '']) {
      expect(Number.isNaN(parseHttpDate(v)), v).to.equal(true)
    }
  })
})

describe('parseVary()', () => {
  it('should lower-case, sort and deduplicate, and spot *', () => {
    expect(parseVary('Accept-Language, accept-encoding, ACCEPT-LANGUAGE')).to.deep.equal(['accept-encoding', 'accept-language'])
    expect(parseVary(['Accept', '*'])).to.deep.equal(['*'])
  })
})

describe('parseSurrogateControl()', () => {
  it('should take the untargeted members when none is targeted at this surrogate, and forward the rest', () => {
    const sc = parseSurrogateControl('MAX-AGE=60, no-store-remote, max-age=5;cdn', 'cachet')
    expect(sc?.directives).to.deep.equal({ 'max-age': '60', 'no-store-remote': true })
    expect(sc?.forward).to.equal('max-age=5;cdn')
  })
  it('should prefer members targeted at its token (any case) and leave the untargeted ones for others', () => {
    const sc = parseSurrogateControl(['no-store', 'max-age=30;Cachet'], 'cachet')
    expect(sc?.directives).to.deep.equal({ 'max-age': '30' })
    expect(sc?.forward).to.equal('no-store')
  })
  it('should forward nothing when it took every member', () => {
    expect(parseSurrogateControl('max-age=30;edge-1, no-store;edge-1', 'edge-1')).to.deep.equal({
      directives: { 'max-age': '30', 'no-store': true },
      forward: undefined,
    })
  })
  it('should return undefined when nothing applies here', () => {
    expect(parseSurrogateControl(undefined, 'cachet')).to.equal(undefined)
    expect(parseSurrogateControl('max-age=30;cdn', 'cachet')).to.equal(undefined)
    expect(parseSurrogateControl(' , ', 'cachet')).to.equal(undefined)
  })
  it('should not split inside quoted strings', () => {
    const sc = parseSurrogateControl('content="ESI/1.0, x;y";cachet, max-age=9', 'cachet')
    expect(sc?.directives).to.deep.equal({ content: 'ESI/1.0, x;y' })
    expect(sc?.forward).to.equal('max-age=9')
  })
})

describe('storageDecision()', () => {
  const now = Date.UTC(2026, 0, 1, 12, 0, 0)
  const date = new Date(now).toUTCString()
  const base = {
    requestHeaders: {},
    requestCC: {},
    statusCodes: new Set(DEFAULT_STATUS_CODES),
    storeSetCookie: false,
    allowCookies: false,
    now,
  }
  const silent: FreshnessConfig = { heuristicFraction: 0.1, maxHeuristicTtl: 3_600_000 }
  type Row = {
    name: string
    status?: number
    headers?: Record<string, string | string[]>
    requestHeaders?: Record<string, string>
    freshness?: Partial<FreshnessConfig>
    targeted?: Directives
    surrogate?: string
    store: boolean
    lifetime?: number
    mustRevalidate?: boolean
    reason?: RegExp
  }
  function decide(row: Row): StorageDecision {
    return storageDecision({
      ...base,
      status: row.status ?? 200,
      headers: { date, ...row.headers },
      requestHeaders: row.requestHeaders ?? {},
      freshness: { ...silent, ...row.freshness },
      targeted: row.targeted,
      surrogate: row.surrogate === undefined ? undefined : parseSurrogateControl(row.surrogate, 'cachet'),
    })
  }
  function check(rows: Row[]): void {
    for (const row of rows) {
      it(`should ${row.store ? 'store' : 'not store'} ${row.name}`, () => {
        const d = decide(row)
        expect(d.store, row.name).to.equal(row.store)
        if (d.store) {
          if (row.lifetime !== undefined) expect(d.lifetime, row.name).to.equal(row.lifetime)
          if (row.mustRevalidate !== undefined) expect(d.mustRevalidate, row.name).to.equal(row.mustRevalidate)
        } else if (row.reason !== undefined) {
          expect(d.reason, row.name).to.match(row.reason)
        }
      })
    }
  }

  describe('when a final status outside statusCodes carries explicit freshness (RFC 9111 §3)', () => {
    check([
      { name: 'a 302 with max-age=5', status: 302, headers: { 'cache-control': 'max-age=5' }, store: true, lifetime: 5000 },
      { name: 'a 503 with max-age=5', status: 503, headers: { 'cache-control': 'max-age=5' }, store: true, lifetime: 5000 },
      { name: 'a 201 with s-maxage=7', status: 201, headers: { 'cache-control': 's-maxage=7' }, store: true, lifetime: 7000 },
      {
        name: 'a 500 with Expires 30 s after Date',
        status: 500,
        headers: { expires: new Date(now + 30_000).toUTCString() },
        store: true,
        lifetime: 30_000,
      },
      { name: 'a 307 with targeted max-age=9', status: 307, targeted: { 'max-age': '9' }, store: true, lifetime: 9000 },
      { name: 'a 502 with Surrogate-Control max-age=4', status: 502, surrogate: 'max-age=4', store: true, lifetime: 4000 },
    ])
  })

  describe('when a status outside statusCodes has no explicit freshness', () => {
    check([
      { name: 'a 503 under a global ttl', status: 503, freshness: { defaultTtl: 60_000 }, store: false, reason: /status 503/ },
      { name: 'a 302 under a route ttl', status: 302, freshness: { routeTtl: 60_000 }, store: false, reason: /status 302/ },
      {
        name: 'a 500 with only Last-Modified (no heuristic)',
        status: 500,
        headers: { 'last-modified': new Date(now - 86_400_000).toUTCString() },
        store: false,
        reason: /status 500/,
      },
      {
        name: 'a 503 with max-age=5 whose route ttl says override (the response lifetime stands)',
        status: 503,
        headers: { 'cache-control': 'max-age=5' },
        freshness: { routeTtl: 60_000, routeOverride: true },
        store: true,
        lifetime: 5000,
      },
    ])
  })

  describe('when the response says must-understand (RFC 9111 §5.2.2.3)', () => {
    check([
      {
        name: 'a 599 with max-age=3600, must-understand',
        status: 599,
        headers: { 'cache-control': 'max-age=3600, must-understand' },
        store: false,
        reason: /must-understand/,
      },
      {
        name: 'a 299 with targeted max-age=60, must-understand',
        status: 299,
        targeted: { 'max-age': '60', 'must-understand': true },
        store: false,
        reason: /must-understand/,
      },
      { name: 'a 503 with max-age=5, must-understand', status: 503, headers: { 'cache-control': 'max-age=5, must-understand' }, store: true, lifetime: 5000 },
      { name: 'a 200 with max-age=5, must-understand', headers: { 'cache-control': 'max-age=5, must-understand' }, store: true, lifetime: 5000 },
      { name: 'a 599 with max-age=3600 alone', status: 599, headers: { 'cache-control': 'max-age=3600' }, store: true, lifetime: 3_600_000 },
    ])
  })

  describe('when the status is never stored as such', () => {
    check([
      { name: 'a 206 with max-age=60', status: 206, headers: { 'cache-control': 'max-age=60' }, store: false, reason: /206/ },
      { name: 'a 304 with max-age=60', status: 304, headers: { 'cache-control': 'max-age=60' }, store: false, reason: /304/ },
      { name: 'a 103 with max-age=60', status: 103, headers: { 'cache-control': 'max-age=60' }, store: false, reason: /103/ },
      { name: 'a 100 with max-age=60', status: 100, headers: { 'cache-control': 'max-age=60' }, store: false, reason: /100/ },
    ])
  })

  describe('when a statusCodes status relies on the fallbacks', () => {
    check([
      { name: 'a 200 under a route ttl', freshness: { routeTtl: 30_000 }, store: true, lifetime: 30_000 },
      { name: 'a 404 under a global ttl', status: 404, freshness: { defaultTtl: 10_000 }, store: true, lifetime: 10_000 },
      { name: 'a silent 200 without any ttl', store: false, reason: /no freshness/ },
    ])
  })

  describe('when the route ttl overrides the response freshness (cacheRoute(ttl, { override: true }))', () => {
    const override = { routeTtl: 60_000, routeOverride: true }
    check([
      {
        name: 'max-age=0 from express.static for the route ttl',
        headers: { 'cache-control': 'public, max-age=0', etag: '"a"' },
        freshness: override,
        store: true,
        lifetime: 60_000,
      },
      {
        name: 'max-age=0 without a validator for the route ttl',
        headers: { 'cache-control': 'max-age=0' },
        freshness: override,
        store: true,
        lifetime: 60_000,
      },
      {
        name: 'an Expires in the past for the route ttl',
        headers: { expires: new Date(now - 1000).toUTCString() },
        freshness: override,
        store: true,
        lifetime: 60_000,
      },
      { name: 's-maxage=5 for the route ttl', headers: { 'cache-control': 's-maxage=5' }, freshness: override, store: true, lifetime: 60_000 },
      { name: 'targeted max-age=3 for the route ttl', targeted: { 'max-age': '3' }, freshness: override, store: true, lifetime: 60_000 },
      {
        name: 'no-cache for the route ttl, revalidated once stale',
        headers: { 'cache-control': 'no-cache', etag: '"a"' },
        freshness: override,
        store: true,
        lifetime: 60_000,
        mustRevalidate: true,
      },
      {
        name: 'must-revalidate, max-age=0 with must-revalidate kept',
        headers: { 'cache-control': 'max-age=0, must-revalidate' },
        freshness: override,
        store: true,
        lifetime: 60_000,
        mustRevalidate: true,
      },
      {
        name: 'max-age=5 when override is off',
        headers: { 'cache-control': 'max-age=5' },
        freshness: { routeTtl: 60_000, routeOverride: false },
        store: true,
        lifetime: 5000,
      },
      {
        name: 'no-cache when override is off, with lifetime 0',
        headers: { 'cache-control': 'no-cache', etag: '"a"' },
        freshness: { routeTtl: 60_000 },
        store: true,
        lifetime: 0,
      },
      {
        name: 'a response to a request with Cookie whose max-age=0 the route overrides',
        headers: { 'cache-control': 'max-age=0' },
        requestHeaders: { cookie: 'a=1' },
        freshness: override,
        store: true,
        lifetime: 60_000,
      },
      { name: 'no-store', headers: { 'cache-control': 'no-store' }, freshness: override, store: false, reason: /no-store/ },
      { name: 'private', headers: { 'cache-control': 'private, max-age=0' }, freshness: override, store: false, reason: /private/ },
      { name: 'Set-Cookie', headers: { 'cache-control': 'max-age=0', 'set-cookie': 'a=1' }, freshness: override, store: false, reason: /Set-Cookie/ },
      { name: 'Vary: *', headers: { 'cache-control': 'max-age=0', vary: '*' }, freshness: override, store: false, reason: /Vary/ },
      {
        name: 'an authorised request',
        headers: { 'cache-control': 'max-age=0' },
        requestHeaders: { authorization: 'Basic eDp5' },
        freshness: override,
        store: false,
        reason: /Authorization/,
      },
      { name: 'a silent response to a request with Cookie', requestHeaders: { cookie: 'a=1' }, freshness: override, store: false, reason: /Cookie/ },
    ])
  })

  describe('when a targeted field speaks for this cache (RFC 9213 §2.2)', () => {
    check([
      {
        name: 'targeted max-age=60 over Cache-Control no-store',
        headers: { 'cache-control': 'no-store' },
        targeted: { 'max-age': '60' },
        store: true,
        lifetime: 60_000,
      },
      {
        name: 'targeted no-store over Cache-Control max-age=60',
        headers: { 'cache-control': 'max-age=60' },
        targeted: { 'no-store': true },
        store: false,
        reason: /targeted.*no-store/,
      },
      { name: 'targeted max-age=10 over Surrogate-Control max-age=99', surrogate: 'max-age=99', targeted: { 'max-age': '10' }, store: true, lifetime: 10_000 },
      { name: 'targeted max-age=10 over Surrogate-Control no-store', surrogate: 'no-store', targeted: { 'max-age': '10' }, store: true, lifetime: 10_000 },
      {
        name: 'Cache-Control private even when targeted max-age=60',
        headers: { 'cache-control': 'private' },
        targeted: { 'max-age': '60' },
        store: false,
        reason: /private/,
      },
      { name: 'targeted private', targeted: { private: true, 'max-age': '60' }, store: false, reason: /private/ },
      {
        name: 'targeted none (no directive) over Cache-Control max-age=60, with no freshness left',
        headers: { 'cache-control': 'max-age=60' },
        targeted: { none: true },
        store: false,
        reason: /no freshness/,
      },
      {
        name: 'targeted no-cache with max-age=60, lifetime 0',
        headers: { etag: '"a"' },
        targeted: { 'no-cache': true, 'max-age': '60' },
        store: true,
        lifetime: 0,
        mustRevalidate: true,
      },
      {
        name: 'targeted stale-while-revalidate',
        targeted: { 'max-age': '1', 'stale-while-revalidate': '30' },
        store: true,
        lifetime: 1000,
        mustRevalidate: false,
      },
    ])
    it('should report stale-while-revalidate from the targeted field, not Cache-Control', () => {
      const d = decide({
        name: '',
        headers: { 'cache-control': 'max-age=1, stale-while-revalidate=99' },
        targeted: { 'max-age': '1', 'stale-while-revalidate': '30' },
        store: true,
      })
      expect(d.store && d.staleWhileRevalidate).to.equal(30_000)
    })
  })
})

describe('resolveRoute()', () => {
  it('should default override to false', () => {
    expect(resolveRoute('30s').override).to.equal(false)
  })
  it('should accept override: true', () => {
    expect(resolveRoute('30s', { override: true })).to.include({ ttl: 30_000, override: true })
  })
  for (const value of ['yes', 1, null]) {
    it(`should throw a TypeError naming override for ${JSON.stringify(value)}`, () => {
      expect(() => resolveRoute('30s', { override: value } as never)).to.throw(TypeError, /cacheRoute option "override" must be true or false, got/)
    })
  }
})
