/** Range requests answered from a stored 200 (RFC 9110 §14, §13.1.5). */
import { expect } from 'chai'
import { rangeResponse, type RangeAnswer, type StoredResponse } from '../../src/range.js'

const body = new Uint8Array(Array.from({ length: 1000 }, (_, i) => i % 256))
const lastModified = 'Sun, 06 Nov 1994 08:49:37 GMT'
const date = 'Sun, 06 Nov 1994 08:49:38 GMT'
const stored: StoredResponse = {
  status: 200,
  headers: ['Content-Type', 'text/plain', 'ETag', '"v1"', 'Last-Modified', lastModified, 'Date', date, 'Content-Length', '1000'],
  body,
}

function header(answer: RangeAnswer | undefined, name: string): string | undefined {
  if (answer === undefined) return undefined
  for (let i = 0; i < answer.headers.length; i += 2) if (answer.headers[i].toLowerCase() === name) return answer.headers[i + 1]
  return undefined
}

function text(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('latin1')
}

describe('rangeResponse()', () => {
  describe('when one range is asked for (RFC 9110 §14.1.2)', () => {
    const rows: Array<[string, number, number]> = [
      ['bytes=0-99', 0, 99],
      ['bytes=100-', 100, 999],
      ['bytes=-100', 900, 999],
      ['bytes=990-5000', 990, 999],
      ['bytes=-5000', 0, 999],
      ['bytes=999-999', 999, 999],
      ['Bytes=5-9', 5, 9],
      ['bytes= 0-9 ', 0, 9],
      ['bytes=,,0-9,', 0, 9],
      ['bytes=5-9, 2000-3000', 5, 9],
      ['bytes=0-' + '9'.repeat(40), 0, 999],
    ]
    for (const [range, first, last] of rows) {
      it(`should answer ${JSON.stringify(range.slice(0, 40))} with 206 bytes ${first}-${last}/1000`, () => {
        const answer = rangeResponse(stored, { range })
        expect(answer?.status).to.equal(206)
        expect(header(answer, 'content-range')).to.equal(`bytes ${first}-${last}/1000`)
        expect(header(answer, 'content-length')).to.equal(String(last - first + 1))
        expect(header(answer, 'content-type')).to.equal(undefined)
        expect([...answer!.body]).to.deep.equal([...body.subarray(first, last + 1)])
      })
    }
  })

  describe('when no range can be satisfied (RFC 9110 §15.5.17)', () => {
    for (const range of ['bytes=1000-', 'bytes=1000-2000', 'bytes=-0', 'bytes=5000-6000, 1000-', 'bytes=' + '1'.repeat(30) + '-']) {
      it(`should answer ${JSON.stringify(range)} with 416 and Content-Range: bytes */1000`, () => {
        const answer = rangeResponse(stored, { range })
        expect(answer?.status).to.equal(416)
        expect(header(answer, 'content-range')).to.equal('bytes */1000')
        expect(header(answer, 'content-length')).to.equal('0')
        expect(answer!.body.byteLength).to.equal(0)
      })
    }
  })

  describe('when the Range field is invalid or another unit (RFC 9110 §14.2: ignored)', () => {
    for (const range of [
      '',
      'bytes',
      'bytes=',
      'bytes=,',
      'bytes=abc',
      'bytes=5-1',
      'bytes=1-2-3',
      'bytes=--1',
      'bytes=1 -2',
      'bytes=0-1;x',
      'items=0-1',
      'bytes 0-1',
      '=0-1',
      'bytes=0x10-',
      'bytes=-',
      'bytes=0-1, 9-3',
    ]) {
      it(`should serve the whole 200 for ${JSON.stringify(range)}`, () => {
        expect(rangeResponse(stored, { range })).to.equal(undefined)
      })
    }
    it('should serve the whole 200 without a Range field, even with If-Range', () => {
      expect(rangeResponse(stored, {})).to.equal(undefined)
      expect(rangeResponse(stored, { ifRange: '"v1"' })).to.equal(undefined)
    })
  })

  describe('when only a stored 200 may answer ranges', () => {
    for (const status of [203, 204, 206, 301, 404, 500]) {
      it(`should leave a stored ${status} whole`, () => {
        expect(rangeResponse({ ...stored, status }, { range: 'bytes=0-1' })).to.equal(undefined)
      })
    }
    it('should leave an empty body whole', () => {
      expect(rangeResponse({ ...stored, body: new Uint8Array(0) }, { range: 'bytes=-5' })).to.equal(undefined)
    })
    it('should leave a response whole that said Accept-Ranges: none', () => {
      expect(rangeResponse({ ...stored, headers: [...stored.headers, 'Accept-Ranges', 'none'] }, { range: 'bytes=0-1' })).to.equal(undefined)
    })
  })

  describe('when If-Range is present (RFC 9110 §13.1.5)', () => {
    const rows: Array<[string, StoredResponse, boolean]> = [
      ['"v1"', stored, true],
      [' "v1" ', stored, true],
      ['"v2"', stored, false],
      ['W/"v1"', stored, false],
      ['"v1"', { ...stored, headers: ['ETag', 'W/"v1"', 'Date', date] }, false],
      ['"v1"', { ...stored, headers: ['Date', date] }, false],
      [lastModified, stored, true],
      ['Sunday, 06-Nov-94 08:49:37 GMT', stored, true],
      ['Sun, 06 Nov 1994 08:49:36 GMT', stored, false],
      [lastModified, { ...stored, headers: ['Last-Modified', lastModified, 'Date', lastModified] }, false],
      [lastModified, { ...stored, headers: ['Last-Modified', lastModified, 'Date', 'Sun, 06 Nov 1994 08:49:37 GMT'] }, false],
      [lastModified, { ...stored, headers: ['Last-Modified', lastModified] }, false],
      [lastModified, { ...stored, headers: ['Date', date] }, false],
      ['yesterday', stored, false],
      ['', stored, false],
    ]
    for (const [ifRange, entry, matches] of rows) {
      it(`should ${matches ? 'send the range' : 'send the whole 200'} for If-Range ${JSON.stringify(ifRange)} against ${entry.headers.join(': ')}`, () => {
        const answer = rangeResponse(entry, { range: 'bytes=0-9', ifRange })
        if (matches) expect(answer?.status).to.equal(206)
        else expect(answer).to.equal(undefined)
      })
    }
  })

  describe('when several ranges are asked for (RFC 9110 §14.6)', () => {
    it('should answer multipart/byteranges, parts in the order asked, each with Content-Type and Content-Range', () => {
      const answer = rangeResponse(stored, { range: 'bytes=500-501, 0-1, -2' }, { boundary: 'SEP' })
      expect(answer?.status).to.equal(206)
      expect(header(answer, 'content-type')).to.equal('multipart/byteranges; boundary=SEP')
      expect(header(answer, 'content-range')).to.equal(undefined)
      const expected =
        '--SEP\r\nContent-Type: text/plain\r\nContent-Range: bytes 500-501/1000\r\n\r\n' +
        text(body.subarray(500, 502)) +
        '\r\n--SEP\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/1000\r\n\r\n' +
        text(body.subarray(0, 2)) +
        '\r\n--SEP\r\nContent-Type: text/plain\r\nContent-Range: bytes 998-999/1000\r\n\r\n' +
        text(body.subarray(998, 1000)) +
        '\r\n--SEP--\r\n'
      expect(text(answer!.body)).to.equal(expected)
      expect(header(answer, 'content-length')).to.equal(String(answer!.body.byteLength))
    })
    it('should leave out Content-Type in parts when the stored response has none', () => {
      const answer = rangeResponse({ ...stored, headers: [] }, { range: 'bytes=0-0,2-2' }, { boundary: 'B' })
      expect(text(answer!.body)).to.equal(
        `--B\r\nContent-Range: bytes 0-0/1000\r\n\r\n${text(body.subarray(0, 1))}\r\n--B\r\nContent-Range: bytes 2-2/1000\r\n\r\n${text(body.subarray(2, 3))}\r\n--B--\r\n`,
      )
    })
    it('should pick a fresh random boundary by default', () => {
      const a = header(rangeResponse(stored, { range: 'bytes=0-0,2-2' }), 'content-type')
      const b = header(rangeResponse(stored, { range: 'bytes=0-0,2-2' }), 'content-type')
      expect(a).to.match(/^multipart\/byteranges; boundary=[0-9a-f]{32}$/)
      expect(a).to.not.equal(b)
    })
    it('should send one part as a plain 206 when the other ranges cannot be satisfied', () => {
      const answer = rangeResponse(stored, { range: 'bytes=0-1, 5000-' })
      expect(header(answer, 'content-range')).to.equal('bytes 0-1/1000')
    })
    for (const range of ['bytes=0-10, 5-20', 'bytes=0-1, 0-1', 'bytes=-500, 0-', 'bytes=100-200, 0-100', 'bytes=0-, 999-']) {
      it(`should serve the whole 200 for overlapping ${JSON.stringify(range)} (a defence against range amplification)`, () => {
        expect(rangeResponse(stored, { range })).to.equal(undefined)
      })
    }
    it('should answer 16 ranges (the default maxRanges) and serve the whole 200 for 17', () => {
      const ranges = (n: number) => 'bytes=' + Array.from({ length: n }, (_, i) => `${i * 10}-${i * 10 + 1}`).join(',')
      const answer = rangeResponse(stored, { range: ranges(16) }, { boundary: 'B' })
      expect(text(answer!.body).split('--B\r\n').length - 1).to.equal(16)
      expect(rangeResponse(stored, { range: ranges(17) })).to.equal(undefined)
      expect(rangeResponse(stored, { range: ranges(3) }, { maxRanges: 2 })).to.equal(undefined)
      expect(rangeResponse(stored, { range: ranges(3) }, { maxRanges: 3 })?.status).to.equal(206)
    })
  })

  describe('when the Range field is 64 KB of hostile text', () => {
    const n = 65536
    it('should give the whole 200 for many ranges, bounded by maxRanges', () => {
      expect(rangeResponse(stored, { range: 'bytes=' + '0-0,'.repeat(n / 4) })).to.equal(undefined)
      expect(rangeResponse(stored, { range: 'bytes=' + '1-1,'.repeat(n / 4) })).to.equal(undefined)
    })
    it('should read long runs of separators, digits and spaces to the right answer', () => {
      expect(header(rangeResponse(stored, { range: 'bytes=' + ','.repeat(n) + '0-1' }), 'content-range')).to.equal('bytes 0-1/1000')
      expect(header(rangeResponse(stored, { range: 'bytes=' + ' '.repeat(n) + '0-1' + ' '.repeat(n) }), 'content-range')).to.equal('bytes 0-1/1000')
      expect(header(rangeResponse(stored, { range: 'bytes=0-' + '9'.repeat(n) }), 'content-range')).to.equal('bytes 0-999/1000')
      expect(header(rangeResponse(stored, { range: 'bytes=-' + '9'.repeat(n) }), 'content-range')).to.equal('bytes 0-999/1000')
      expect(rangeResponse(stored, { range: 'bytes=' + '1'.repeat(n) + '-' })?.status).to.equal(416)
      expect(rangeResponse(stored, { range: 'bytes=' + '-'.repeat(n) })).to.equal(undefined)
      expect(rangeResponse(stored, { range: 'bytes=0-1', ifRange: '"' + 'v'.repeat(n) + '"' })).to.equal(undefined)
    })
  })
})
