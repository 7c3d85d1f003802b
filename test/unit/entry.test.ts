/** Stored entries: the header list buildEntry keeps, shared strings, and what prepare() builds for hits. */
import { expect } from 'chai'
import { buildEntry, flat, intern, notModifiedHeaders, prepare } from '../../src/entry.js'
import type { ResponseEntry } from '../../src/types.js'

const T = 1_700_000_000_000

function entry(headers: string[], status = 200): ResponseEntry {
  return buildEntry({
    status,
    headers,
    body: new TextEncoder().encode('hello'),
    requestTime: T,
    responseTime: T,
    lifetime: 60_000,
    staleWhileRevalidate: 0,
    staleIfError: 0,
    mustRevalidate: false,
    statusHeader: 'X-Cache',
  })
}

describe('buildEntry() header list', () => {
  it('should keep names and values in order, add Date, drop hop-by-hop fields and Content-Length', () => {
    const e = entry(['Content-Type', 'text/plain', 'Connection', 'close', 'ETag', '"a"', 'Content-Length', '99', 'Date', 'Tue, 14 Nov 2023 22:13:20 GMT'])
    expect(e.headers).to.deep.equal(['Content-Type', 'text/plain', 'ETag', '"a"', 'Date', 'Tue, 14 Nov 2023 22:13:20 GMT'])
  })
  it('should keep values built by concatenation, long values and non-ASCII text exactly', () => {
    const long = 'x'.repeat(300)
    const decomposed = 'caf' + 'e\u0301' // not NFC: must not be normalised
    const joined = ['application/json', 'charset=utf-8'].join('; ')
    const e = entry(['X-Long', long, 'X-Text', decomposed, 'Content-Type', joined, 'ETag', '"b"'])
    expect(e.headers.slice(0, 6)).to.deep.equal(['X-Long', long, 'X-Text', decomposed, 'Content-Type', 'application/json; charset=utf-8'])
  })
})

describe('intern() and flat()', () => {
  it('should return the same text for any string', () => {
    for (const s of ['', 'a', 'W/"5-abc"', 'e\u0301', '\u00e9', '\ud800', 'x'.repeat(129), 'a' + 'b'.repeat(20)]) {
      expect(intern(s)).to.equal(s)
      expect(flat(s)).to.equal(s)
    }
  })
  it('should keep returning the right text after the pool filled up and was emptied', () => {
    for (let i = 0; i < 5000; i++) expect(intern(`value-${i}`)).to.equal(`value-${i}`)
    expect(intern('value-1')).to.equal('value-1')
  })
})

describe('prepare()', () => {
  const headers = ['Content-Type', 'text/plain', 'ETag', '"v1"', 'Date', 'Tue, 14 Nov 2023 22:13:20 GMT']

  it('should give the validators, falling back to Date for Last-Modified', () => {
    const p = prepare(entry(headers))
    expect(p.etag).to.equal('"v1"')
    expect(p.lastModified).to.equal('Tue, 14 Nov 2023 22:13:20 GMT')
    const q = prepare(entry([...headers, 'Last-Modified', 'Mon, 13 Nov 2023 00:00:00 GMT']))
    expect(q.lastModified).to.equal('Mon, 13 Nov 2023 00:00:00 GMT')
  })

  it("should build the replay head as the headers, the body's Content-Length and slots for Age, the status header and Cache-Status", () => {
    const e = entry(headers)
    expect(prepare(e).head).to.deep.equal([...e.headers, 'Content-Length', '5', 'Age', '0', 'X-Cache', 'HIT', 'Cache-Status', 'cachet; hit'])
    expect(e.headers).to.have.length(6) // the entry's own list is not extended
  })

  it('should send no Content-Length for a 204', () => {
    const e = buildEntry({
      status: 204,
      headers: ['X-A', '1'],
      body: new Uint8Array(0),
      requestTime: T,
      responseTime: T,
      lifetime: 60_000,
      staleWhileRevalidate: 0,
      staleIfError: 0,
      mustRevalidate: false,
      statusHeader: 'X-Cache',
    })
    expect(prepare(e).head).to.deep.equal(['X-A', '1', 'Date', 'Tue, 14 Nov 2023 22:13:20 GMT', 'Age', '0', 'X-Cache', 'HIT', 'Cache-Status', 'cachet; hit'])
  })

  it('should keep nothing for an entry until a hit asks for its head, then reuse it', () => {
    const e = entry(headers)
    expect(prepare(e)).to.not.equal(prepare(e))
    const p = prepare(e)
    const head = p.head
    expect(prepare(e)).to.equal(p)
    expect(prepare(e).head).to.equal(head)
  })

  it('should build the 304 headers once and keep them with the entry', () => {
    const e = entry([...headers, 'Cache-Control', 'max-age=60'])
    const p = prepare(e)
    const first = notModifiedHeaders(e, p)
    expect(first).to.deep.equal([
      'ETag',
      '"v1"',
      'Date',
      'Tue, 14 Nov 2023 22:13:20 GMT',
      'Cache-Control',
      'max-age=60',
      'Age',
      '0',
      'X-Cache',
      'HIT',
      'Cache-Status',
      'cachet; hit',
    ])
    expect(prepare(e)).to.equal(p)
    expect(notModifiedHeaders(e, prepare(e))).to.equal(first)
  })
})
