/** Compressed storage: which responses compress, which form a request gets, and the copies kept for other forms. */
import { randomBytes } from 'node:crypto'
import { brotliDecompressSync } from 'node:zlib'
import { expect } from 'chai'
import { bodyIn, chooseForm, compressEntry, compressible, mayCompress } from '../../src/compress.js'
import { prepareForm } from '../../src/entry.js'
import type { ResponseEntry } from '../../src/types.js'
import { responseEntry } from '../support/entries.js'

const TEXT = 'compressible text, repeated. '.repeat(200)

function candidate(status: number, fields: Record<string, string>) {
  return { status, field: (name: string) => fields[name] }
}

describe('compressible()', () => {
  it('should take text, JSON, XML, scripts and their suffixes, and leave compressed formats', () => {
    for (const type of ['text/html; charset=utf-8', 'TEXT/CSS', 'application/json', 'application/problem+json', 'image/svg+xml', 'application/javascript']) {
      expect(compressible(type), type).to.equal(true)
    }
    for (const type of [undefined, 'image/png', 'application/octet-stream', 'font/woff2', 'text/event-stream', 'application/zip', 'video/mp4']) {
      expect(compressible(type), String(type)).to.equal(false)
    }
  })
})

describe('mayCompress()', () => {
  const json = { 'content-type': 'application/json' }
  it('should take a 200 or 203 of a compressible type with no coding of its own', () => {
    expect(mayCompress(candidate(200, json))).to.equal(true)
    expect(mayCompress(candidate(203, json))).to.equal(true)
    for (const status of [204, 301, 404, 500]) expect(mayCompress(candidate(status, json)), String(status)).to.equal(false)
  })
  it('should leave what the app encoded, what must not be transformed and what the app negotiates itself', () => {
    expect(mayCompress(candidate(200, { ...json, 'content-encoding': 'gzip' }))).to.equal(false)
    expect(mayCompress(candidate(200, { ...json, 'content-range': 'bytes 0-1/2' }))).to.equal(false)
    expect(mayCompress(candidate(200, { ...json, 'content-digest': 'sha-256=:AAAA:' }))).to.equal(false)
    expect(mayCompress(candidate(200, { ...json, 'cache-control': 'max-age=60, No-Transform' }))).to.equal(false)
    expect(mayCompress(candidate(200, { ...json, 'cache-control': 'max-age=60, no-transformer' }))).to.equal(true)
    expect(mayCompress(candidate(200, { ...json, vary: 'Origin, accept-encoding' }))).to.equal(false)
    expect(mayCompress(candidate(200, { ...json, vary: '*' }))).to.equal(false)
    expect(mayCompress(candidate(200, { ...json, vary: 'Accept-Encodings' }))).to.equal(true)
  })
})

describe('chooseForm()', () => {
  it('should prefer the stored coding, then the other one, then identity, by qvalue', () => {
    const cases: [string | undefined, 'br' | 'gzip', string][] = [
      [undefined, 'br', 'identity'],
      ['', 'br', 'identity'],
      ['gzip, deflate, br', 'br', 'br'],
      ['gzip, deflate, br', 'gzip', 'gzip'],
      ['gzip', 'br', 'gzip'],
      ['br', 'gzip', 'br'],
      ['br;q=0, gzip', 'br', 'gzip'],
      ['*', 'gzip', 'gzip'],
      ['*;q=0', 'br', 'identity'],
      ['identity;q=1, gzip;q=0.5', 'br', 'identity'],
      ['identity;q=0.5, gzip;q=0.5', 'br', 'gzip'],
      ['gzip;q=1.5', 'br', 'identity'],
      ['x-gzip;q=0.3', 'br', 'gzip'],
      ['gzip ; q=0.001', 'br', 'gzip'],
    ]
    for (const [field, stored, form] of cases) expect(chooseForm(stored, field), `${field} (${stored} stored)`).to.equal(form)
  })
})

describe('compressEntry() and bodyIn()', () => {
  it('should compress only when it saves something, and keep one copy per form', () => {
    const entry: ResponseEntry = responseEntry(TEXT)
    expect(compressEntry(entry, 'br')).to.equal(true)
    expect(entry.encoding).to.equal('br')
    expect(brotliDecompressSync(entry.body).toString()).to.equal(TEXT)
    expect(bodyIn(entry, 'br', 1 << 20)).to.equal(entry.body)
    const identity = bodyIn(entry, 'identity', 1 << 20)
    expect(Buffer.from(identity).toString()).to.equal(TEXT)
    expect(bodyIn(entry, 'identity', 1 << 20)).to.equal(identity)
    const gzip = bodyIn(entry, 'gzip', 1 << 20)
    expect(bodyIn(entry, 'gzip', 1 << 20)).to.equal(gzip)
    // Random bytes do not compress: stored as they are.
    const random = responseEntry('')
    random.body = randomBytes(4096)
    const before = random.body
    expect(compressEntry(random, 'gzip')).to.equal(false)
    expect(random.body).to.equal(before)
    expect(random.encoding).to.equal(undefined)
  })
  it('should refuse to decode more than the limit (a tampered entry is no decompression bomb)', () => {
    const entry: ResponseEntry = responseEntry('a'.repeat(100_000))
    compressEntry(entry, 'gzip')
    expect(() => bodyIn(entry, 'identity', 1000)).to.throw(RangeError)
  })
  it('should give each encoded form its own entity tag, weak kept weak, and merge Vary once', () => {
    const strong = responseEntry(TEXT, ['Content-Type', 'text/plain', 'ETag', '"abc"', 'Vary', 'Accept-Language'])
    compressEntry(strong, 'br')
    expect(prepareForm(strong, 'br', 1 << 20).etag).to.equal('"abc-br"')
    expect(prepareForm(strong, 'gzip', 1 << 20).etag).to.equal('"abc-gzip"')
    expect(prepareForm(strong, 'identity', 1 << 20).etag).to.equal('"abc"')
    expect(prepareForm(strong, 'br', 1 << 20).fields).to.deep.equal([
      'Content-Type',
      'text/plain',
      'ETag',
      '"abc-br"',
      'Vary',
      'Accept-Language, Accept-Encoding',
      'Content-Encoding',
      'br',
    ])
    const weak = responseEntry(TEXT, ['Content-Type', 'text/plain', 'ETag', 'W/"x"'])
    compressEntry(weak, 'gzip')
    expect(prepareForm(weak, 'gzip', 1 << 20).etag).to.equal('W/"x-gzip"')
    const bad = responseEntry(TEXT, ['Content-Type', 'text/plain', 'ETag', 'not-a-tag'])
    compressEntry(bad, 'gzip')
    expect(prepareForm(bad, 'gzip', 1 << 20).etag).to.equal(undefined)
  })
})
