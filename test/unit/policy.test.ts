/** RFC 9111 parsing: Cache-Control directives and HTTP dates. */
import { expect } from 'chai'
import { parseCacheControl, parseHttpDate, deltaSeconds, parseSurrogateControl, parseVary } from '../../src/policy.js'

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
