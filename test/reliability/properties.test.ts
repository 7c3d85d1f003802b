/**
 * Hostile input, property-tested with fast-check: the key builder, pattern escaping, the
 * duration parser, the header parsers (never throw, linear time on 64 KB), the coders, and
 * entries fuzzed straight into Redis and Memcached under the key cachet reads.
 */
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { expect } from 'chai'
import fc from 'fast-check'
import express from 'express'
import { Redis } from 'ioredis'
import { Packr } from 'msgpackr'
import { hostPart, escapeSegment, normaliseEscapes, primaryKey, sortQuery, storageKey, targetKey, variantPart } from '../../src/key.js'
import { compilePattern, toRedisGlob } from '../../src/pattern.js'
import { parseDuration } from '../../src/options.js'
import { connectionTokens, deltaSeconds, parseCacheControl, parseHttpDate, parseSurrogateControl, parseVary, requestRules } from '../../src/policy.js'
import { jsonCoder } from '../../src/coders/json.js'
import { msgpackCoder } from '../../src/coders/msgpack.js'
import { CorruptEntryError } from '../../src/entry.js'
import { responseCache, type ResponseCache } from '../../src/middleware.js'
import { FORMAT_VERSION, type Coder, type Entry, type ResponseEntry, type Store, type VaryEntry } from '../../src/types.js'
import { openStore, type ReliabilityStore } from '../reliability/stores.js'
import { getRedis } from '../support/servers.js'

/** Characters that mean something somewhere: key separators, glob and RegExp syntax, escapes, controls. */
const HOSTILE = [
  'a',
  'B',
  '1',
  ':',
  '*',
  '?',
  '#',
  '[',
  ']',
  '\\',
  '%',
  '2',
  'F',
  '&',
  '=',
  '|',
  '~',
  '!',
  '.',
  '^',
  '$',
  '+',
  '(',
  ')',
  '{',
  '}',
  ' ',
  '\t',
  '\x00',
  '\x1f',
  '\x7f',
  'é',
  '€',
  '😀',
]
const hostileChar = fc.constantFrom(...HOSTILE)
const hostileString = (maxLength: number) => fc.string({ unit: hostileChar, maxLength })
/** Segments as they arrive in a raw URL: anything but `/`, `?` and `#`. */
const segment = fc.string({ unit: fc.constantFrom(...HOSTILE.filter((c) => c !== '?' && c !== '#')), maxLength: 6 })

