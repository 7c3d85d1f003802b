/** Compressed storage: which responses are stored compressed, how, and which form of a compressed entry a request gets (Accept-Encoding, RFC 9110 §12.5.3). */
import { createHash } from 'node:crypto'
import { brotliCompressSync, brotliDecompressSync, constants, gunzipSync, gzipSync } from 'node:zlib'
import type { IncomingHttpHeaders } from 'node:http'
import { LRUCache } from 'lru-cache'
import type { ResponseEntry } from './types.js'

/** The content codings cachet stores and serves (RFC 9110 §8.4.1). */
export type Coding = 'br' | 'gzip'

/** A form a compressed entry is served in: its stored coding, the other one, or the decoded bytes. */
export type Form = Coding | 'identity'

/**
 * Brotli quality 5: on 100 KB of varied JSON about 1.4 ms for a 19× reduction, against 0.8 ms for
 * 15× at quality 4 and 180 ms for 9 % less at 11 (the work runs once per stored miss, synchronously).
 */
const BROTLI_QUALITY = 5
/** gzip's default level: 0.55 ms and 10× on the same body. */
const GZIP_LEVEL = 6

/**
 * Media types worth compressing: text, and the structured syntaxes that are text (JSON, XML, and
 * their `+json` / `+xml` suffixes, RFC 6839), scripts, and a few uncompressed binary formats.
 * Images, audio, video, archives and fonts in WOFF/WOFF2 are compressed already.
 */
const COMPRESSIBLE_TYPES = new Set([
  'application/json',
  'application/javascript',
  'application/x-javascript',
  'application/ecmascript',
  'application/xml',
  'application/x-ndjson',
  'application/x-www-form-urlencoded',
  'application/graphql',
  'application/wasm',
  'application/yaml',
  'application/x-yaml',
  'application/rtf',
  'application/vnd.ms-fontobject',
  'font/ttf',
  'font/otf',
  'image/bmp',
  'image/x-icon',
  'image/vnd.microsoft.icon',
])

/** Is a response of this Content-Type worth compressing? */
export function compressible(contentType: string | undefined): boolean {
  if (contentType === undefined) return false
  const semi = contentType.indexOf(';')
  const type = (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase()
  if (type.startsWith('text/')) return type !== 'text/event-stream'
  return COMPRESSIBLE_TYPES.has(type) || type.endsWith('+json') || type.endsWith('+xml')
}

/** What decides whether a response is stored compressed, read from its status and fields. */
export interface CompressionCandidate {
  status: number
  /** A field's value as a single string (lines joined with `, `), by lower-case name. */
  field(name: string): string | undefined
}

/** Fields that describe the bytes or the representation exactly (RFC 9530, RFC 1864): another coding would not match them. */
const DIGEST_FIELDS = ['content-digest', 'repr-digest', 'digest', 'content-md5']

/**
 * May this response be stored compressed? A 200 or 203 (a 206 is never stored; other statuses
 * are error pages and redirects, small and rarely served), of a compressible type, with no
 * Content-Encoding or Content-Range of its own (the app compressed it: stored as it is), no
 * digest of its bytes, no `Cache-Control: no-transform` (RFC 9110 §7.7, RFC 9111 §5.2.2.6) and
 * no `Vary` on Accept-Encoding or `*` (the app negotiates encodings itself). The body size is
 * checked apart.
 */
export function mayCompress(c: CompressionCandidate): boolean {
  if (c.status !== 200 && c.status !== 203) return false
  if (c.field('content-encoding') !== undefined || c.field('content-range') !== undefined) return false
  for (const name of DIGEST_FIELDS) if (c.field(name) !== undefined) return false
  if (!compressible(c.field('content-type'))) return false
  const cc = c.field('cache-control')
  if (cc !== undefined && /(?:^|,)\s*no-transform\s*(?:$|[,=])/i.test(cc)) return false
  const vary = c.field('vary')
  if (vary !== undefined && /(?:^|,)\s*(?:accept-encoding|\*)\s*(?:$|,)/i.test(vary)) return false
  return true
}

/** The field of a flat `[name, value, …]` list, its lines joined with `, `. */
export function listField(headers: readonly string[], lowerName: string): string | undefined {
  let value: string | undefined
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i].toLowerCase() === lowerName) value = value === undefined ? headers[i + 1] : `${value}, ${headers[i + 1]}`
  }
  return value
}

