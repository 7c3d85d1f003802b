/** Range requests (RFC 9110 §14) answered from a stored 200: 206 for one range or several, 416 when none fits. */
import { randomBytes } from 'node:crypto'
import { parseHttpDate } from './policy.js'

/**
 * The stored response a range is cut from: status, headers as a flat `[name, value, …]` list,
 * whole body. A `ResponseEntry` (src/types.ts) is one as it is.
 */
export interface StoredResponse {
  status: number
  headers: readonly string[]
  body: Uint8Array
}

/** The request fields that ask for a range: `req.headers.range` and `req.headers['if-range']`. */
export interface RangeRequest {
  range?: string
  ifRange?: string
}

/** Limits and choices for one answer. */
export interface RangeOptions {
  /**
   * Most range-specs read from one Range field; more, or any two satisfiable ranges that
   * overlap, and the whole 200 is sent instead (RFC 9110 §14.2 lets a server ignore such
   * requests): a defence against range amplification. An integer ≥ 1. @default 16
   */
  maxRanges?: number
  /** multipart/byteranges boundary (tests pin it). @default 32 random hex digits per answer */
  boundary?: string
}

/** A range answer: status, the fields to send and the body. */
export interface RangeAnswer {
  status: 206 | 416
  /**
   * Fields to send, as `[name, value, …]`, each replacing the stored field of that name:
   * `Content-Range` and `Content-Length` for one range and for 416; `Content-Type:
   * multipart/byteranges; boundary=…` and `Content-Length` for several (then the stored
   * Content-Type moves into each part and must not be sent on the response itself).
   */
  headers: string[]
  /** The bytes to send: a view of the stored body for one range, empty for 416. */
  body: Uint8Array
}

/** Default for RangeOptions.maxRanges. */
export const DEFAULT_MAX_RANGES = 16

/** One satisfiable range, inclusive bounds. */
interface Span {
  first: number
  last: number
}

/** Digit strings longer than this are beyond any body length: read as Infinity, never parsed. */
const MAX_DIGITS = 15

/**
 * Answer a Range request from a stored response (RFC 9110 §14). Returns undefined when the
 * whole stored response should be sent as usual (200): no Range field, a stored status other
 * than 200, an empty body, the app said `Accept-Ranges: none`, a Range field that is invalid
 * or in another unit (§14.2: ignored), an `If-Range` that does not match (§13.1.5), more than
 * `maxRanges` range-specs, or overlapping ranges. Otherwise a 206 (one range: that slice; several:
 * `multipart/byteranges`, §14.6, parts in the order asked) or a 416 with
 * `Content-Range: bytes *\/<length>` (the length of the stored body) when no range fits (§15.5.17).
 *
 * `If-Range` matches an entity tag only by strong comparison (a weak tag on either side never
 * matches), or an HTTP-date only when it equals the stored Last-Modified and that is strong:
 * the stored Date at least 1 s after it (§8.8.2.2).
 *
 * Request flow, for a GET only (§14.2: Range is ignored on other methods) answered from storage:
 * ```ts
 * const answer = req.method === 'GET'
 *   ? rangeResponse(entry, { range: req.headers.range, ifRange: req.headers['if-range'] })
 *   : undefined
 * if (answer !== undefined) {
 *   // stored head less Content-Length (and, for multipart, Content-Type), then answer.headers
 *   res.statusCode = answer.status
 *   res.end(answer.body)
 * }
 * ```
 * Conditionals (`If-None-Match`, `If-Modified-Since`) are evaluated first: a 304 wins over a
 * range (§13.2.2). Whole 200s served from a stored 200 should carry `Accept-Ranges: bytes`
 * (§14.3) unless the app set its own `Accept-Ranges`, so clients know they may ask. A range
 * request that misses goes to the app as it is. Linear in the length of the Range field; the
 * multipart body costs at most the stored body plus one part header per range.
 */
export function rangeResponse(stored: StoredResponse, request: RangeRequest, options: RangeOptions = {}): RangeAnswer | undefined {
  const { range, ifRange } = request
  if (range === undefined || stored.status !== 200) return undefined
  const length = stored.body.byteLength
  if (length === 0) return undefined
  const acceptRanges = storedField(stored.headers, 'accept-ranges')
  if (acceptRanges !== undefined && acceptRanges.trim().toLowerCase() === 'none') return undefined
  if (ifRange !== undefined && !ifRangeMatches(ifRange, stored.headers)) return undefined
  const maxRanges = Number.isSafeInteger(options.maxRanges) && options.maxRanges! >= 1 ? options.maxRanges! : DEFAULT_MAX_RANGES
  const spans = parseRange(range, length, maxRanges)
  if (spans === undefined) return undefined
  if (spans.length === 0) {
    return { status: 416, headers: ['Content-Range', `bytes */${length}`, 'Content-Length', '0'], body: new Uint8Array(0) }
  }
  if (spans.length === 1) {
    const { first, last } = spans[0]
    return {
      status: 206,
      headers: ['Content-Range', `bytes ${first}-${last}/${length}`, 'Content-Length', String(last - first + 1)],
      body: stored.body.subarray(first, last + 1),
    }
  }
  if (overlapping(spans)) return undefined
  const boundary = options.boundary ?? randomBytes(16).toString('hex')
  const body = multipart(spans, stored, boundary)
  return {
    status: 206,
    headers: ['Content-Type', `multipart/byteranges; boundary=${boundary}`, 'Content-Length', String(body.byteLength)],
    body,
  }
}

