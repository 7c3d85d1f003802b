/** Coders round-trip entries byte for byte and turn anything unreadable into CorruptEntryError. */
import { expect } from 'chai'
import { jsonCoder, msgpackCoder, CorruptEntryError } from '../../src/index.js'
import { COMPRESSED_FORMAT_VERSION, FORMAT_VERSION, type Coder, type ResponseEntry, type VaryEntry } from '../../src/types.js'

const allBytes = Buffer.alloc(65536)
for (let i = 0; i < allBytes.length; i++) allBytes[i] = i % 256

function entry(overrides: Partial<ResponseEntry> = {}): ResponseEntry {
  return {
    kind: 'response',
    status: 200,
    headers: ['Content-Type', 'application/octet-stream', 'X-Test', 'ü ±', 'Link', '<a>', 'Link', '<b>'],
    body: allBytes,
    responseTime: 1_700_000_000_005,
    initialAge: 5,
    lifetime: 60_000,
    staleWhileRevalidate: 0,
    staleIfError: 10_000,
    mustRevalidate: false,
    ...overrides,
  }
}

for (const coder of [jsonCoder(), msgpackCoder()] as Coder[]) {
  describe(`${coder.name}Coder()`, () => {
    it('should round-trip a response entry with a binary body byte for byte', () => {
      const back = coder.decode(coder.encode(entry())) as ResponseEntry
      expect(Buffer.compare(Buffer.from(back.body), allBytes)).to.equal(0)
      expect({ ...back, body: null }).to.deep.equal({ ...entry(), body: null })
    })
    it('should round-trip an empty body and a vary record', () => {
      const empty = coder.decode(coder.encode(entry({ body: new Uint8Array(0), status: 204 }))) as ResponseEntry
      expect(empty.body.byteLength).to.equal(0)
      const vary: VaryEntry = { kind: 'vary', vary: ['accept-encoding'], variants: ['a#b'], expires: 5 }
      expect(coder.decode(coder.encode(vary))).to.deep.equal(vary)
    })
    it('should round-trip a route status header choice, a name or false', () => {
      for (const statusHeader of ['X-Route-Cache', false] as const) {
        expect((coder.decode(coder.encode(entry({ statusHeader }))) as ResponseEntry).statusHeader).to.equal(statusHeader)
      }
      expect((coder.decode(coder.encode(entry())) as ResponseEntry).statusHeader).to.equal(undefined)
    })
    it('should reject truncated bytes', () => {
      const bytes = coder.encode(entry())
      expect(() => coder.decode(bytes.subarray(0, bytes.length >> 1))).to.throw(CorruptEntryError)
    })
    it('should reject random bytes', () => {
      expect(() => coder.decode(Buffer.from('\x93\xff\x00garbage'))).to.throw(CorruptEntryError)
    })
    it('should reject an entry from another format version', () => {
      const other = jsonOrPack(coder, { v: 999, k: 'r' })
      expect(() => coder.decode(other)).to.throw(CorruptEntryError, /format version 999/)
    })
    it('should reject a header value with CR/LF (no header injection on replay)', () => {
      const bytes = coder.encode(entry({ headers: ['X-Evil', 'a\r\nSet-Cookie: pwned=1'] }))
      expect(() => coder.decode(bytes)).to.throw(CorruptEntryError, /CR, LF, NUL/)
    })
    it('should reject a bad header name, an odd header list and a bad status', () => {
      expect(() => coder.decode(coder.encode(entry({ headers: ['Bad Name', 'x'] })))).to.throw(CorruptEntryError)
      expect(() => coder.decode(coder.encode(entry({ headers: ['X-A'] })))).to.throw(CorruptEntryError, /odd/)
      expect(() => coder.decode(coder.encode(entry({ status: 99 })))).to.throw(CorruptEntryError, /status/)
    })
    it('should not let __proto__ in a decoded object change behaviour', () => {
      const bytes = jsonOrPack(coder, JSON.parse('{"__proto__":{"k":"r"},"v":1}'))
      expect(() => coder.decode(bytes)).to.throw(CorruptEntryError)
    })
    it('should round-trip the content coding of a compressed entry, under a format version of its own', () => {
      for (const encoding of ['br', 'gzip'] as const) {
        const back = coder.decode(coder.encode(entry({ encoding }))) as ResponseEntry
        expect(back.encoding).to.equal(encoding)
        expect(Buffer.compare(Buffer.from(back.body), allBytes)).to.equal(0)
        expect(wireOf(coder, coder.encode(entry({ encoding })))).to.include({ v: COMPRESSED_FORMAT_VERSION, z: encoding })
      }
      const plain = coder.decode(coder.encode(entry())) as ResponseEntry
      expect(plain).not.to.have.property('encoding')
      // Entries stored as sent keep the version every reader knows.
      expect(wireOf(coder, coder.encode(entry())))
        .to.include({ v: FORMAT_VERSION })
        .and.not.to.have.property('z')
    })
    it('should reject a compressed entry a reader could replay without its Content-Encoding', () => {
      const wire = wireOf(coder, coder.encode(entry({ encoding: 'br' })))
      // A coding without the compressed version, the version without a coding, an unknown coding.
      expect(() => coder.decode(rewire(coder, { ...wire, v: FORMAT_VERSION }))).to.throw(CorruptEntryError, /content coding/)
      expect(() => coder.decode(rewire(coder, { ...wire, z: undefined }))).to.throw(CorruptEntryError, /content coding/)
      expect(() => coder.decode(rewire(coder, { ...wire, z: 'deflate' }))).to.throw(CorruptEntryError, /content coding/)
      // Its stored fields describe the identity form: never a Content-Encoding of their own.
      const twice = coder.encode(entry({ encoding: 'gzip', headers: ['Content-Type', 'text/plain', 'Content-Encoding', 'gzip'] }))
      expect(() => coder.decode(twice)).to.throw(CorruptEntryError, /Content-Encoding/)
      // Only response entries have a compressed version.
      expect(() => coder.decode(jsonOrPack(coder, { v: COMPRESSED_FORMAT_VERSION, k: 'v', y: [], n: [], x: 5 }))).to.throw(CorruptEntryError, /format version/)
    })
  })
}