/** `body` in `coding`. */
export function encode(body: Uint8Array, coding: Coding): Buffer {
  if (coding === 'gzip') return gzipSync(body, { level: GZIP_LEVEL })
  return brotliCompressSync(body, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY,
      [constants.BROTLI_PARAM_MODE]: constants.BROTLI_MODE_TEXT,
      [constants.BROTLI_PARAM_SIZE_HINT]: body.byteLength,
    },
  })
}

/** The bytes of `body`, stored in `coding`; never more than `limit` bytes (a tampered entry is no decompression bomb). */
export function decode(body: Uint8Array, coding: Coding, limit: number): Buffer {
  const options = { maxOutputLength: Math.max(1, limit) }
  return coding === 'gzip' ? gunzipSync(body, options) : brotliDecompressSync(body, options)
}

/**
 * Store `entry` compressed in `coding` when that makes it smaller: its body is replaced and the
 * coding recorded. The headers stay those of the identity form (ETag included). Returns whether
 * it did. The caller has checked mayCompress() and the size threshold.
 *
 * Synchronous, on the event loop: node:zlib's callback form (the thread pool) took 1.6–1.8 ms of
 * CPU against 1.2 ms for 100 KB of JSON with brotli, and the entry is stored before the next
 * request for it arrives, as without compression.
 */
export function compressEntry(entry: ResponseEntry, coding: Coding): boolean {
  const compressed = encode(entry.body, coding)
  // Worth it only when it saves something: at least 1/16 of the body.
  if (compressed.byteLength > entry.body.byteLength - (entry.body.byteLength >> 4)) return false
  // Memory of its own: a small result may be a view of a larger zlib buffer.
  const body = Buffer.allocUnsafeSlow(compressed.byteLength)
  body.set(compressed)
  entry.body = body
  entry.encoding = coding
  return true
}

// ---------------------------------------------------------------------------------------------
// Negotiation (RFC 9110 §12.5.3)

/** How much a request accepts each form: its qvalue, 0 for not acceptable. */
interface Acceptance {
  br: number
  gzip: number
  identity: number
}

/** No Accept-Encoding field: the client has no preference; identity, as an origin would send. */
const NO_FIELD: Acceptance = Object.freeze({ br: 0, gzip: 0, identity: 1 })

/** The parsed values clients send most: a handful of distinct strings in practice. */
const parsed = new Map<string, Acceptance>()
const PARSED_MAX = 64
/** Longer fields are parsed each time, never kept. */
const PARSED_MAX_LENGTH = 256

/** Read an Accept-Encoding field value. */
export function acceptance(field: string | undefined): Acceptance {
  if (field === undefined) return NO_FIELD
  const known = parsed.get(field)
  if (known !== undefined) return known
  const result = parseAcceptEncoding(field)
  if (field.length <= PARSED_MAX_LENGTH) {
    if (parsed.size >= PARSED_MAX) parsed.clear()
    parsed.set(field, result)
  }
  return result
}

function parseAcceptEncoding(field: string): Acceptance {
  let br: number | undefined
  let gzip: number | undefined
  let identity: number | undefined
  let any: number | undefined
  for (const member of field.split(',')) {
    const semi = member.indexOf(';')
    const name = (semi < 0 ? member : member.slice(0, semi)).trim().toLowerCase()
    if (name === '') continue
    const q = semi < 0 ? 1 : qvalue(member.slice(semi + 1))
    if (q === undefined) continue // an invalid weight: the member is ignored
    // The highest weight wins when a coding is listed twice.
    if (name === 'br') br = Math.max(br ?? 0, q)
    else if (name === 'gzip' || name === 'x-gzip') gzip = Math.max(gzip ?? 0, q)
    else if (name === 'identity') identity = Math.max(identity ?? 0, q)
    else if (name === '*') any = Math.max(any ?? 0, q)
  }
  // `*` stands for every coding not listed; identity is acceptable unless excluded, at the lowest
  // preference when it is not listed (it never wins over a coding the client asked for).
  return Object.freeze({
    br: br ?? any ?? 0,
    gzip: gzip ?? any ?? 0,
    identity: identity ?? (any === 0 ? 0 : 0.0001),
  })
}