describe('properties of the default key (src/key.ts)', () => {
  const path = fc.array(segment, { minLength: 0, maxLength: 5 }).map((parts) => '/' + parts.join('/'))
  const param = fc.tuple(
    fc.constantFrom('a', 'b', 'c', '__proto__', 'constructor', '%2A', '*'),
    fc.string({ unit: fc.constantFrom(...HOSTILE.filter((c) => c !== '&' && c !== '#')), maxLength: 4 }),
  )
  const query = fc.array(param, { maxLength: 5 }).map((ps) => ps.map(([k, v]) => `${k}=${v}`).join('&'))
  const url = fc.tuple(path, fc.option(query, { nil: undefined })).map(([p, q]) => (q === undefined ? p : `${p}?${q}`))

  describe('primaryKey()', () => {
    it('should never put a wildcard, a secondary-part separator, a glob character or a control character in a key', () => {
      fc.assert(
        fc.property(url, (u) => {
          const key = primaryKey('GET', u)!
          expect(key).to.be.a('string')
          // `*` would widen a purge, `#` would fake a secondary part, `[ ] \` are globs in Redis.
          expect(key).to.not.match(/[*#[\]\\\x00-\x1f\x7f]/)
        }),
        { numRuns: 2000 },
      )
    })

    it('should keep exactly one unescaped ":" per segment boundary', () => {
      fc.assert(
        fc.property(fc.array(segment, { minLength: 1, maxLength: 6 }), (parts) => {
          const path = '/' + parts.join('/')
          // `/` alone is the root: no segment at all (`GET`), while `//` has two empty ones.
          const segments = path === '/' ? [] : parts
          const key = primaryKey('GET', path)!
          expect(key.split(':')).to.have.length(segments.length + 1)
          // Each segment normalised (RFC 3986 §6.2.2), then escaped.
          expect(key.split(':').slice(0, -1)).to.deep.equal(segments.map((s) => escapeSegment(normaliseEscapes(s))))
        }),
        { numRuns: 1000 },
      )
    })

    it('should make a path pattern match a key exactly when the path lies at or below it', () => {
      fc.assert(
        fc.property(
          fc.array(segment, { minLength: 1, maxLength: 3 }),
          fc.array(segment, { maxLength: 4 }),
          fc.option(query, { nil: undefined }),
          (above, below, q) => {
            const pattern = above.map((s) => escapeSegment(normaliseEscapes(s))).join(':') + ':*'
            const target = '/' + below.join('/') + (q === undefined ? '' : `?${q}`)
            const key = storageKey(primaryKey('GET', target)!, hostPart('h.test'))
            const segments = target.startsWith('/?') || target === '/' ? [] : below
            const isBelow = segments.length >= above.length && above.every((s, i) => normaliseEscapes(segments[i]) === normaliseEscapes(s))
            expect(compilePattern(pattern)(key), `${pattern} vs ${key}`).to.equal(isBelow)
          },
        ),
        { numRuns: 3000 },
      )
    })

    it('should make the storage key injective over (request target, Host)', () => {
      const host = fc.string({ unit: fc.constantFrom('a', 'B', '.', ':', '#', '|', '*', '%', '1', '[', ']'), maxLength: 5 })
      // Requests apart are covered in test/unit/key.test.ts; here: the host part never blurs them.
      const target = (u: string) => JSON.stringify(targetKey('GET', u))
      fc.assert(
        fc.property(url, host, url, host, (u1, h1, u2, h2) => {
          const t1 = targetKey('GET', u1)!
          const t2 = targetKey('GET', u2)!
          const k1 = storageKey(t1.primary, hostPart(h1), t1.spelling)
          const k2 = storageKey(t2.primary, hostPart(h2), t2.spelling)
          const same = target(u1) === target(u2) && h1.toLowerCase() === h2.toLowerCase()
          expect(k1 === k2).to.equal(same)
        }),
        { numRuns: 3000 },
      )
    })
  })

  describe('sortQuery()', () => {
    const params = fc
      .array(fc.tuple(fc.constantFrom('a', 'b', 'c', 'a=', ''), fc.constantFrom('1', '2', '', '=')), { minLength: 1, maxLength: 8 })
      .map((ps) => ps.map(([k, v]) => (v === '' ? k : `${k}=${v}`)))
    it('should be idempotent and keep every parameter exactly once', () => {
      fc.assert(
        fc.property(params, (ps) => {
          const sorted = sortQuery(ps.join('&'))
          expect(sortQuery(sorted)).to.equal(sorted)
          expect(sorted.split('&').slice().sort()).to.deep.equal(ps.slice().sort())
        }),
        { numRuns: 2000 },
      )
    })
    it('should keep the relative order of parameters with the same name', () => {
      fc.assert(
        fc.property(params, (ps) => {
          const name = (p: string) => (p.includes('=') ? p.slice(0, p.indexOf('=')) : p)
          const sorted = sortQuery(ps.join('&')).split('&')
          for (const n of new Set(ps.map(name))) expect(sorted.filter((p) => name(p) === n)).to.deep.equal(ps.filter((p) => name(p) === n))
        }),
        { numRuns: 2000 },
      )
    })
  })

  describe('variantPart()', () => {
    const names = fc
      .uniqueArray(fc.constantFrom('accept-language', 'x-a', 'x-b', '__proto__', 'constructor', 'cookie'), { minLength: 1, maxLength: 4 })
      .map((n) => n.sort())
    const value = fc.option(fc.string({ unit: fc.constantFrom('a', ':', '&', '=', '!', '~', '#', '|', '%', ',', ' ', '*', '\t'), maxLength: 8 }), {
      nil: undefined,
    })
    const headers = (ns: string[]) =>
      fc
        .tuple(...ns.map(() => value))
        .map((vs) => Object.fromEntries(ns.map((n, i) => [n, vs[i]]).filter(([, v]) => v !== undefined)) as Record<string, string>)
    /** RFC 9111 §4.1 normalisation: whitespace around commas folded; absent is not empty. */
    const normal = (v: string | undefined) =>
      v === undefined
        ? undefined
        : v
            .split(',')
            .map((s) => s.trim())
            .join(',')

    it('should give two requests the same variant exactly when their normalised values are equal', () => {
      fc.assert(
        fc.property(
          names.chain((ns) => fc.tuple(fc.constant(ns), headers(ns), headers(ns))),
          ([ns, a, b]) => {
            const same = ns.every((n) => normal(Object.hasOwn(a, n) ? a[n] : undefined) === normal(Object.hasOwn(b, n) ? b[n] : undefined))
            expect(variantPart(ns, a) === variantPart(ns, b), JSON.stringify([a, b])).to.equal(same)
          },
        ),
        { numRuns: 3000 },
      )
    })

    it('should never put a wildcard or a secondary-part separator in a variant', () => {
      fc.assert(
        fc.property(
          names.chain((ns) => fc.tuple(fc.constant(ns), headers(ns))),
          ([ns, h]) => {
            expect(variantPart(ns, h)).to.not.match(/[*#\x00-\x1f]/)
          },
        ),
        { numRuns: 1000 },
      )
    })
  })

  describe('hostPart()', () => {
    it('should keep Host alone apart from Host with forwarded values, and each triple apart', () => {
      const part = fc.string({ unit: fc.constantFrom('a', '|', '.', ':', '#', '%'), maxLength: 4 })
      const forwarded = (h: string, fh: string, fp: string) => hostPart(h, hostPart(fh) + '|' + hostPart(fp))
      fc.assert(
        fc.property(part, part, part, part, part, part, (h1, f1, p1, h2, f2, p2) => {
          expect(hostPart(h1)).to.not.equal(forwarded(h2, f2, p2))
          const same = h1.toLowerCase() === h2.toLowerCase() && f1.toLowerCase() === f2.toLowerCase() && p1.toLowerCase() === p2.toLowerCase()
          expect(forwarded(h1, f1, p1) === forwarded(h2, f2, p2)).to.equal(same)
        }),
        { numRuns: 3000 },
      )
    })
  })
})

// -------------------------------------------------------------------------------------------

/** The glob semantics of src/pattern.ts: `*` matches any run of characters, everything else is literal. */
function globReference(pattern: string, key: string): boolean {
  // Dynamic programming over (pattern position, key position): no RegExp involved.
  let row = new Array<boolean>(key.length + 1).fill(false)
  row[0] = true
  for (const p of pattern) {
    const next = new Array<boolean>(key.length + 1).fill(false)
    if (p === '*') {
      let seen = false
      for (let j = 0; j <= key.length; j++) next[j] = seen = seen || row[j]
    } else {
      for (let j = 1; j <= key.length; j++) next[j] = row[j - 1] && key[j - 1] === p
    }
    row = next
  }
  return row[key.length]
}

/** Redis's own glob (stringmatchlen): `*`, `?`, `[…]` with `^` and ranges, and `\` escapes. */
function redisGlob(pattern: string, key: string): boolean {
  const match = (pi: number, ki: number): boolean => {
    while (pi < pattern.length) {
      const c = pattern[pi]
      if (c === '*') {
        while (pattern[pi + 1] === '*') pi++
        if (pi + 1 === pattern.length) return true
        for (let k = ki; k <= key.length; k++) if (match(pi + 1, k)) return true
        return false
      }
      if (ki >= key.length) return false
      if (c === '?') {
        pi++
        ki++
        continue
      }
      if (c === '[') {
        let i = pi + 1
        const not = pattern[i] === '^'
        if (not) i++
        let hit = false
        for (;;) {
          if (pattern[i] === '\\' && i + 1 < pattern.length) {
            if (pattern[i + 1] === key[ki]) hit = true
            i += 2
          } else if (i >= pattern.length) {
            i--
            break
          } else if (pattern[i] === ']') {
            break
          } else if (pattern[i + 1] === '-' && i + 2 < pattern.length) {
            let [lo, hi] = [pattern[i], pattern[i + 2]]
            if (lo > hi) [lo, hi] = [hi, lo]
            if (key[ki] >= lo && key[ki] <= hi) hit = true
            i += 3
          } else {
            if (pattern[i] === key[ki]) hit = true
            i++
          }
        }
        if (not) hit = !hit
        if (!hit) return false
        pi = i + 1
        ki++
        continue
      }
      if (c === '\\' && pi + 1 < pattern.length) pi++
      if (pattern[pi] !== key[ki]) return false
      pi++
      ki++
    }
    return ki === key.length
  }
  return match(0, 0)
}

describe('properties of patterns (src/pattern.ts)', () => {
  const glob = fc.string({
    unit: fc.constantFrom('a', 'b', ':', '*', '?', '[', ']', '\\', '.', '^', '$', '+', '(', ')', '|', '{', '}', '-', '#'),
    maxLength: 8,
  })
  const keyFor = (pattern: string) =>
    fc.oneof(
      fc.string({ unit: fc.constantFrom('a', 'b', ':', '?', '[', ']', '\\', '.', '*', '-', '#'), maxLength: 8 }),
      // Keys built from the pattern itself, so that matches are common, not rare.
      fc.array(fc.string({ unit: fc.constantFrom('a', ':', '?', '\\', ']'), maxLength: 3 }), { maxLength: 4 }).map((fill) => {
        let i = 0
        return pattern.replace(/\*/g, () => fill[i++] ?? '')
      }),
    )

  it('should match a key with compilePattern() exactly when the glob semantics say so (only * is special)', () => {
    fc.assert(
      fc.property(
        glob.chain((p) => fc.tuple(fc.constant(p), keyFor(p))),
        ([pattern, key]) => {
          expect(compilePattern(pattern)(key), `${pattern} vs ${key}`).to.equal(globReference(pattern, key))
        },
      ),
      { numRuns: 5000 },
    )
  })

  it('should escape toRedisGlob() so that Redis glob rules give the same answer', () => {
    fc.assert(
      fc.property(
        glob.chain((p) => fc.tuple(fc.constant(p), keyFor(p))),
        ([pattern, key]) => {
          expect(redisGlob(toRedisGlob(pattern), key), `${toRedisGlob(pattern)} vs ${key}`).to.equal(globReference(pattern, key))
        },
      ),
      { numRuns: 5000 },
    )
  })

  it('should make a real redis-server SCAN MATCH agree with the glob semantics', async function () {
    this.timeout(60_000)
    const server = await getRedis()
    const client = new Redis({ host: '127.0.0.1', port: server.port })
    const prefix = `props-glob-${process.pid}:`
    try {
      await fc.assert(
        fc.asyncProperty(
          glob.chain((p) => fc.tuple(fc.constant(p), fc.uniqueArray(keyFor(p), { minLength: 1, maxLength: 6 }))),
          async ([pattern, keys]) => {
            await client.del(...keys.map((k) => prefix + k))
            await client.mset(...keys.flatMap((k) => [prefix + k, '1']))
            const matchPrefix = prefix.replace(/[*?[\]\\]/g, '\\$&')
            const found = new Set<string>()
            let cursor = '0'
            do {
              const [next, batch] = await client.scan(cursor, 'MATCH', matchPrefix + toRedisGlob(pattern), 'COUNT', 1000)
              cursor = next
              for (const k of batch) found.add(k.slice(prefix.length))
            } while (cursor !== '0')
            await client.del(...keys.map((k) => prefix + k))
            for (const key of keys) expect(found.has(key), `${pattern} vs ${key}`).to.equal(globReference(pattern, key))
          },
        ),
        { numRuns: 150 },
      )
    } finally {
      client.disconnect()
    }
  })
})

// -------------------------------------------------------------------------------------------

describe('properties of parseDuration() (src/options.ts)', () => {
  const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

  it('should read any non-negative number as seconds', () => {
    fc.assert(
      fc.property(fc.double({ min: 0, max: 1e12, noNaN: true }), (n) => {
        expect(parseDuration(n, 'x')).to.equal(Math.round(n * 1000))
      }),
    )
  })

  it('should read an integer with a unit, with or without surrounding spaces', () => {
    fc.assert(
      fc.property(fc.nat({ max: 1e9 }), fc.constantFrom(...Object.keys(UNITS)), fc.constantFrom('', ' ', '  '), (n, unit, pad) => {
        const ms = Math.round(n * UNITS[unit])
        // Beyond 2^53 ms (285,000 years) a duration cannot be represented exactly: refused.
        if (Number.isSafeInteger(ms)) expect(parseDuration(`${pad}${n}${unit}${pad}`, 'x')).to.equal(ms)
        else expect(() => parseDuration(`${pad}${n}${unit}${pad}`, 'x')).to.throw(TypeError, /got/)
      }),
    )
  })

  it('should either return a finite whole number of ms ≥ 0 or throw a TypeError naming the option, for any input', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.anything(), fc.string({ unit: fc.constantFrom('1', '0', '.', '-', 'e', 'm', 's', 'h', 'd', ' ', 'x'), maxLength: 12 })),
        (value) => {
          let ms: number
          try {
            ms = parseDuration(value, 'option "ttl"')
          } catch (error) {
            expect(error).to.be.instanceOf(TypeError)
            expect((error as Error).message).to.contain('option "ttl"')
            return
          }
          expect(Number.isSafeInteger(ms) || Number.isFinite(ms)).to.equal(true)
          expect(ms).to.be.at.least(0)
          expect(ms % 1).to.equal(0)
        },
      ),
      { numRuns: 3000 },
    )
  })

  it('should reject negative numbers, NaN, infinities and bare numbers in strings', () => {
    fc.assert(
      fc.property(fc.oneof(fc.double({ max: -Number.MIN_VALUE }), fc.constantFrom(NaN, Infinity, -Infinity), fc.nat().map(String)), (value) => {
        expect(() => parseDuration(value, 'x')).to.throw(TypeError)
      }),
    )
  })
})