/**
 * The satisfiable ranges of a Range field (§14.1.1, §14.1.2), clipped to the body; [] when
 * none is satisfiable; undefined when the field is to be ignored (invalid, another unit, more
 * than `maxRanges` specs). Reads the field once, stopping at the spec after `maxRanges`.
 */
function parseRange(field: string, length: number, maxRanges: number): Span[] | undefined {
  const eq = field.indexOf('=')
  if (eq < 0 || field.slice(0, eq).trim().toLowerCase() !== 'bytes') return undefined
  const spans: Span[] = []
  let specs = 0
  let i = eq + 1
  const n = field.length
  while (i <= n) {
    let end = field.indexOf(',', i)
    if (end < 0) end = n
    let start = i
    let stop = end
    while (start < stop && isOws(field.charCodeAt(start))) start++
    while (stop > start && isOws(field.charCodeAt(stop - 1))) stop--
    i = end + 1
    if (start === stop) continue // empty list element (RFC 9110 §5.6.1)
    if (++specs > maxRanges) return undefined
    const span = parseSpec(field, start, stop, length)
    if (span === undefined) return undefined
    if (span !== null) spans.push(span)
  }
  return specs === 0 ? undefined : spans
}

/** One range-spec in field[start, stop): a Span, null when unsatisfiable, undefined when invalid. */
function parseSpec(field: string, start: number, stop: number, length: number): Span | null | undefined {
  let dash = start
  while (dash < stop && field.charCodeAt(dash) !== 45 /* - */) dash++
  if (dash === stop) return undefined
  const first = digits(field, start, dash)
  const last = digits(field, dash + 1, stop)
  if (first === undefined || last === undefined) return undefined
  if (Number.isNaN(first)) {
    // suffix-range: the last N bytes (§14.1.1)
    if (Number.isNaN(last)) return undefined
    if (last === 0) return null
    return { first: Math.max(0, length - last), last: length - 1 }
  }
  if (!Number.isNaN(last) && last < first) return undefined
  if (first >= length) return null
  return { first, last: Number.isNaN(last) || last >= length ? length - 1 : last }
}

/** DIGITs in field[start, stop): NaN when empty, Infinity when too long to matter, undefined when not digits. */
function digits(field: string, start: number, stop: number): number | undefined {
  if (start === stop) return NaN
  for (let i = start; i < stop; i++) {
    const c = field.charCodeAt(i)
    if (c < 48 || c > 57) return undefined
  }
  return stop - start > MAX_DIGITS ? Infinity : Number(field.slice(start, stop))
}

function isOws(c: number): boolean {
  return c === 32 || c === 9
}

/** Do any two ranges share a byte? (At most maxRanges of them: sorting is bounded.) */
function overlapping(spans: Span[]): boolean {
  const sorted = [...spans].sort((a, b) => a.first - b.first)
  for (let i = 1; i < sorted.length; i++) if (sorted[i].first <= sorted[i - 1].last) return true
  return false
}

/** multipart/byteranges (RFC 9110 §14.6): each part with the stored Content-Type and its Content-Range. */
function multipart(spans: Span[], stored: StoredResponse, boundary: string): Uint8Array {
  const length = stored.body.byteLength
  const type = storedField(stored.headers, 'content-type')
  const typeLine = type === undefined ? '' : `Content-Type: ${type}\r\n`
  const chunks: Uint8Array[] = []
  for (let i = 0; i < spans.length; i++) {
    const { first, last } = spans[i]
    chunks.push(Buffer.from(`${i === 0 ? '' : '\r\n'}--${boundary}\r\n${typeLine}Content-Range: bytes ${first}-${last}/${length}\r\n\r\n`, 'latin1'))
    chunks.push(stored.body.subarray(first, last + 1))
  }
  chunks.push(Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1'))
  const out = Buffer.concat(chunks)
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength)
}

/**
 * Does `If-Range` let the range through (RFC 9110 §13.1.5)? An entity tag by strong
 * comparison, or an HTTP-date equal to a strong Last-Modified (§8.8.2.2: Date ≥ 1 s later).
 */
function ifRangeMatches(ifRange: string, headers: readonly string[]): boolean {
  const value = ifRange.trim()
  if (value.startsWith('"') || value.startsWith('W/')) {
    const etag = storedField(headers, 'etag')?.trim()
    return value.startsWith('"') && value.length >= 2 && value.endsWith('"') && etag !== undefined && etag === value
  }
  const at = parseHttpDate(value)
  if (Number.isNaN(at)) return false
  const modified = parseHttpDate(storedField(headers, 'last-modified'))
  const date = parseHttpDate(storedField(headers, 'date'))
  return at === modified && date - modified >= 1000
}

/** The first value of a stored field, by case-insensitive name. */
function storedField(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < headers.length; i += 2) if (headers[i].toLowerCase() === name) return headers[i + 1]
  return undefined
}
