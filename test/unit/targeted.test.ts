/** Targeted cache-control fields (RFC 9213) read as Structured Field Dictionaries (RFC 8941 §4.2.2). */
import { expect } from 'chai'
import { parseTargetedField, targetedDirectives } from '../../src/targeted.js'

describe('parseTargetedField()', () => {
  describe('when the field is a valid dictionary', () => {
    const rows: Array<[string | string[], Record<string, string | true>]> = [
      ['max-age=60', { 'max-age': '60' }],
      ['no-store', { 'no-store': true }],
      ['max-age=60, stale-while-revalidate=30', { 'max-age': '60', 'stale-while-revalidate': '30' }],
      ['no-store=?1', { 'no-store': true }],
      ['no-store=?0, max-age=5', { 'max-age': '5' }],
      ['max-age=60;foo=bar, private;x', { 'max-age': '60', private: true }],
      ['max-age=1, max-age=2', { 'max-age': '2' }],
      ['none', { none: true }],
      ['x="a \\"b\\" \\\\c"', { x: 'a "b" \\c' }],
      ['x=tok/en:1', { x: 'tok/en:1' }],
      ['x=:aGVsbG8=:', { x: 'aGVsbG8=' }],
      ['x=-1.5', { x: '-1.5' }],
      ['no-cache=("set-cookie" "x-a");p=1', { 'no-cache': 'set-cookie, x-a' }],
      ['private=()', { private: true }],
      [['max-age=60', 'no-transform'], { 'max-age': '60', 'no-transform': true }],
      ['  max-age=60 ,\tpublic  ', { 'max-age': '60', public: true }],
      ['*x=1', { '*x': '1' }],
    ]
    for (const [value, expected] of rows) {
      it(`should read ${JSON.stringify(value)}`, () => {
        expect({ ...parseTargetedField(value) }).to.deep.equal(expected)
      })
    }
  })

  describe('when a directive value has the wrong type (RFC 9213 §2.1)', () => {
    const rows: Array<[string, Record<string, string | true>]> = [
      ['max-age=1.5, public', { public: true }],
      ['max-age="60", public', { public: true }],
      ['max-age=-1, public', { public: true }],
      ['s-maxage=abc, public', { public: true }],
      ['stale-while-revalidate=?1, stale-if-error=:AA==:, public', { public: true }],
      ['max-age=9999999999999', { 'max-age': '9999999999999' }],
    ]
    for (const [value, expected] of rows) {
      it(`should drop the directive in ${JSON.stringify(value)}`, () => {
        expect({ ...parseTargetedField(value) }).to.deep.equal(expected)
      })
    }
  })

  describe('when the field is not a valid dictionary (RFC 8941 §4.2, RFC 9213 §2.1)', () => {
    const rows = [
      'Max-Age=60',
      'max-age=60,',
      ',max-age=60',
      'max-age=60;',
      'max-age = 60',
      'max-age=60 public',
      'max-age=1234567890123456',
      'x="unterminated',
      'x="bad \\n escape"',
      'x="é"',
      'x=:not base64!:',
      'x=?2',
      'x=(a b',
      'x=1.2345',
      'x=12345678901234.5',
      '1x=1',
      'x=@1',
      'max-age=60;Y=1',
      '',
      '   ',
    ]
    for (const value of rows) {
      it(`should ignore the whole field ${JSON.stringify(value)}`, () => {
        expect(parseTargetedField(value)).to.equal(undefined)
      })
    }
    it('should have no prototype in its result', () => {
      const d = parseTargetedField('constructor, valueof=1')
      expect(d).to.not.equal(undefined)
      expect(Object.getPrototypeOf(d)).to.equal(null)
      expect(d!.constructor).to.equal(true)
      expect(d!.valueof).to.equal('1')
      expect(parseTargetedField('__proto__=1')).to.equal(undefined)
    })
  })

  describe('when the field is 64 KB of hostile text', () => {
    it('should return a result for each shape without throwing', () => {
      const n = 65536
      const valid = Array.from({ length: n / 8 }, (_, i) => `k${i}=1`).join(',')
      expect(Object.keys(parseTargetedField(valid.slice(0, valid.lastIndexOf(','))) ?? {}).length).to.be.greaterThan(5000)
      for (const text of ['"'.repeat(n), 'a='.repeat(n / 2), 'x=(' + '('.repeat(n), 'x=("' + '\\'.repeat(n), 'a;'.repeat(n / 2), ':'.repeat(n)]) {
        expect(parseTargetedField(text)).to.equal(undefined)
      }
      expect(parseTargetedField('x=(' + 'a '.repeat(n / 2) + ')')).to.deep.equal({
        x: Array(n / 2)
          .fill('a')
          .join(', '),
      })
    })
  })
})

describe('targetedDirectives()', () => {
  function headers(values: Record<string, string | string[] | number>) {
    const calls: string[] = []
    const get = (name: string) => {
      calls.push(name)
      return values[name]
    }
    return { get, calls }
  }
  describe('when several targets are configured (RFC 9213 §2.2)', () => {
    it('should take the first target present and valid', () => {
      const h = headers({ 'cdn-cache-control': 'max-age=60', 'cachet-cache-control': 'max-age=5' })
      expect(targetedDirectives(h.get, ['cachet-cache-control', 'cdn-cache-control'])).to.deep.equal({
        field: 'cachet-cache-control',
        directives: { 'max-age': '5' },
      })
    })
    it('should skip an absent, empty or invalid field for the next one', () => {
      const h = headers({ 'cachet-cache-control': 'max-age=1.5.5', 'x-cache-control': '', 'cdn-cache-control': 'no-store' })
      const got = targetedDirectives(h.get, ['Cachet-Cache-Control', 'X-Cache-Control', 'Y-Cache-Control', 'CDN-Cache-Control'])
      expect(got?.field).to.equal('cdn-cache-control')
      expect({ ...got?.directives }).to.deep.equal({ 'no-store': true })
      expect(h.calls).to.deep.equal(['cachet-cache-control', 'x-cache-control', 'y-cache-control', 'cdn-cache-control'])
    })
    it('should read multiple field lines and numbers', () => {
      expect(targetedDirectives(headers({ 'cdn-cache-control': ['max-age=60', 'public'] }).get, ['cdn-cache-control'])?.directives).to.deep.equal({
        'max-age': '60',
        public: true,
      })
      expect(targetedDirectives(headers({ 'cdn-cache-control': 5 }).get, ['cdn-cache-control'])).to.equal(undefined)
    })
    it('should return undefined when no target is present and valid', () => {
      expect(targetedDirectives(headers({}).get, ['cdn-cache-control'])).to.equal(undefined)
      expect(targetedDirectives(headers({ 'cdn-cache-control': 'max-age=60' }).get, [])).to.equal(undefined)
    })
    it('should keep a field with no known directive: it still speaks for this cache', () => {
      expect({ ...targetedDirectives(headers({ 'cdn-cache-control': 'none' }).get, ['cdn-cache-control'])?.directives }).to.deep.equal({ none: true })
    })
  })
})