// -------------------------------------------------------------------------------------------

/** Time of one call of `fn` in ms, after one warm-up call: the best of three. */
function timeOf(fn: () => unknown): number {
  fn()
  let best = Infinity
  for (let round = 0; round < 3; round++) {
    const t0 = performance.now()
    fn()
    best = Math.min(best, performance.now() - t0)
  }
  return best
}

/**
 * Linear time, shown without a noisy ratio: on 128 KiB of adversarial input the slowest linear
 * parser here takes about 100 ms on a loaded 2-core machine, a quadratic one tens of seconds
 * (1.7 × 10^10 steps). The bound sits between the two, twenty times above the linear figure and
 * far below the quadratic one, so neither a busy machine nor a GC pause can decide the result.
 */
const LINEAR_INPUT = 128 * 1024
const LINEAR_BOUND_MS = 2000

/** Inputs that make backtracking or quadratic parsers slow, built to any length. */
const ADVERSARIAL: Record<string, (n: number) => string> = {
  quotes: (n) => '"'.repeat(n),
  'comma-equals': (n) => ',='.repeat(n / 2),
  'name-equals': (n) => 'a='.repeat(n / 2),
  'open-quote-backslash': (n) => 'x="\\'.repeat(n / 4),
  spaces: (n) => ' '.repeat(n - 1) + 'x',
  'comma-spaces': (n) => ', '.repeat(n / 2),
  'long-token': (n) => 'max-age' + 'a'.repeat(n - 7),
  'many-directives': (n) => 'no-cache, max-age=1, '.repeat(n / 21),
  digits: (n) => 'max-age=' + '9'.repeat(n - 8),
  'date-like': (n) => 'Sun, 06 Nov 1994 08:49:37 GMT'.repeat(Math.ceil(n / 29)).slice(0, n),
  tabs: (n) => '\t'.repeat(n),
  'no-cache-ish': (n) => ',  no-cach'.repeat(n / 10),
}

