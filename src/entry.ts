/** The stored response: build it from a captured response, check it after decoding, prepare its replay. */
import etag from 'etag'
import { UNSTORED_HEADERS, connectionTokens, deltaSeconds, parseHttpDate } from './policy.js'
import { bodyIn, type Form } from './compress.js'
import {
  COMPRESSED_FORMAT_VERSION,
  FORMAT_VERSION,
  type Entry,
  type PassEntry,
  type TagMark,
  type ResponseEntry,
  type ValueEntry,
  type VaryEntry,
} from './types.js'

/** An entry that cannot be used: undecodable, truncated, from another version, or unsafe to replay. */
export class CorruptEntryError extends Error {
  constructor(message: string) {
    super(`corrupt cache entry: ${message}`)
    this.name = 'CorruptEntryError'
  }
}

export interface Captured {
  status: number
  /** Flat name/value list as the app set it (original letter case). */
  headers: string[]
  body: Uint8Array
  requestTime: number
  responseTime: number
  lifetime: number
  staleWhileRevalidate: number
  staleIfError: number
  mustRevalidate: boolean
  /** Our own status header, never stored as a header. */
  statusHeader: string | false
  /** A route's own status header choice, kept with the entry for hits. */
  routeStatusHeader?: string | false
  /** Cache tags of the response (none: undefined or empty). */
  tags?: string[]
}

/**
 * Build the entry to store: hop-by-hop fields, `Set-Cookie`, `Age` and our status header dropped
 * (RFC 9111 §3.1), a `Date` recorded when the app sent none (it is replayed, never regenerated),
 * and a content ETag when the app set none. `Content-Length` is not stored: a replay sends the
 * length of the body it sends (see `prepare()`), so the two can never disagree.
 */
export function buildEntry(c: Captured): ResponseEntry {
  const lower = c.headers.map((part, i) => (i % 2 === 0 ? part.toLowerCase() : part))
  const hopByHop = connectionTokens(valuesOf(lower, 'connection').join(','))
  const ownHeader = c.statusHeader === false ? undefined : c.statusHeader.toLowerCase()
  const headers: string[] = []
  let hasDate = false
  let hasEtag = false
  for (let i = 0; i < lower.length; i += 2) {
    const name = lower[i]
    if (UNSTORED_HEADERS.has(name) || hopByHop.has(name) || name.startsWith('proxy-') || name === ownHeader) continue
    if (name === 'date') hasDate = true
    if (name === 'etag') hasEtag = true
    headers.push(intern(c.headers[i]), intern(c.headers[i + 1]))
  }
  if (!hasDate) headers.push('Date', intern(new Date(c.responseTime).toUTCString()))
  if (!hasEtag && c.status >= 200 && c.status < 300 && c.body.byteLength > 0) {
    // Same bytes, same tag, in every process: a hash of the content, weak because an outer
    // compression layer may change the bytes on the wire.
    headers.push('ETag', intern(etag(Buffer.from(c.body.buffer, c.body.byteOffset, c.body.byteLength), { weak: true })))
  }

  // RFC 9111 §4.2.3: corrected_initial_age = max(apparent_age, corrected_age_value).
  const dateValue = parseHttpDate(valuesOf(lower, 'date')[0])
  const apparentAge = Number.isNaN(dateValue) ? 0 : Math.max(0, c.responseTime - dateValue)
  const ageHeader = valuesOf(lower, 'age')[0]
  // RFC 9111 §5.1: a list (`Age: 7200, 0`) is read by its first member.
  const ageValue = ageHeader === undefined ? 0 : deltaSeconds(ageHeader.split(',')[0].trim(), 0) * 1000
  const correctedAge = ageValue + (c.responseTime - c.requestTime)
  const entry: ResponseEntry = {
    kind: 'response',
    status: c.status,
    // A copy without the spare capacity that push() leaves: the entry may live for hours.
    headers: headers.slice(),
    body: c.body,
    responseTime: c.responseTime,
    initialAge: Math.max(apparentAge, correctedAge),
    lifetime: c.lifetime,
    staleWhileRevalidate: c.staleWhileRevalidate,
    staleIfError: c.staleIfError,
    mustRevalidate: c.mustRevalidate,
  }
  // Added only when set: a literal with a conditional spread gets a spare field slot (8 B per entry).
  if (c.routeStatusHeader !== undefined) entry.statusHeader = c.routeStatusHeader
  if (c.tags !== undefined && c.tags.length > 0) {
    entry.tags = c.tags
    entry.since = c.requestTime
  }
  return entry
}

