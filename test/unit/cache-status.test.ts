/** The Cache-Status response field (RFC 9211): one member per cache, built and appended. */
import { expect } from 'chai'
import { appendCacheStatus, cacheStatusMember, checkCacheStatusName } from '../../src/cache-status.js'

describe('cacheStatusMember()', () => {
  describe('when given the outcome of a request (RFC 9211 §2)', () => {
    const rows: Array<[Parameters<typeof cacheStatusMember>[1], string]> = [
      [{ hit: true, ttl: 25 }, 'cachet; hit; ttl=25'],
      [{ fwd: 'uri-miss', stored: true, ttl: 30 }, 'cachet; fwd=uri-miss; stored; ttl=30'],
      [{ fwd: 'bypass', detail: 'private' }, 'cachet; fwd=bypass; detail=private'],
      [{ fwd: 'stale', fwdStatus: 304, stored: true, ttl: 60 }, 'cachet; fwd=stale; fwd-status=304; stored; ttl=60'],
      [{ hit: true, ttl: -12 }, 'cachet; hit; ttl=-12'],
      [{ hit: true, ttl: 2.9 }, 'cachet; hit; ttl=2'],
      [{ hit: true, ttl: -0.5 }, 'cachet; hit; ttl=0'],
      [{ fwd: 'miss', collapsed: true }, 'cachet; fwd=miss; collapsed'],
      [{ hit: false, stored: false, collapsed: false }, 'cachet'],
      [{}, 'cachet'],
      [{ fwd: 'vary-miss', key: 'posts:42:GET?a=1' }, 'cachet; fwd=vary-miss; key="posts:42:GET?a=1"'],
      [{ fwd: 'method', detail: 'method POST' }, 'cachet; fwd=method; detail="method POST"'],
      [{ fwd: 'bypass', detail: 'response Cache-Control: "no-store" \\ x' }, 'cachet; fwd=bypass; detail="response Cache-Control: \\"no-store\\" \\\\ x"'],
      [{ fwd: 'bypass', detail: 'a\r\nb\tcé' }, 'cachet; fwd=bypass; detail="a  b c?"'],
      [{ key: 'ключ' }, 'cachet; key="????"'],
      [{ hit: true, ttl: 1e20 }, 'cachet; hit; ttl=999999999999999'],
      [{ hit: true, ttl: -1e20 }, 'cachet; hit; ttl=-999999999999999'],
      [{ hit: true, ttl: NaN }, 'cachet; hit'],
      [{ fwd: 'request', fwdStatus: 99 }, 'cachet; fwd=request'],
      [{ fwd: 'partial', fwdStatus: 200.5 }, 'cachet; fwd=partial'],
      [{ fwd: 'nonsense' as never }, 'cachet'],
    ]
    for (const [params, expected] of rows) {
      it(`should write ${expected}`, () => {
        expect(cacheStatusMember('cachet', params)).to.equal(expected)
      })
    }
  })
  describe('when the name is not a token', () => {
    it('should write it as an sf-string (RFC 9211 §2: String or Token)', () => {
      expect(cacheStatusMember('my cache', { hit: true })).to.equal('"my cache"; hit')
      expect(cacheStatusMember('ExampleCache/1.0', { hit: true })).to.equal('ExampleCache/1.0; hit')
    })
  })
})

describe('checkCacheStatusName()', () => {
  it('should accept sf-tokens', () => {
    for (const name of ['cachet', 'CDN-edge', 'cache.example.com', 'Example/1.0', '*x', 'a:b']) {
      expect(checkCacheStatusName(name, 'option "cacheStatus"')).to.equal(name)
    }
  })
  for (const value of ['', 'my cache', '1cache', '-x', 'café', '"x"', 'x,y', 'x;y', 42, undefined, 'x'.repeat(257)]) {
    it(`should throw a TypeError naming the option for ${JSON.stringify(value)}`, () => {
      expect(() => checkCacheStatusName(value, 'option "cacheStatus"')).to.throw(TypeError, /option "cacheStatus" must be a token/)
    })
  }
})

describe('appendCacheStatus()', () => {
  describe('when the app or an upstream cache already set Cache-Status (RFC 9211 §2)', () => {
    const rows: Array<[string | string[] | number | undefined, string]> = [
      [undefined, 'cachet; hit'],
      ['', 'cachet; hit'],
      ['  ', 'cachet; hit'],
      ['origin; fwd=miss', 'origin; fwd=miss, cachet; hit'],
      ['origin; fwd=miss , ', 'origin; fwd=miss, cachet; hit'],
      [['a; hit', 'b; fwd=miss'], 'a; hit, b; fwd=miss, cachet; hit'],
      [['', 'b; fwd=miss'], 'b; fwd=miss, cachet; hit'],
      [7, '7, cachet; hit'],
    ]
    for (const [existing, expected] of rows) {
      it(`should put this cache last after ${JSON.stringify(existing)}`, () => {
        expect(appendCacheStatus(existing, 'cachet; hit')).to.equal(expected)
      })
    }
  })
})