const PARSERS: Record<string, (text: string) => unknown> = {
  'parseCacheControl()': (t) => parseCacheControl(t),
  'parseCacheControl() on a list of lines': (t) => parseCacheControl([t, t.slice(0, 100)]),
  'parseHttpDate() (Expires, Date, Last-Modified)': (t) => parseHttpDate(t),
  'parseVary()': (t) => parseVary(t),
  'parseSurrogateControl()': (t) => parseSurrogateControl([t + ';cachet', t], 'cachet'),
  'requestRules() with Pragma': (t) => requestRules(parseCacheControl(t), t, false),
  'deltaSeconds()': (t) => deltaSeconds(t, 0),
  'connectionTokens()': (t) => connectionTokens(t),
  'variantPart()': (t) => variantPart(['accept-language', 'x-a'], { 'accept-language': t, 'x-a': [t, t] }),
  'primaryKey()': (t) => primaryKey('GET', '/' + t + '?' + t),
  'sortQuery()': (t) => sortQuery(t.replace(/ /g, '&')),
}

describe('properties of the header parsers (src/policy.ts)', () => {
  for (const [name, parse] of Object.entries(PARSERS)) {
    describe(name, () => {
      it('should never throw, whatever the input', () => {
        fc.assert(
          fc.property(
            fc.oneof(
              fc.string({ unit: 'binary', maxLength: 300 }),
              fc.string({ unit: fc.constantFrom(',', '=', '"', '\\', ' ', '\t', 'a', '1', '-', ';', '*', '\r', '\n'), maxLength: 300 }),
            ),
            (text) => {
              parse(text)
            },
          ),
          { numRuns: 1000 },
        )
      })

      it('should run in linear time: 128 KiB of adversarial input in far less than a quadratic parser needs', function () {
        this.timeout(60_000)
        const seen: string[] = []
        for (const [shape, build] of Object.entries(ADVERSARIAL)) {
          const large = build(LINEAR_INPUT)
          expect(() => parse(large)).to.not.throw()
          expect(
            timeOf(() => parse(large)),
            `${shape} on 128 KiB`,
          ).to.be.below(LINEAR_BOUND_MS)
          seen.push(shape)
        }
        expect(seen).to.have.length(Object.keys(ADVERSARIAL).length)
      })
    })
  }
})