/**
 * Header names and values repeat across entries (`Content-Type: application/json; charset=utf-8`,
 * the `Date` of the current second, `Content-Length: 1024`): entries share one copy of
 * each instead of holding their own. The pool forgets everything when full, so unique values
 * (ETags) cannot grow it.
 */
const pool = new Map<string, string>()
const POOL_SIZE = 2048
const POOL_MAX_LENGTH = 128

export function intern(value: string): string {
  if (value.length > POOL_MAX_LENGTH) return flat(value)
  const known = pool.get(value)
  if (known !== undefined) return known
  if (pool.size >= POOL_SIZE) pool.clear()
  const copy = flat(value)
  pool.set(copy, copy)
  return copy
}

/**
 * The same text as one flat string. A string built by `+` is a chain of pieces (32 B per link,
 * plus the flat copy V8 makes when it is first hashed); what a long-lived entry keeps should be
 * just the flat copy. `normalize()` returns the flattened string itself when the text is already
 * in NFC (always for ASCII); any other text is kept as it is, unchanged.
 */
export function flat(value: string): string {
  const copy = value.normalize()
  return copy === value ? copy : value
}

/** The header list without the fields named `lowerName`. */
function without(headers: readonly string[], lowerName: string): string[] {
  const out: string[] = []
  for (let i = 0; i < headers.length; i += 2) if (headers[i].toLowerCase() !== lowerName) out.push(headers[i], headers[i + 1])
  return out
}

function valuesOf(lowerHeaders: string[], name: string): string[] {
  const out: string[] = []
  for (let i = 0; i < lowerHeaders.length; i += 2) if (lowerHeaders[i] === name) out.push(lowerHeaders[i + 1])
  return out
}

/** RFC 9111 §4.2.3 current_age, in ms. */
export function currentAge(entry: ResponseEntry, now: number): number {
  return entry.initialAge + Math.max(0, now - entry.responseTime)
}

/**
 * Fields a 304 never changes: they describe the stored body, which a 304 does not replace.
 * RFC 9111 §3.2 excepts Content-Length and the fields the stored response depends on; an
 * entity tag or a digest that no longer matched the bytes would be worse than a stale one.
 */
const BODY_FIELDS = new Set(['content-length', 'content-encoding', 'content-range', 'etag', 'content-md5', 'digest', 'content-digest', 'repr-digest'])

/**
 * Merge the headers of a 304 into a stored entry (RFC 9111 §4.3.4): fields the 304 carries
 * replace the stored ones, except the ones describing the stored body.
 */
export function freshenHeaders(stored: readonly string[], update: readonly string[]): string[] {
  const replaced = new Set<string>()
  for (let i = 0; i < update.length; i += 2) {
    const name = update[i].toLowerCase()
    if (!BODY_FIELDS.has(name)) replaced.add(name)
  }
  const out: string[] = []
  for (let i = 0; i < stored.length; i += 2) if (!replaced.has(stored[i].toLowerCase())) out.push(stored[i], stored[i + 1])
  for (let i = 0; i < update.length; i += 2) if (replaced.has(update[i].toLowerCase())) out.push(update[i], update[i + 1])
  return out
}

/** What a hit needs, computed once per entry instead of once per hit. */
export interface Prepared {
  /**
   * Headers for a full replay: the stored ones, `Content-Length` (the body's, except for 204 and
   * 304), then the SLOTS the hit fills in place: `Age` and its value, the status header's name
   * and value, `Cache-Status` and its value. Filled and written synchronously, so sharing is safe.
   */
  readonly head: ReplayHead
  /** Headers for a 304 (RFC 9110 §15.4.5), ending in the same slots; built on first use. */
  notModified: ReplayHead | undefined
  /** The stored fields of the form replayed (a compressed entry's form: its own ETag, Vary, Content-Encoding). */
  readonly fields: readonly string[]
  readonly etag: string | undefined
  /** Last-Modified, or Date when there is none: what If-Modified-Since is compared with. */
  readonly lastModified: string | undefined
  /**
   * The stored `Cache-Status` (the app's or an upstream cache's members), kept out of the head:
   * the hit's own member is appended to it in the last slot (RFC 9211 §2).
   */
  readonly upstreamStatus: string | undefined
}

