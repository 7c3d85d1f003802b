import { createHash } from 'node:crypto'

/** Default cache key: path segments, method, stable-sorted raw query (DESIGN.md §1), and the secondary parts. */

/**
 * Characters escaped inside a path segment. `:` separates segments, `?` starts the query, `#`
 * starts a secondary part, `*` is the pattern wildcard, `[ ] \` are glob characters elsewhere and
 * `%` is escaped so an escape can never be forged by the raw URL. Controls, DEL and space too.
 */
const SEGMENT_UNSAFE = /[:*?#[\]\\%\x00-\x20\x7f]/g
/** Inside the query `:` `?` are not structural (the first `?` already split), so they stay readable. */
const QUERY_UNSAFE = /[*#[\]\\%\x00-\x20\x7f]/g
/** Secondary parts (host, Vary values) escape their own separators as well. */
const PART_UNSAFE = /[*#&=|~[\]\\%\x00-\x1f\x7f]/g

function percent(char: string): string {
  const code = char.charCodeAt(0)
  return code < 16 ? `%0${code.toString(16).toUpperCase()}` : `%${code.toString(16).toUpperCase()}`
}

export function escapeSegment(segment: string): string {
  return segment.replace(SEGMENT_UNSAFE, percent)
}

function escapeQuery(query: string): string {
  return query.replace(QUERY_UNSAFE, percent)
}

export function escapePart(part: string): string {
  return part.replace(PART_UNSAFE, percent)
}

/**
 * Sort `a=1&c=3&b=2` by parameter name, keeping the relative order of repeated names.
 * The raw text is kept (no decoding), so `%41` and `A` stay different.
 */
export function sortQuery(query: string): string {
  if (!query.includes('&')) return query
  const params = query.split('&')
  const names = params.map((param) => {
    const eq = param.indexOf('=')
    return eq === -1 ? param : param.slice(0, eq)
  })
  const order = params.map((_, i) => i)
  // Array.prototype.sort is stable, so equal names keep their order.
  order.sort((a, b) => (names[a] < names[b] ? -1 : names[a] > names[b] ? 1 : 0))
  let out = params[order[0]]
  for (let i = 1; i < order.length; i++) out += '&' + params[order[i]]
  return out
}

/**
 * The primary key of a request target: `GET /posts/42?b=2&a=1` → `posts:42:GET?a=1&b=2`,
 * `GET /` → `GET`. Returns undefined for a target that is not origin-form (`*`, absolute URLs).
 */
export function primaryKey(method: string, url: string): string | undefined {
  if (url.charCodeAt(0) !== 47 /* / */) return undefined
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  let key = ''
  if (path.length > 1) {
    // `/a/b` → segments `a`, `b`; `/a/` keeps its trailing empty segment, so it differs from `/a`.
    let start = 1
    for (;;) {
      const slash = path.indexOf('/', start)
      const segment = slash === -1 ? path.slice(start) : path.slice(start, slash)
      key += escapeSegment(segment) + ':'
      if (slash === -1) break
      start = slash + 1
    }
  }
  key += method
  if (q !== -1) key += '?' + escapeQuery(sortQuery(url.slice(q + 1)))
  return key
}

/**
 * The secondary part that every storage key carries: the authority the response was made for.
 * `forwarded` holds X-Forwarded-Host / X-Forwarded-Proto when the app trusts a proxy, because
 * Express then builds URLs from them (an unkeyed input would let one client poison the entry).
 */
export function hostPart(host: string | undefined, forwarded?: string): string {
  const base = host === undefined ? '' : escapePart(host.toLowerCase())
  return forwarded === undefined ? base : base + '|' + forwarded
}

/** Join primary and secondary parts into the key the store sees. */
export function storageKey(primary: string, host: string): string {
  return primary + '#' + host
}

/**
 * The variant part for a response that varies on `names` (lower case, sorted): each header's
 * value normalised as RFC 9111 §4.1 allows — lines joined by `, `, whitespace around commas
 * folded — and absent headers marked apart from empty ones.
 */
export function variantPart(names: readonly string[], headers: Record<string, string | string[] | undefined>): string {
  let out = ''
  for (let i = 0; i < names.length; i++) {
    const name = names[i]
    // Own string values only: a header named `constructor` or `__proto__` is data, never a lookup
    // into the object's prototype.
    const own = Object.prototype.hasOwnProperty.call(headers, name) ? headers[name] : undefined
    const raw = typeof own === 'string' || Array.isArray(own) ? own : undefined
    if (i > 0) out += '&'
    if (raw === undefined) {
      out += escapePart(name) + '!'
      continue
    }
    const value = (Array.isArray(raw) ? raw.join(',') : raw).split(',').map((s) => s.trim()).join(',')
    out += escapePart(name) + '=' + escapePart(value)
  }
  // Long values (cookies, tokens) are hashed so keys stay short; `~` cannot start a readable part.
  return out.length > MAX_READABLE_VARIANT ? '~' + createHash('sha256').update(out).digest('base64url') : out
}

const MAX_READABLE_VARIANT = 200