// -------------------------------------------------------------------------------------------

/** Header values node:http accepts (RFC 9110 field-vchar, SP, HTAB, obs-text), as apps can set them. */
const fieldValue = fc.string({
  unit: fc.oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff }), fc.constant(9)).map((c) => String.fromCharCode(c)),
  maxLength: 40,
})
const fieldName = fc.string({ unit: fc.constantFrom(..."!#$%&'*+-.^_`|~0123456789abcXYZ".split('')), minLength: 1, maxLength: 12 })
const time = fc.nat({ max: 2 ** 47 })

const responseEntry: fc.Arbitrary<ResponseEntry> = fc.record({
  kind: fc.constant('response' as const),
  // What the cache writes: never a 206 or 304, never Set-Cookie or a hop-by-hop field (entry.ts
  // rejects those when they are read back).
  status: fc.integer({ min: 200, max: 599 }).filter((status) => status !== 206 && status !== 304),
  headers: fc
    .array(fc.tuple(fc.oneof(fieldName, fc.constantFrom('__proto__', 'constructor', 'Link', 'ETag')), fieldValue), { maxLength: 12 })
    .map((pairs) => pairs.flat()),
  body: fc.uint8Array({ maxLength: 2048 }),
  responseTime: time,
  initialAge: time,
  lifetime: time,
  staleWhileRevalidate: time,
  staleIfError: time,
  mustRevalidate: fc.boolean(),
})