/**
 * A head for `res.writeHead(status, head)`: names and values alternate, and a field the response
 * repeats stands once with all its lines as an array, in order.
 */
export type ReplayHead = (string | string[])[]

/**
 * The stored fields as a replay head: each repeated field (two `Link` lines, a
 * `Content-Security-Policy` array) is grouped under its first name as an array of its lines.
 * Node's `writeHead` sets a flat list through `setHeader` one pair at a time once the response
 * has any header (Express sets `X-Powered-By`), which would keep only the last line of each.
 */
export function replayFields(headers: readonly string[]): ReplayHead {
  let seen: Set<string> | undefined
  let repeated = false
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i].toLowerCase()
    seen ??= new Set()
    if (seen.has(name)) {
      repeated = true
      break
    }
    seen.add(name)
  }
  if (!repeated) return headers.slice()
  const out: ReplayHead = []
  const at = new Map<string, number>()
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i].toLowerCase()
    const index = at.get(name)
    if (index === undefined) {
      at.set(name, out.length)
      out.push(headers[i], headers[i + 1])
      continue
    }
    const value = out[index + 1]
    if (Array.isArray(value)) value.push(headers[i + 1])
    else out[index + 1] = [value, headers[i + 1]]
  }
  return out
}

/** The slots a hit fills: `Age`, the status header and `Cache-Status`, each name then value. */
const HIT_SLOTS = ['Age', '0', 'X-Cache', 'HIT', 'Cache-Status', 'cachet; hit']

/** How many slots (names and values) end every replay head: `Age`, the status header, `Cache-Status`. */
export const SLOTS = HIT_SLOTS.length

/**
 * Validators at once; the replay head only when a hit first asks for it. An entry is kept only
 * once it has a head: entries that are stored but never hit hold no second header list.
 */
class PreparedEntry implements Prepared {
  notModified: ReplayHead | undefined = undefined
  private replay: ReplayHead | undefined = undefined

  readonly etag: string | undefined
  readonly lastModified: string | undefined
  readonly upstreamStatus: string | undefined

  constructor(
    private readonly entry: ResponseEntry,
    readonly fields: readonly string[],
    read: { etag: string | undefined; lastModified: string | undefined; upstreamStatus: string | undefined },
    /** The body a compressed entry's form sends (its length goes in the head); unset: the stored body. */
    private readonly body: (() => Uint8Array) | undefined,
  ) {
    this.etag = read.etag
    this.lastModified = read.lastModified
    this.upstreamStatus = read.upstreamStatus
  }

  get head(): ReplayHead {
    return this.replay ?? this.buildHead()
  }

  private buildHead(): ReplayHead {
    const { status } = this.entry
    const headers = this.fields
    // concat() allocates exactly the length needed; push() would leave spare capacity.
    const fields = replayFields(this.upstreamStatus === undefined ? headers : without(headers, 'cache-status'))
    this.replay =
      status === 204 || status === 304
        ? fields.concat(HIT_SLOTS)
        : fields.concat('Content-Length', intern(String((this.body?.() ?? this.entry.body).byteLength)), HIT_SLOTS)
    if (this.fields === this.entry.headers) prepared.set(this.entry, this)
    return this.replay
  }
}

const prepared = new WeakMap<ResponseEntry, PreparedEntry>()

/** Fields a 304 carries when the full response would (RFC 9110 §15.4.5). */
export const NOT_MODIFIED_FIELDS: ReadonlySet<string> = new Set(['cache-control', 'content-location', 'date', 'etag', 'expires', 'vary'])

/**
 * What a hit needs to replay `entry` as stored. For an entry stored compressed, these are its
 * validators (the identity form's, as the app sent them: what a revalidation sends); its replays
 * go through prepareForm().
 */
export function prepare(entry: ResponseEntry): Prepared {
  const known = prepared.get(entry)
  if (known !== undefined) return known
  return prepareFields(entry, entry.headers, undefined)
}