/** A weight's value (`q=0.5`, RFC 9110 §12.4.2), or undefined when it is not one. */
function qvalue(params: string): number | undefined {
  let q = 1
  for (const param of params.split(';')) {
    const eq = param.indexOf('=')
    if (eq < 0 || param.slice(0, eq).trim().toLowerCase() !== 'q') continue
    const value = param.slice(eq + 1).trim()
    if (!/^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/.test(value)) return undefined
    q = Number(value)
  }
  return q
}

/**
 * The form of an entry stored in `stored` a request gets: the stored coding whenever the client
 * accepts it (no work at all), else the other coding or identity, whichever it weighs more (the
 * coding on a tie), else identity even when the client excluded it: the response an origin
 * without codings would send (RFC 9110 §12.5.3 lets a server disregard the field).
 */
export function chooseForm(stored: Coding, field: string | undefined): Form {
  const a = acceptance(field)
  if (a[stored] > 0) return stored
  const other: Coding = stored === 'br' ? 'gzip' : 'br'
  return a[other] > 0 && a[other] >= a.identity ? other : 'identity'
}

/**
 * The form a request gets: chooseForm() on its Accept-Encoding, or identity, the representation
 * the app sent, when it asks that nothing be transformed (`Cache-Control: no-transform`, RFC 9111
 * §5.2.1.6).
 */
export function formFor(stored: Coding, headers: IncomingHttpHeaders): Form {
  const cc = headers['cache-control']
  if (cc !== undefined && /(?:^|,)\s*no-transform\s*(?:$|,)/i.test(cc)) return 'identity'
  return chooseForm(stored, headers['accept-encoding'])
}

// ---------------------------------------------------------------------------------------------
// Decoded and transcoded copies

/** The copies made from one stored body, by form. */
type Copies = Partial<Record<Form, Uint8Array>>

/**
 * Copies of stored bodies in the forms clients asked for, so repeated hits in another form do
 * not decode (0.2 ms for 100 KB of brotli) or transcode (0.75 ms) each time. Keyed by a digest
 * of the stored bytes, so the same bytes find their copies whatever entry object holds them (a
 * store without hot copies decodes a new one per hit) and a copy can never belong to other bytes.
 * Bounded by bytes, least recently used first out.
 */
const copies = new LRUCache<string, Copies>({
  maxSize: 16 * 1024 * 1024,
  sizeCalculation: (value, key) => {
    let size = key.length + 64
    for (const form of Object.values(value)) size += form.byteLength
    return size
  },
})

/** Digests of stored bodies already hashed, by body: entries held as objects hash theirs once. */
const digests = new WeakMap<Uint8Array, string>()

function digestOf(body: Uint8Array, coding: Coding): string {
  const known = digests.get(body)
  if (known !== undefined) return known
  const digest = coding + ':' + createHash('sha256').update(body).digest('base64')
  digests.set(body, digest)
  return digest
}

/**
 * The body of a compressed entry in `form`: the stored bytes, or a copy decoded (and for the
 * other coding, re-encoded) from them. `limit` bounds the decoded size.
 */
export function bodyIn(entry: ResponseEntry, form: Form, limit: number): Uint8Array {
  const stored = entry.encoding
  if (stored === undefined || form === stored) return entry.body
  const digest = digestOf(entry.body, stored)
  const known = copies.get(digest)
  const found = known?.[form]
  if (found !== undefined) return found
  const identity = known?.identity ?? decode(entry.body, stored, limit)
  const body = form === 'identity' ? identity : encode(identity, form)
  copies.set(digest, { ...known, identity, [form]: body })
  return body
}