const varyEntry: fc.Arbitrary<VaryEntry> = fc.record({
  kind: fc.constant('vary' as const),
  vary: fc.array(fc.oneof(fieldName, fc.constant('__proto__')), { maxLength: 5 }),
  variants: fc.array(hostileString(20), { maxLength: 5 }),
  expires: time,
})

const comparable = (e: Entry) => (e.kind === 'response' ? { ...e, body: Buffer.from(e.body).toString('base64') } : e)

describe('properties of the coders (src/coders)', () => {
  for (const coder of [jsonCoder(), msgpackCoder()] as Coder[]) {
    describe(`${coder.name}Coder()`, () => {
      it('should round-trip arbitrary response entries and Vary records exactly', () => {
        fc.assert(
          fc.property(fc.oneof(responseEntry, varyEntry), (entry) => {
            expect(comparable(coder.decode(coder.encode(entry)))).to.deep.equal(comparable(entry))
          }),
          { numRuns: 2000 },
        )
      })

      it('should turn random bytes, truncations and flipped bytes into CorruptEntryError or a checked entry, never another error', () => {
        const bytes = fc.oneof(
          fc.uint8Array({ maxLength: 512 }),
          fc.tuple(responseEntry, fc.nat(), fc.nat({ max: 255 }), fc.boolean()).map(([entry, at, byte, truncate]) => {
            const encoded = Buffer.from(coder.encode(entry))
            if (encoded.length === 0) return encoded
            if (truncate) return encoded.subarray(0, at % encoded.length)
            encoded[at % encoded.length] = byte
            return encoded
          }),
        )
        fc.assert(
          fc.property(bytes, (raw) => {
            let entry: Entry
            try {
              entry = coder.decode(raw)
            } catch (error) {
              expect(error, String(error)).to.be.instanceOf(CorruptEntryError)
              return
            }
            expect(entry.kind === 'response' || entry.kind === 'vary').to.equal(true)
            if (entry.kind === 'response') {
              expect(entry.headers.length % 2).to.equal(0)
              for (let i = 1; i < entry.headers.length; i += 2) expect(entry.headers[i]).to.not.match(/[\r\n\0]/)
            }
          }),
          { numRuns: 3000 },
        )
      })
    })
  }
})

// -------------------------------------------------------------------------------------------

/** What gets written straight into the store, under the key the next request will read. */
interface Tampered {
  what: string
  bytes: (coder: Coder) => Uint8Array
}

const now = Date.now()
/** A well-formed wire object that decodes, fresh for a minute; tests then break one thing in it. */
const wire = (over: Record<string, unknown> = {}) => ({
  v: FORMAT_VERSION,
  k: 'r',
  s: 200,
  h: ['Content-Type', 'text/plain', 'Cache-Control', 'max-age=60'],
  b: Buffer.from('cached'),
  q: now,
  t: now,
  a: 0,
  l: 60_000,
  w: 0,
  e: 0,
  m: 0,
  ...over,
})
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, bundleStrings: false })
const packRaw = (value: unknown) => packr.pack(value)
/** Encode a wire object the way `coder` would (body as base64 for JSON), without the coder's own checks. */
function rawFor(coder: Coder, value: unknown): Uint8Array {
  if (coder.name !== 'json') return packRaw(value)
  const v = value as Record<string, unknown> | null
  return Buffer.from(
    JSON.stringify(v !== null && typeof v === 'object' && Buffer.isBuffer(v.b) ? { ...v, b: (v.b as Buffer).toString('base64') } : value) ?? 'null',
  )
}

