/** The default key of README "Keys and invalidation": format, escaping, normalisation, folding, query sorting, and injectivity. */
import { expect } from 'chai'
import fc from 'fast-check'
import querystring from 'node:querystring'
import {
  checkKey,
  hostOf,
  normaliseEscapes,
  paramFilter,
  primaryKey,
  routingOf,
  sortQuery,
  targetKey,
  variantPart,
  storageKey,
  hostPart,
  type Routing,
} from '../../src/key.js'

const EXPRESS: Routing = { foldCase: true, foldSlash: true }
/** The whole storage key of a target (primary, host, spelling). */
const fullKey = (url: string, routing?: Routing) => {
  const t = targetKey('GET', url, routing)!
  return storageKey(t.primary, hostPart('h.test'), t.spelling)
}

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
      expect(primaryKey('GET', '/a:b/c*d/e#f/[x]/y\\z/%2F/%zz/\x01')).to.equal('a%3Ab:c%2Ad:e%23f:%5Bx%5D:y%5Cz:%252F:%25zz:%01:GET')
    })
    it('should keep a trailing slash apart from no slash', () => {
      expect(primaryKey('GET', '/r/')).to.not.equal(primaryKey('GET', '/r'))
    })
    it('should keep every raw spelling its own entry when nothing is folded', () => {
      const keys = ['/r', '/R', '/%72', '/r%2F', '/r%2f', '/r/'].map((u) => fullKey(u))
      expect(new Set(keys).size).to.equal(6)
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
    const segment = fc.string({
      unit: fc.constantFrom(
        'a',
        'A',
        'B',
        ':',
        '*',
        '?',
        '#',
        '[',
        ']',
        '\\',
        '%',
        '%41',
        '%61',
        '%2a',
        '%2A',
        '%zz',
        '2',
        'F',
        ' ',
        '\x00',
        '/',
        '&',
        '=',
        '~',
        '%7e',
        'é',
        '%C3%A9',
      ),
      maxLength: 6,
    })
    const path = fc
      .tuple(fc.array(segment, { maxLength: 4 }), fc.boolean())
      .map(([parts, slash]) => '/' + parts.join('/') + (slash && parts.length > 0 ? '/' : ''))
    const text = fc.string({
      unit: fc.constantFrom('q', 'Q', 'a', '%71', '%61', '%2a', '%2A', '*', '%zz', '%25', '%', '+', '%20', '[', ']', '%5B', '%5d', 'é', '%C3%A9', '%E9', ':'),
      maxLength: 3,
    })
    const query = fc.option(fc.array(fc.tuple(text, fc.option(text, { nil: undefined })), { maxLength: 4 }), { nil: undefined })
    const url = fc.tuple(path, query).map(([p, q]) => (q === undefined ? p : p + '?' + q.map(([k, v]) => (v === undefined ? k : `${k}=${v}`)).join('&')))

    /** qs's decoder (Express 4's `extended` parser): `+` is a space, and text that does not decode stays raw. */
    const qsDecode = (t: string) => {
      const spaced = t.replace(/\+/g, ' ')
      try {
        return decodeURIComponent(spaced)
      } catch {
        return spaced
      }
    }
    const grouped = (pairs: Array<[string, string]>) => {
      const groups = new Map<string, string[]>()
      for (const [k, v] of pairs) groups.set(k, [...(groups.get(k) ?? []), v])
      return [...groups].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    }
    /** What the app can tell apart: the raw path, and what qs, node:querystring and URLSearchParams parse. */
    const visible = (u: string) => {
      const i = u.indexOf('?')
      if (i === -1) return JSON.stringify([u])
      const q = u.slice(i + 1)
      const pairs = q.split('&').map((p) => (p.includes('=') ? [p.slice(0, p.indexOf('=')), p.slice(p.indexOf('=') + 1)] : [p, '']))
      const byQs = grouped(pairs.filter(([k]) => k !== '').map(([k, v]) => [qsDecode(k), qsDecode(v)]))
      const byQuerystring = Object.entries(querystring.parse(q)).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      // A leading '&' keeps URLSearchParams from dropping a leading '?' of the query itself.
      const bySearchParams = grouped([...new URLSearchParams('&' + q)])
      return JSON.stringify([u.slice(0, i), byQs, byQuerystring, bySearchParams])
    }

    /** A spelling close to `u` (escape hex case, `q` ↔ `%71`, letter case, parameters reordered), so keys often meet. */
    const nearby = (u: string, dice: number[]) => {
      let n = 0
      const roll = () => dice[n++ % dice.length]
      const edit = (t: string) =>
        t.replace(/%[0-9A-Fa-f]{2}|q|%71|a|A/g, (m) => {
          const r = roll() % 4
          if (m === 'q' || m === '%71') return r < 2 ? 'q' : '%71'
          if (m === 'a' || m === 'A') return r < 2 ? 'a' : 'A'
          return r < 2 ? m.toLowerCase() : m.toUpperCase()
        })
      const i = u.indexOf('?')
      if (i === -1) return edit(u)
      const params = u.slice(i + 1).split('&')
      params.sort(() => (roll() % 3) - 1)
      return edit(u.slice(0, i)) + '?' + params.map(edit).join('&')
    }

    for (const [name, routing] of [
      ['nothing folded', undefined],
      ['Express folding', EXPRESS],
    ] as const) {
      it(`should give different keys to requests the app can tell apart (${name})`, () => {
        fc.assert(
          fc.property(url, url, fc.array(fc.nat(), { minLength: 32, maxLength: 32 }), (a, other, dice) => {
            if (a.includes('#') || other.includes('#')) return // never sent by clients, raw '#' ends a URL
            for (const b of [other, nearby(a, dice)]) {
              if (fullKey(a, routing) === fullKey(b, routing)) expect(visible(a), `${a} vs ${b}`).to.equal(visible(b))
            }
          }),
          { numRuns: 3000 },
        )
      })
    }

    it('should give every spelling of one resource the same family, and the same entry when only escapes and order differ', () => {
      const plain = fc.string({ unit: fc.constantFrom('a', 'b', 'Z', '0', '-', '.', '_', '~', '%2F', '%C3%A9', ':'), minLength: 1, maxLength: 4 })
      const pick = fc.array(fc.nat(), { minLength: 64, maxLength: 64 })
      fc.assert(
        fc.property(
          fc.array(plain, { maxLength: 3 }),
          fc.array(fc.tuple(fc.constantFrom('p', 'q', 'r_s', 'T'), plain), { maxLength: 4 }),
          pick,
          (segments, params, dice) => {
            let n = 0
            const roll = () => dice[n++ % dice.length]
            // Escape unreserved characters at random, with either hex case; flip the case of existing escapes.
            const respell = (t: string) =>
              t.replace(/%[0-9A-F]{2}|[A-Za-z0-9\-._~]/g, (m) => {
                if (m.length === 3) return roll() % 2 ? m.toLowerCase() : m
                if (roll() % 3) return m
                const hex = m.charCodeAt(0).toString(16).padStart(2, '0')
                return '%' + (roll() % 2 ? hex.toUpperCase() : hex)
              })
            const original = '/' + segments.join('/') + (params.length ? '?' + params.map(([k, v]) => `${k}=${v}`).join('&') : '')
            // Reorder distinct names, never two values of one name.
            const rank = new Map(['p', 'q', 'r_s', 'T'].map((k) => [k, roll()]))
            const shuffled = params
              .map((p, i) => [p, i] as const)
              .sort(([[ka], ia], [[kb], ib]) => rank.get(ka)! - rank.get(kb)! || ia - ib)
              .map(([p]) => p)
            const query = shuffled.length ? '?' + shuffled.map(([k, v]) => `${respell(k)}=${respell(v)}`).join('&') : ''
            const respelled = '/' + segments.map(respell).join('/')
            const path = '/' + segments.join('/')
            expect(fullKey(path + query), 'query respelled').to.equal(fullKey(original))
            expect(primaryKey('GET', respelled + query), 'path respelled').to.equal(primaryKey('GET', original))
            // Express: any letter case and a trailing slash reach the same handler, so the same family.
            const folded = respelled.toUpperCase() + (segments.length ? '/' : '') + query
            expect(primaryKey('GET', folded, EXPRESS), 'path folded').to.equal(primaryKey('GET', original, EXPRESS))
          },
        ),
        { numRuns: 2000 },
      )
    })

    it('should give the same key whatever the order of distinct parameter names', () => {
      fc.assert(
        fc.property(fc.uniqueArray(fc.constantFrom('a', 'b', 'c', 'd', 'e'), { minLength: 1 }), fc.integer(), (names, seed) => {
          const params = names.map((n, i) => `${n}=${i}`)
          const shuffled = [...params].sort(() => ((seed = (seed * 16807) % 2147483647) % 2 === 0 ? 1 : -1))
          expect(primaryKey('GET', '/r?' + shuffled.join('&'))).to.equal(primaryKey('GET', '/r?' + params.join('&')))
        }),
      )
    })
  })
})