/** The wire object of encoded bytes (JSON: the body stays base64). */
function wireOf(coder: Coder, bytes: Uint8Array): Record<string, unknown> {
  return coder.name === 'json' ? JSON.parse(Buffer.from(bytes).toString()) : (unpack(Buffer.from(bytes)) as Record<string, unknown>)
}

/** Encode a wire object as `coder` writes it; an undefined field is left out. */
function rewire(coder: Coder, wire: Record<string, unknown>): Uint8Array {
  const defined = Object.fromEntries(Object.entries(wire).filter(([, v]) => v !== undefined))
  return coder.name === 'json' ? Buffer.from(JSON.stringify(defined)) : msgpackBytes(defined)
}

describe('jsonCoder() bodies', () => {
  it('should give a small decoded body memory of its own, not a slice of the shared pool', () => {
    const coder = jsonCoder()
    const back = coder.decode(coder.encode(entry({ body: Buffer.from('small body') }))) as ResponseEntry
    expect(Buffer.from(back.body).toString()).to.equal('small body')
    expect(back.body.byteOffset).to.equal(0)
    expect(back.body.buffer.byteLength).to.equal(back.body.byteLength)
  })
})

describe('entry size', () => {
  it('should keep a 1 MB body within 1.05× with msgpack and 1.4× with JSON', () => {
    const body = Buffer.alloc(1024 * 1024, 7)
    const e = entry({ body })
    const headerBytes = e.headers.join('').length
    expect(msgpackCoder().encode(e).length).to.be.at.most(1.05 * (body.length + headerBytes))
    expect(jsonCoder().encode(e).length).to.be.at.most(1.4 * (body.length + headerBytes))
  })
})

function jsonOrPack(coder: Coder, value: unknown): Uint8Array {
  if (coder.name === 'json') return Buffer.from(JSON.stringify(value))
  // Encode through a plain msgpackr packer so the coder's own checks are what is tested.
  return msgpackBytes(value)
}

import { pack, unpack } from 'msgpackr'
function msgpackBytes(value: unknown): Uint8Array {
  return pack(value)
}