const NAMED_TAMPERING: Tampered[] = [
  {
    what: 'a CR/LF header value (response splitting)',
    bytes: (c) => rawFor(c, wire({ h: ['X-Evil', 'a\r\nSet-Cookie: pwned=1', 'Cache-Control', 'max-age=60'] })),
  },
  { what: 'a bare LF in a header value', bytes: (c) => rawFor(c, wire({ h: ['X-Evil', 'a\nb'] })) },
  { what: 'a NUL in a header value', bytes: (c) => rawFor(c, wire({ h: ['X-Evil', 'a\0b'] })) },
  {
    what: 'a control character node:http refuses (\\x01) in a header value',
    bytes: (c) => rawFor(c, wire({ h: ['X-Evil', 'a\x01b', 'Cache-Control', 'max-age=60'] })),
  },
  { what: 'a character above U+00FF in a header value', bytes: (c) => rawFor(c, wire({ h: ['X-Evil', 'caf\u0100', 'Cache-Control', 'max-age=60'] })) },
  {
    what: 'a Content-Length that disagrees with the stored body (connection desync)',
    bytes: (c) => rawFor(c, wire({ h: ['Content-Length', '2', 'Cache-Control', 'max-age=60'], b: Buffer.from('hello world') })),
  },
  { what: 'a Content-Length that is not a number', bytes: (c) => rawFor(c, wire({ h: ['Content-Length', 'abc', 'Cache-Control', 'max-age=60'] })) },
  {
    what: 'a Content-Length that matches the body (never written: a replay sends its own)',
    bytes: (c) => rawFor(c, wire({ h: ['content-length', '6', 'Cache-Control', 'max-age=60'] })),
  },
  {
    what: 'a header named __proto__ with an object value',
    bytes: (c) => rawFor(c, JSON.parse(JSON.stringify({ ...wire(), b: 'Y2FjaGVk' }).replace('"h":[', '"h":[{"__proto__":{"polluted":1}},'))),
  },
  { what: 'an object with a __proto__ key instead of fields', bytes: (c) => rawFor(c, JSON.parse('{"__proto__":{"v":1,"k":"r","s":200},"v":1}')) },
  { what: 'a header name with a space', bytes: (c) => rawFor(c, wire({ h: ['Bad Name', 'x'] })) },
  { what: 'an odd header list', bytes: (c) => rawFor(c, wire({ h: ['X-A'] })) },
  { what: 'status 99', bytes: (c) => rawFor(c, wire({ s: 99 })) },
  { what: 'status 1e9', bytes: (c) => rawFor(c, wire({ s: 1e9 })) },
  { what: 'a negative lifetime', bytes: (c) => rawFor(c, wire({ l: -1 })) },
  { what: 'a body of the wrong type', bytes: (c) => rawFor(c, wire({ b: [1, 2, 3] })) },
  { what: 'another format version', bytes: (c) => rawFor(c, wire({ v: FORMAT_VERSION + 1 })) },
  { what: 'a Vary record naming a non-list', bytes: (c) => rawFor(c, { v: FORMAT_VERSION, k: 'v', y: 'accept', n: [], x: now + 60_000 }) },
  {
    what: 'an absurdly long header list (200,000 strings)',
    bytes: (c) => rawFor(c, wire({ h: Array.from({ length: 200_001 }, (_, i) => (i % 2 === 0 ? 'X-A' : 'v')) })),
  },
  {
    what: 'a declared length far beyond the data (truncated)',
    bytes: (c) => (c.name === 'json' ? Buffer.from('{"v":1,"k":"r","h":["' + 'a'.repeat(1000)) : Buffer.from([0xdb, 0xff, 0xff, 0xff, 0xf0, 0x61])),
  },
  { what: 'a valid entry cut in half', bytes: (c) => Buffer.from(rawFor(c, wire())).subarray(0, Math.floor(rawFor(c, wire()).length / 2)) },
  { what: 'empty bytes', bytes: () => new Uint8Array(0) },
]

/** The bytes are the hit-for-pass marker the cache writes for a key whose response was not storable. */
function isPassMarker(coder: Coder, bytes: Uint8Array): boolean {
  try {
    return coder.decode(bytes).kind === 'pass'
  } catch {
    return false
  }
}

