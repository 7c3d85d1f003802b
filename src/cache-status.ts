/** The Cache-Status response field (RFC 9211): this cache's member, built once per response and appended last. */
import { describe } from './validate.js'

/** Why the request went forward to the origin (RFC 9211 §2.2). */
export type ForwardReason = 'uri-miss' | 'vary-miss' | 'miss' | 'request' | 'stale' | 'partial' | 'bypass' | 'method'

/** What this cache did with one request; each field is one Cache-Status parameter (RFC 9211 §2.1–§2.8). */
export interface CacheStatusParams {
  /** Answered from storage without going forward (`hit`, §2.1). Normally not combined with `fwd`. @default false */
  hit?: boolean
  /** Why the request went forward (`fwd`, §2.2); an unknown value is left out. @default undefined */
  fwd?: ForwardReason
  /** Status of the forwarded response (`fwd-status`, §2.3), written only with `fwd`; 100–599. @default undefined */
  fwdStatus?: number
  /** The forwarded response was stored (`stored`, §2.5). @default false */
  stored?: boolean
  /** The request was collapsed with another one for the same key (`collapsed`, §2.6). @default false */
  collapsed?: boolean
  /**
   * Freshness left, in seconds (`ttl`, §2.4); negative when stale. Truncated to an integer,
   * clamped to 15 digits; a non-finite number is left out. @default undefined
   */
  ttl?: number
  /** The cache key (`key`, §2.7), always as an sf-string. @default undefined */
  key?: string
  /** Implementation-specific detail (`detail`, §2.8): a token when it is one, else an sf-string. @default undefined */
  detail?: string
}

const FORWARD_REASONS: ReadonlySet<string> = new Set(['uri-miss', 'vary-miss', 'miss', 'request', 'stale', 'partial', 'bypass', 'method'])

/** sf-token (RFC 8941 §3.3.4): `( ALPHA / "*" ) *( tchar / ":" / "/" )`. */
const SF_TOKEN = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*$/

/** Largest magnitude of an sf-integer (RFC 8941 §3.3.1). */
const MAX_INTEGER = 999_999_999_999_999

/**
 * Check a cache name for Cache-Status once, at construction: it must be an sf-token
 * (RFC 8941 §3.3.4, e.g. `cachet`, `cdn.example.com`, `Edge/1.0`) of at most 256 characters.
 * Returns the name; throws a TypeError naming `what` (e.g. `option "cacheStatus"`) and
 * showing the value otherwise.
 */
export function checkCacheStatusName(value: unknown, what: string): string {
  if (typeof value === 'string' && value.length <= 256 && SF_TOKEN.test(value)) return value
  const shown = typeof value === 'string' && value.length > 64 ? `${describe(value.slice(0, 64))}…` : describe(value)
  throw new TypeError(`${what} must be a token such as 'cachet' (a letter or *, then letters, digits and !#$%&'*+-.^_\`|~:/, at most 256), got ${shown}`)
}

/**
 * This cache's Cache-Status member (RFC 9211 §2), e.g. `cachet; hit; ttl=25`,
 * `cachet; fwd=uri-miss; stored; ttl=30`, `cachet; fwd=bypass; detail="response has Set-Cookie"`.
 * Parameters come in the order hit, fwd, fwd-status, stored, collapsed, ttl, key, detail;
 * false or invalid ones are left out. Never throws: `name` should have passed
 * `checkCacheStatusName()` at construction, and is written as an sf-string if it did not.
 *
 * Request flow, when the response head goes out (hit, miss, bypass or revalidation alike):
 * ```ts
 * res.setHeader('Cache-Status', appendCacheStatus(res.getHeader('cache-status'),
 *   cacheStatusMember(name, { fwd: 'uri-miss', stored: decision.store, ttl: decision.lifetime / 1000 })))
 * ```
 * On a hit the stored Cache-Status of the origin is replayed, so append to it the same way.
 */
export function cacheStatusMember(name: string, params: CacheStatusParams): string {
  let out = SF_TOKEN.test(name) ? name : sfString(name)
  if (params.hit === true) out += '; hit'
  const fwd = params.fwd !== undefined && FORWARD_REASONS.has(params.fwd) ? params.fwd : undefined
  if (fwd !== undefined) {
    out += `; fwd=${fwd}`
    const status = params.fwdStatus
    if (status !== undefined && Number.isInteger(status) && status >= 100 && status <= 599) out += `; fwd-status=${status}`
  }
  if (params.stored === true) out += '; stored'
  if (params.collapsed === true) out += '; collapsed'
  if (params.ttl !== undefined && Number.isFinite(params.ttl)) {
    const ttl = Math.max(-MAX_INTEGER, Math.min(MAX_INTEGER, Math.trunc(params.ttl)))
    out += `; ttl=${ttl === 0 ? 0 : ttl}`
  }
  if (params.key !== undefined) out += `; key=${sfString(params.key)}`
  if (params.detail !== undefined) out += `; detail=${SF_TOKEN.test(params.detail) ? params.detail : sfString(params.detail)}`
  return out
}

/**
 * Append this cache's member to a Cache-Status the app or an upstream cache already set
 * (`res.getHeader('cache-status')`): RFC 9211 §2 puts the cache closest to the user last.
 * Several field lines are joined; empty members and stray commas at either end are dropped.
 */
export function appendCacheStatus(existing: string | string[] | number | undefined, member: string): string {
  if (existing === undefined) return member
  const lines = Array.isArray(existing) ? existing : [String(existing)]
  const kept: string[] = []
  for (const line of lines) {
    const trimmed = trimListEdges(line)
    if (trimmed !== '') kept.push(trimmed)
  }
  kept.push(member)
  return kept.join(', ')
}

/** Strip whitespace and commas from both ends, in linear time (no backtracking pattern). */
function trimListEdges(text: string): string {
  let start = 0
  let end = text.length
  while (start < end && isListEdge(text.charCodeAt(start))) start++
  while (end > start && isListEdge(text.charCodeAt(end - 1))) end--
  return text.slice(start, end)
}

function isListEdge(c: number): boolean {
  return c === 44 || c === 32 || c === 9 || c === 13 || c === 10
}

/**
 * An sf-string (RFC 8941 §3.3.3): `"` and `\` escaped; characters outside printable ASCII
 * (which an sf-string cannot hold) become a space for controls and `?` for the rest.
 */
function sfString(text: string): string {
  let out = '"'
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c === 34 || c === 92) out += `\\${text[i]}`
    else if (c >= 0x20 && c <= 0x7e) out += text[i]
    else if (c < 0x20 || c === 0x7f) out += ' '
    else {
      out += '?'
      const next = text.charCodeAt(i + 1)
      if (c >= 0xd800 && c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) i++ // one ? for a surrogate pair
    }
  }
  return `${out}"`
}