function prepareFields(entry: ResponseEntry, h: readonly string[], body: (() => Uint8Array) | undefined): PreparedEntry {
  let tag: string | undefined
  let lastModified: string | undefined
  let date: string | undefined
  let upstream: string | undefined
  for (let i = 0; i < h.length; i += 2) {
    const name = h[i].toLowerCase()
    if (name === 'etag') tag ??= h[i + 1]
    else if (name === 'last-modified') lastModified ??= h[i + 1]
    else if (name === 'date') date ??= h[i + 1]
    else if (name === 'cache-status') upstream = upstream === undefined ? h[i + 1] : `${upstream}, ${h[i + 1]}`
  }
  return new PreparedEntry(entry, h, { etag: tag, lastModified: lastModified ?? date, upstreamStatus: upstream }, body)
}

/** The forms of compressed entries prepared so far, by entry. */
const forms = new WeakMap<ResponseEntry, Partial<Record<Form, PreparedEntry>>>()

/**
 * What a hit needs to replay a compressed entry in `form` (src/compress.ts chooses it): the
 * stored fields with `Vary` naming Accept-Encoding (merged into the app's, once), and for an
 * encoded form `Content-Encoding` and an entity tag of its own (RFC 9110 §8.8.3: another content
 * coding is another representation): `"abc"` becomes `"abc-br"`, `W/"abc"` becomes `W/"abc-br"`.
 * An entry stored as the app sent it: prepare(). `limit` bounds a decoded body.
 */
export function prepareForm(entry: ResponseEntry, form: Form, limit: number): Prepared {
  let known = forms.get(entry)
  const found = known?.[form]
  if (found !== undefined) return found
  const p = prepareFields(entry, formFields(entry.headers, form), () => bodyIn(entry, form, limit))
  if (known === undefined) forms.set(entry, (known = {}))
  known[form] = p
  return p
}

function formFields(headers: readonly string[], form: Form): string[] {
  const out: string[] = []
  let vary: string | undefined
  let varyName = 'Vary'
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i].toLowerCase()
    if (name === 'vary') {
      if (vary === undefined) varyName = headers[i]
      const value = headers[i + 1].trim()
      if (value !== '') vary = vary === undefined ? value : `${vary}, ${value}`
      continue
    }
    if (name === 'etag' && form !== 'identity') {
      const tag = codedTag(headers[i + 1], form)
      if (tag !== undefined) out.push(headers[i], tag)
      continue
    }
    out.push(headers[i], headers[i + 1])
  }
  out.push(varyName, vary === undefined ? 'Accept-Encoding' : `${vary}, Accept-Encoding`)
  if (form !== 'identity') out.push('Content-Encoding', form)
  return out
}

/** The entity tag of an encoded form; undefined (no validator) when the stored one is not a valid tag. */
function codedTag(tag: string, coding: string): string | undefined {
  const m = /^\s*(W\/)?"([^"]*)"\s*$/.exec(tag)
  return m === null ? undefined : intern(`${m[1] ?? ''}"${m[2]}-${coding}"`)
}

/** The 304 headers of an entry (RFC 9110 §15.4.5), built once, when a 304 is first sent. */
export function notModifiedHeaders(entry: ResponseEntry, p: Prepared): ReplayHead {
  if (p.notModified !== undefined) return p.notModified
  const out: string[] = []
  const h = p.fields
  for (let i = 0; i < h.length; i += 2) if (NOT_MODIFIED_FIELDS.has(h[i].toLowerCase())) out.push(h[i], h[i + 1])
  p.notModified = replayFields(out).concat(HIT_SLOTS)
  // Keep it (and the validators) with the entry for the next conditional hit.
  if (p instanceof PreparedEntry && h === entry.headers) prepared.set(entry, p)
  return p.notModified
}

// ---------------------------------------------------------------------------------------------
// Wire form shared by the coders: short field names, a format version, and strict checks.

export interface WireResponse {
  v: number
  k: 'r'
  s: number
  h: string[]
  b: Uint8Array
  t: number
  a: number
  l: number
  w: number
  e: number
  m: 0 | 1
  /** The route's status header: a name, or 0 for none; absent for the cache's own. */
  c?: string | 0
  /** Cache tags, when the response has any. */
  g?: string[]
  /** When its request reached the app (tagged entries only). */
  q?: number
  /** The content coding the body is stored in (then `v` is COMPRESSED_FORMAT_VERSION). */
  z?: 'br' | 'gzip'
}