describe('normaliseEscapes()', () => {
  describe('when given percent-escapes (RFC 3986 §6.2.2.1–2)', () => {
    it('should decode escapes of unreserved characters and upper-case the hex of the others', () => {
      expect(normaliseEscapes('%34%32%7e%2D%2e%5F%41z')).to.equal('42~-._Az')
      expect(normaliseEscapes('a%2fb%c3%a9%2A')).to.equal('a%2Fb%C3%A9%2A')
    })
    it('should keep a % that starts no escape', () => {
      expect(normaliseEscapes('%zz%4%')).to.equal('%zz%4%')
      expect(normaliseEscapes('%%41')).to.equal('%A')
    })
    it('should lower-case characters but never the hex of an escape when asked', () => {
      expect(normaliseEscapes('Posts%2f%41', true)).to.equal('posts%2Fa')
    })
  })
})

describe('targetKey()', () => {
  describe('when one resource is spelled several ways', () => {
    it('should give the spellings Express routes alike one family (primary key)', () => {
      for (const url of ['/posts/42', '/Posts/42', '/posts/42/', '/posts/%34%32', '/POSTS/%34%32/']) {
        expect(primaryKey('GET', url, EXPRESS), url).to.equal('posts:42:GET')
      }
    })
    it('should keep the exact spelling, when it differs from the folded one, in its own entry', () => {
      expect(targetKey('GET', '/posts/42', EXPRESS)!.spelling).to.equal(undefined)
      expect(targetKey('GET', '/users/Alice', EXPRESS)!.spelling).to.equal('/users/Alice')
      expect(fullKey('/users/Alice', EXPRESS)).to.not.equal(fullKey('/users/alice', EXPRESS))
      expect(fullKey('/users/Alice', EXPRESS)).to.equal('users:alice:GET#h.test&/users/Alice')
    })
    it('should fold nothing but escapes for an app without a router', () => {
      expect(primaryKey('GET', '/Posts/42/')).to.equal('Posts:42::GET')
      expect(primaryKey('GET', '/posts/%34%32')).to.equal('posts:42:GET')
    })
    it('should fold case and trailing slash separately, as the settings say', () => {
      expect(primaryKey('GET', '/A/', { foldCase: true, foldSlash: false })).to.equal('a::GET')
      expect(primaryKey('GET', '/A/', { foldCase: false, foldSlash: true })).to.equal('A:GET')
      expect(primaryKey('GET', '/', EXPRESS)).to.equal('GET')
      expect(targetKey('GET', '/', EXPRESS)!.spelling).to.equal(undefined)
    })
  })

  describe('when the query spells the same name two ways', () => {
    it('should not let ?%71=x&q=y and ?q=y&%71=x share a key (the parser reads q=[x,y] and q=[y,x])', () => {
      expect(primaryKey('GET', '/s?%71=x&q=y')).to.not.equal(primaryKey('GET', '/s?q=y&%71=x'))
    })
    it('should keep the order of names that decode alike, however they are escaped', () => {
      expect(primaryKey('GET', '/s?a[]=1&a%5B%5D=2')).to.not.equal(primaryKey('GET', '/s?a%5B%5D=2&a[]=1'))
      expect(primaryKey('GET', '/s?a+b=1&a%20b=2')).to.not.equal(primaryKey('GET', '/s?a%20b=2&a+b=1'))
      expect(primaryKey('GET', '/s?%zz=1&%25zz=2')).to.not.equal(primaryKey('GET', '/s?%25zz=2&%zz=1'))
    })
    it('should share a key between spellings the parser decodes alike', () => {
      expect(primaryKey('GET', '/s?%71=%78')).to.equal(primaryKey('GET', '/s?q=x'))
      expect(primaryKey('GET', '/s?b=%2f&%61=1')).to.equal(primaryKey('GET', '/s?a=1&b=%2F'))
    })
    it('should never case-fold the query', () => {
      expect(primaryKey('GET', '/s?Q=1', EXPRESS)).to.not.equal(primaryKey('GET', '/s?q=1', EXPRESS))
    })
  })

  describe('when given a parameter filter', () => {
    it('should drop ignored names (globs with *) and keep the rest', () => {
      const keep = paramFilter(['utm_*', 'gclid'], false)
      expect(primaryKey('GET', '/p?utm_source=a&page=2&gclid=x&utm%5Fmedium=b', undefined, keep)).to.equal('p:GET?page=2')
      expect(primaryKey('GET', '/p?utm_source=a', undefined, keep)).to.equal('p:GET')
    })
    it('should keep only the listed names with onlyParams, matched on the decoded name', () => {
      const keep = paramFilter(['page', 'filter[]'], true)
      expect(primaryKey('GET', '/p?x=1&page=2&filter%5B%5D=a', undefined, keep)).to.equal('p:GET?filter%255B%255D=a&page=2')
    })
  })
})