describe('entries fuzzed straight into the stores', function () {
  this.timeout(120_000)

  for (const storeName of ['redis', 'memcached'] as const) {
    for (const coder of [jsonCoder(), msgpackCoder()] as Coder[]) {
      describe(`on the ${storeName} store with the ${coder.name} coder`, () => {
        let opened: ReliabilityStore
        let server: http.Server
        let port: number
        let calls = 0
        const errors: Error[] = []
        const rejections: unknown[] = []
        const onRejection = (reason: unknown) => rejections.push(reason)
        let store: Store
        let cache: ResponseCache

        before(async function () {
          this.timeout(30_000)
          opened = await openStore(storeName)
          store = opened.store
          process.on('unhandledRejection', onRejection)
          cache = responseCache({ store, coder, onError: (error) => errors.push(error) })
          const app = express()
          app.use(cache)
          // Not storable: after the request, the only thing left at the key would be the tampered entry.
          app.use((_req, res) => {
            calls++
            res.set('Cache-Control', 'no-store').type('text/plain').send('fresh')
          })
          server = http.createServer(app)
          server.listen(0, '127.0.0.1')
          await once(server, 'listening')
          port = (server.address() as AddressInfo).port
        })

        after(async () => {
          process.off('unhandledRejection', onRejection)
          server.closeAllConnections()
          await new Promise<void>((resolve) => server.close(() => resolve()))
          await cache.close()
          await opened.dispose()
        })

        /** Write `bytes` where cachet will look for GET `path`, request it, and check the outcome. */
        async function tamperAndRequest(path: string, bytes: Uint8Array): Promise<void> {
          rejections.length = 0
          // Where cachet looks: the path as an Express app with default settings folds it.
          const t = targetKey('GET', path, { foldCase: true, foldSlash: true })!
          const key = storageKey(t.primary, hostPart(`127.0.0.1:${port}`), t.spelling)
          await store.set(key, bytes, 60_000)
          expect(await store.get(key), 'the tampered bytes are in the store').to.not.equal(null)
          errors.length = 0
          const before = calls
          const res = await getOnce(port, path)
          expect(res.status, res.body).to.equal(200)
          expect(res.body).to.equal('fresh')
          expect(res.cache).to.equal('MISS')
          expect(calls).to.equal(before + 1)
          expect(
            errors.some((e) => e.name === 'CorruptEntryError'),
            `onError got ${errors.map((e) => e.message).join('; ') || 'nothing'}`,
          ).to.equal(true)
          // The bad entry is deleted (in the background: poll briefly). The key may then hold the
          // marker that remembers the response was not storable (hit-for-pass), and nothing else.
          const bad = (bytes: Uint8Array | null | undefined) => bytes !== null && bytes !== undefined && !isPassMarker(coder, bytes)
          let left = await store.get(key)
          for (let i = 0; i < 20 && bad(left); i++) {
            await new Promise((resolve) => setTimeout(resolve, 25))
            left = await store.get(key)
          }
          expect(bad(left), 'the bad entry is deleted').to.equal(false)
          expect(rejections, 'unhandled rejections').to.deep.equal([])
        }

        for (const t of NAMED_TAMPERING) {
          it(`should answer a MISS from the handler, report and delete ${t.what}`, async () => {
            await tamperAndRequest(`/fuzz/named/${encodeURIComponent(t.what).slice(0, 40)}`, t.bytes(coder))
          })
        }

        it('should answer a MISS from the handler, report and delete arbitrary junk (random bytes, JSON and MessagePack values)', async () => {
          let n = 0
          await fc.assert(
            fc.asyncProperty(
              fc.oneof(
                fc.uint8Array({ minLength: 1, maxLength: 300 }),
                fc.anything({ maxDepth: 3 }).map((v) => (coder.name === 'json' ? Buffer.from(JSON.stringify(v) ?? 'null') : packRaw(v))),
                fc
                  .record({ v: fc.constant(FORMAT_VERSION), k: fc.constantFrom('r', 'v'), s: fc.anything(), h: fc.anything(), y: fc.anything() })
                  .map((v) => rawFor(coder, v)),
              ),
              async (bytes) => {
                await tamperAndRequest(`/fuzz/junk/${n++}`, bytes)
              },
            ),
            { numRuns: 120 },
          )
        })
      })
    }
  }
})

/** One GET on a fresh connection, bounded by a timeout (a hang is a failure, not a stuck test). */
function getOnce(port: number, path: string): Promise<{ status: number; body: string; cache: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, cache: res.headers['x-cache'] as string | undefined }))
      res.on('error', reject)
    })
    req.setTimeout(3000, () => req.destroy(new Error(`no response to GET ${path} within 3 s`)))
    req.on('error', reject)
  })
}