export interface WireVary {
  v: number
  k: 'v'
  y: string[]
  n: string[]
  x: number
}

/**
 * A stored value (`k: 'd'`). `d` is the value as the coder writes it (msgpackCoder: a nested
 * MessagePack blob; jsonCoder: a tagged JSON tree, see src/coders/json.ts); absent for a cached
 * rejection, which carries `r: [name, message]` instead.
 */
export interface WireValue {
  v: number
  k: 'd'
  d?: unknown
  t: number
  x: number
  w: number
  r?: [string, string]
  /** Cache tags, when the value has any, and when its computation began. */
  g?: string[]
  q?: number
}

export interface WirePass {
  v: number
  k: 'p'
  x: number
}

export interface WireMark {
  v: number
  k: 't'
  /** Last hard invalidation. */
  x: number
  /** Last soft invalidation. */
  o: number
}

export function toWire(entry: Entry): WireResponse | WireVary | WireValue | WirePass | WireMark {
  if (entry.kind === 'mark') return { v: FORMAT_VERSION, k: 't', x: entry.hard, o: entry.soft }
  if (entry.kind === 'value') return valueToWire(entry)
  if (entry.kind === 'vary') return { v: FORMAT_VERSION, k: 'v', y: entry.vary, n: entry.variants, x: entry.expires }
  if (entry.kind === 'pass') return { v: FORMAT_VERSION, k: 'p', x: entry.expires }
  return {
    v: entry.encoding === undefined ? FORMAT_VERSION : COMPRESSED_FORMAT_VERSION,
    k: 'r',
    s: entry.status,
    h: entry.headers,
    b: entry.body,
    t: entry.responseTime,
    a: entry.initialAge,
    l: entry.lifetime,
    w: entry.staleWhileRevalidate,
    e: entry.staleIfError,
    m: entry.mustRevalidate ? 1 : 0,
    ...(entry.statusHeader === undefined ? {} : { c: entry.statusHeader === false ? 0 : entry.statusHeader }),
    ...(entry.tags === undefined ? {} : { g: entry.tags, q: entry.since ?? entry.responseTime }),
    ...(entry.encoding === undefined ? {} : { z: entry.encoding }),
  }
}

const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
// RFC 9110 §5.5: a field value is visible characters, spaces and tabs (obs-text up to 0xFF).
// CR, LF or NUL would split the response; other controls make Node refuse to write the head.
const UNSAFE_VALUE = /[^\t\x20-\x7e\x80-\xff]/