describe('routingOf()', () => {
  const app = (settings: Record<string, boolean>) => ({ set() {}, enabled: (name: string) => settings[name] === true })
  it('should fold both for an Express app with default settings', () => {
    expect(routingOf({ app: app({}) })).to.deep.equal({ foldCase: true, foldSlash: true })
  })
  it('should follow case sensitive routing and strict routing', () => {
    expect(routingOf({ app: app({ 'case sensitive routing': true, 'strict routing': true }) })).to.deep.equal({ foldCase: false, foldSlash: false })
  })
  it('should fold nothing without an Express app (connect, node:http)', () => {
    expect(routingOf({})).to.deep.equal({ foldCase: false, foldSlash: false })
    expect(routingOf({ app: { get() {} } })).to.deep.equal({ foldCase: false, foldSlash: false })
  })
})

describe('checkKey()', () => {
  it('should pass a non-empty string through', () => {
    expect(checkKey('k', 'option "key"')).to.equal('k')
  })
  it('should name a Promise as an unsupported async key function', () => {
    const result = checkKey(Promise.resolve('k'), 'option "key"')
    expect(result).to.be.an('error')
    expect((result as Error).message).to.match(/returned a Promise.*async key functions are not supported/)
  })
  it('should say what came back for anything else', () => {
    for (const [value, shown] of [
      [null, 'null'],
      [undefined, 'undefined'],
      ['', '""'],
      [42, '42'],
      [{ a: 1 }, '{"a":1}'],
    ] as const) {
      const result = checkKey(value, 'option "key"')
      expect(result).to.be.an('error')
      expect((result as Error).message).to.include(`returned ${shown}`)
    }
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
  it('should put a spelling after the host, where hostOf() finds the host again', () => {
    const key = storageKey('posts:GET', hostPart('a&b|c'), '/Posts')
    expect(key).to.equal('posts:GET#a%26b%7Cc&/Posts')
    expect(hostOf(key)).to.equal(hostPart('a&b|c'))
  })
})
