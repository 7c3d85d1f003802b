/** The default key (README "Keys and invalidation"): format, escaping, query sorting, and injectivity. */
import { expect } from 'chai'
import fc from 'fast-check'
import { primaryKey, sortQuery, variantPart, storageKey, hostPart } from '../../src/key.js'

describe('primaryKey()', () => {
  describe('when given the examples of the contract', () => {
    const table: Array<[string, string, string]> = [
      ['GET', '/posts', 'posts:GET'],
      ['GET', '/posts?page=2', 'posts:GET?page=2'],
      ['GET', '/posts/42?b=2&a=1', 'posts:42:GET?a=1&b=2'],
      ['GET', '/posts/42/comments', 'posts:42:comments:GET'],
      ['GET', '/', 'GET'],
    ]
    for (const [method, url, key] of table) {
      it(`should key ${method} ${url} as ${key}`, () => {
        expect(primaryKey(method, url)).to.equal(key)
      })
    }
  })

  describe('when the path has characters that would be ambiguous', () => {
    it('should percent-escape : * ? # [ ] \\ % and controls inside a segment', () => {
      expect(primaryKey('GET', '/a:b/c*d/e#f/[x]/y\\z/%41/\x01')).to.equal('a%3Ab:c%2Ad:e%23f:%5Bx%5D:y%5Cz:%2541:%01:GET')
    })
    it('should keep a trailing slash apart from no slash', () => {
      expect(primaryKey('GET', '/r/')).to.not.equal(primaryKey('GET', '/r'))
    })
    it('should not decode or case-fold the path', () => {
      const keys = ['/r', '/R', '/%72', '/r%2F'].map((u) => primaryKey('GET', u))
      expect(new Set(keys).size).to.equal(4)
    })
  })

  describe('when the target is not a path', () => {
    it('should return undefined for * and absolute URLs', () => {
      expect(primaryKey('GET', '*')).to.equal(undefined)
      expect(primaryKey('GET', 'http://a.test/x')).to.equal(undefined)
    })
  })

  describe('when the query repeats a name', () => {
    it('should keep the relative order of repeated names (stable sort)', () => {
      expect(sortQuery('b=1&a=2&b=0&a=1')).to.equal('a=2&a=1&b=1&b=0')
      expect(primaryKey('GET', '/r?a=1&a=2')).to.not.equal(primaryKey('GET', '/r?a=2&a=1'))
    })
  })

  describe('property: two different requests never share a key', () => {
    const segment = fc.string({ unit: fc.constantFrom('a', 'B', ':', '*', '?', '#', '[', ']', '\\', '%', '2', 'F', ' ', '\x00', '/', '&', '='), maxLength: 6 })
    const path = fc.array(segment, { maxLength: 4 }).map((parts) => '/' + parts.join('/'))
    const query = fc.option(fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c', '%2A', '*'), fc.constantFrom('1', '2', '', '#', ':')), { maxLength: 4 }), { nil: undefined })
    const url = fc.tuple(path, query).map(([p, q]) => (q === undefined ? p : p + '?' + q.map(([k, v]) => `${k}=${v}`).join('&')))

    /** Two URLs are the same request when their paths are equal and their queries sort equal. */
    const canonical = (u: string) => {
      const i = u.indexOf('?')
      return i === -1 ? u : u.slice(0, i) + '?' + sortQuery(u.slice(i + 1))
    }

    it('should give different keys to URLs that differ after query sorting', () => {
      fc.assert(
        fc.property(url, url, (a, b) => {
          if (a.includes('#') || b.includes('#')) return // never sent by clients, raw '#' ends a URL
          const same = canonical(a) === canonical(b)
          expect(primaryKey('GET', a) === primaryKey('GET', b)).to.equal(same)
        }),
        { numRuns: 3000 },
      )
    })

    it('should give the same key whatever the order of distinct parameter names', () => {
      fc.assert(
        fc.property(fc.uniqueArray(fc.constantFrom('a', 'b', 'c', 'd', 'e'), { minLength: 1 }), fc.integer(), (names, seed) => {
          const params = names.map((n, i) => `${n}=${i}`)
          const shuffled = [...params].sort(() => (seed = (seed * 16807) % 2147483647) % 2 === 0 ? 1 : -1)
          expect(primaryKey('GET', '/r?' + shuffled.join('&'))).to.equal(primaryKey('GET', '/r?' + params.join('&')))
        }),
      )
    })
  })
})

describe('variantPart()', () => {
  it('should fold whitespace around commas and join multiple lines (RFC 9111 §4.1)', () => {
    expect(variantPart(['accept-language'], { 'accept-language': 'en,  de' })).to.equal(variantPart(['accept-language'], { 'accept-language': 'en, de' }))
    expect(variantPart(['x-a'], { 'x-a': ['1', '2'] })).to.equal(variantPart(['x-a'], { 'x-a': '1, 2' }))
  })
  it('should tell an absent header from an empty one', () => {
    expect(variantPart(['x-a'], {})).to.not.equal(variantPart(['x-a'], { 'x-a': '' }))
  })
  it('should not let a delimiter inside a value collide with another split (item 57f)', () => {
    const a = variantPart(['x-a', 'x-b'], { 'x-a': 'a:b', 'x-b': 'c' })
    const b = variantPart(['x-a', 'x-b'], { 'x-a': 'a', 'x-b': 'b:c' })
    const c = variantPart(['x-a', 'x-b'], { 'x-a': 'a&x-b=b', 'x-b': 'c' })
    expect(new Set([a, b, c]).size).to.equal(3)
  })
  it('should hash long values so keys stay short', () => {
    const part = variantPart(['cookie'], { cookie: 'x'.repeat(5000) })
    expect(part.length).to.be.below(64)
    expect(part).to.not.equal(variantPart(['cookie'], { cookie: 'y'.repeat(5000) }))
  })
})

describe('storageKey()', () => {
  it('should put the host after a #, lower-cased', () => {
    expect(storageKey('posts:GET', hostPart('Example.COM:8080'))).to.equal('posts:GET#example.com:8080')
  })
})