/** Check a decoded object field by field; anything off throws CorruptEntryError. */
export function fromWire(value: unknown, body: (raw: unknown) => Uint8Array, data: (raw: unknown) => unknown = identity): Entry {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new CorruptEntryError('not an object')
  const w = value as Record<string, unknown>
  // A compressed response entry has a version of its own (src/types.ts COMPRESSED_FORMAT_VERSION).
  const compressed = w.v === COMPRESSED_FORMAT_VERSION && w.k === 'r'
  if (w.v !== FORMAT_VERSION && !compressed) throw new CorruptEntryError(`format version ${String(w.v)}, expected ${FORMAT_VERSION}`)
  if (w.k === 'd') return valueFromWire(w, data)
  if (w.k === 'v') {
    const vary = stringArray(w.y, 'vary')
    const variants = stringArray(w.n, 'variants')
    return { kind: 'vary', vary, variants, expires: finite(w.x, 'expires') } satisfies VaryEntry
  }
  if (w.k === 'p') return { kind: 'pass', expires: finite(w.x, 'expires') } satisfies PassEntry
  if (w.k === 't') return { kind: 'mark', hard: finite(w.x, 'hard'), soft: finite(w.o, 'soft') } satisfies TagMark
  if (w.k !== 'r') throw new CorruptEntryError('unknown entry kind')
  const status = w.s
  // 206 and 304 answer a request of their own (RFC 9111 §3.3–3.4, §4.3.4): never served as such.
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 200 || status > 599 || status === 206 || status === 304) {
    throw new CorruptEntryError(`status ${String(status)}`)
  }
  const headers = stringArray(w.h, 'headers')
  if (headers.length % 2 !== 0) throw new CorruptEntryError('odd header list')
  for (let i = 0; i < headers.length; i += 2) {
    if (!FIELD_NAME.test(headers[i])) throw new CorruptEntryError(`header name ${JSON.stringify(headers[i].slice(0, 40))}`)
    if (UNSAFE_VALUE.test(headers[i + 1])) throw new CorruptEntryError(`header ${headers[i]} has CR, LF, NUL or another control character`)
  }
  // Never written (RFC 9111 §3.1; a replay sends its body's length): hop-by-hop fields, framing,
  // Set-Cookie or Age here were not written by this version, and replayed they could desynchronise
  // a keep-alive connection or hand one user's cookie to everyone.
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i].toLowerCase()
    if (UNSTORED_HEADERS.has(name) || name.startsWith('proxy-')) throw new CorruptEntryError(`a stored ${headers[i]} field`)
  }
  const stored = body(w.b)
  const m = w.m
  if (m !== 0 && m !== 1) throw new CorruptEntryError('flags')
  const entry: ResponseEntry = {
    kind: 'response',
    status,
    headers,
    body: stored,
    responseTime: finite(w.t, 'responseTime'),
    initialAge: finite(w.a, 'initialAge'),
    lifetime: finite(w.l, 'lifetime'),
    staleWhileRevalidate: finite(w.w, 'staleWhileRevalidate'),
    staleIfError: finite(w.e, 'staleIfError'),
    mustRevalidate: m === 1,
  }
  if (w.c !== undefined) entry.statusHeader = statusHeaderOf(w.c)
  if (w.g !== undefined) {
    entry.tags = stringArray(w.g, 'tags')
    entry.since = finite(w.q, 'since')
  }
  if (compressed) {
    if (w.z !== 'br' && w.z !== 'gzip') throw new CorruptEntryError(`content coding ${String(w.z)}`)
    // The stored fields describe the identity form: a Content-Encoding among them would be sent twice.
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i].toLowerCase()
      if (name === 'content-encoding' || name === 'content-range') throw new CorruptEntryError(`a compressed entry with a stored ${headers[i]} field`)
    }
    entry.encoding = w.z
  } else if (w.z !== undefined) {
    throw new CorruptEntryError(`a content coding in a version ${FORMAT_VERSION} entry`)
  }
  return entry
}

function statusHeaderOf(value: unknown): string | false {
  if (value === 0) return false
  if (typeof value === 'string' && FIELD_NAME.test(value)) return value
  throw new CorruptEntryError('status header name')
}

function stringArray(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || !value.every((s) => typeof s === 'string')) throw new CorruptEntryError(`${what} is not a list of strings`)
  return value as string[]
}

function finite(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) throw new CorruptEntryError(`${what} ${String(value)}`)
  return value
}

function identity(raw: unknown): unknown {
  return raw
}

/** The wire form of a stored value; `d` is left for the coder to encode. */
function valueToWire(entry: ValueEntry): WireValue {
  const wire: WireValue = { v: FORMAT_VERSION, k: 'd', t: entry.storedAt, x: entry.expires, w: entry.staleUntil }
  if (entry.rejection !== undefined) wire.r = [entry.rejection.name, entry.rejection.message]
  else wire.d = entry.value
  if (entry.tags !== undefined) {
    wire.g = entry.tags
    wire.q = entry.since ?? entry.storedAt
  }
  return wire
}

/** Check a stored value's fields; `data` decodes `d` as its coder wrote it. */
function valueFromWire(w: Record<string, unknown>, data: (raw: unknown) => unknown): ValueEntry {
  const storedAt = finite(w.t, 'storedAt')
  const expires = finite(w.x, 'expires')
  const staleUntil = finite(w.w, 'staleUntil')
  if (staleUntil < expires) throw new CorruptEntryError('stale window ends before freshness')
  let entry: ValueEntry
  if (w.r !== undefined) {
    const r = stringArray(w.r, 'rejection')
    if (r.length !== 2 || w.d !== undefined) throw new CorruptEntryError('rejection')
    entry = { kind: 'value', value: undefined, storedAt, expires, staleUntil, rejection: { name: r[0], message: r[1] } }
  } else {
    if (!('d' in w)) throw new CorruptEntryError('value missing')
    entry = { kind: 'value', value: data(w.d), storedAt, expires, staleUntil }
  }
  if (w.g !== undefined) {
    entry.tags = stringArray(w.g, 'tags')
    entry.since = finite(w.q, 'since')
  }
  return entry
}
