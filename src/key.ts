/** Default cache key: RFC 3986 §6.2.2-normalised path segments, method, sorted query, and the secondary parts. */
import { createHash } from 'node:crypto'
import { patternToRegExp } from './pattern.js'
import { describe } from './validate.js'

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

/** Percent-escape the characters that would be ambiguous inside one key segment. */
export function escapeSegment(segment: string): string {
  return segment.replace(SEGMENT_UNSAFE, percent)
}

function escapeQuery(query: string): string {
  return query.replace(QUERY_UNSAFE, percent)
}

/** Percent-escape the characters that would be ambiguous inside a secondary part (host, spelling, Vary values). */
export function escapePart(part: string): string {
  return part.replace(PART_UNSAFE, percent)
}

/**
 * Sort `a=1&c=3&b=2` by parameter name, keeping the relative order of repeated names. Names are
 * compared as given: primaryKey() sorts by the decoded name instead (see queryKey()).
 */
export function sortQuery(query: string): string {
  if (!query.includes('&')) return query
  const params = query.split('&')
  const names = params.map(paramName)
  return stableSort(params, names).join('&')
}

function paramName(param: string): string {
  const eq = param.indexOf('=')
  return eq === -1 ? param : param.slice(0, eq)
}

/** `items` ordered by `keys` (compared as strings); equal keys keep their order (Array.prototype.sort is stable). */
function stableSort(items: string[], keys: string[]): string[] {
  const order = items.map((_, i) => i)
  order.sort((a, b) => (keys[a] < keys[b] ? -1 : keys[a] > keys[b] ? 1 : 0))
  return order.map((i) => items[i])
}

/** RFC 3986 §2.3 unreserved characters: an escape of one of these means the character itself. */
const UNRESERVED = /^[A-Za-z0-9\-._~]$/
const HEX2 = /^[0-9A-Fa-f]{2}$/

/**
 * RFC 3986 §6.2.2.1–2 normalisation of one path segment, query name or query value: escapes of
 * unreserved characters are decoded (`%7E` → `~`, `%34%32` → `42`), every other escape gets
 * upper-case hex (`%2f` → `%2F`), and a `%` that starts no escape stays as it is. With `lower`,
 * the characters (never the hex of an escape) are lower-cased as well.
 */
export function normaliseEscapes(text: string, lower = false): string {
  if (!text.includes('%')) return lower ? text.toLowerCase() : text
  let out = ''
  let at = 0
  for (;;) {
    const p = text.indexOf('%', at)
    const plain = p === -1 ? text.slice(at) : text.slice(at, p)
    out += lower ? plain.toLowerCase() : plain
    if (p === -1) return out
    const hex = text.slice(p + 1, p + 3)
    if (!HEX2.test(hex)) {
      out += '%'
      at = p + 1
      continue
    }
    const char = String.fromCharCode(parseInt(hex, 16))
    out += UNRESERVED.test(char) ? (lower ? char.toLowerCase() : char) : '%' + hex.toUpperCase()
    at = p + 3
  }
}

/** The byte values of `%XX` escapes, or -1 where a `%` starts no escape. */
const ESCAPE_OR_PERCENT = /%([0-9A-Fa-f]{2})?/g

/**
 * The name a query parser hands the app, for sorting and for ignoreParams/onlyParams: `+` is a
 * space and escapes are decoded. Names that decode to anything but ASCII without `%` (invalid
 * escapes, `%25`, non-ASCII bytes) are where the parsers differ (qs keeps the raw text when
 * decoding fails, node:querystring decodes escape by escape): those all sort as one group,
 * after the others, so no parser ever sees the values of one name reordered.
 */
export function decodedName(name: string): string {
  const spaced = name.includes('+') ? name.replace(/\+/g, ' ') : name
  if (!spaced.includes('%')) return isPlainAscii(spaced) ? spaced : UNSURE_NAME
  let valid = true
  const decoded = spaced.replace(ESCAPE_OR_PERCENT, (match: string, hex: string | undefined) => {
    if (hex === undefined) valid = false
    return hex === undefined ? match : String.fromCharCode(parseInt(hex, 16))
  })
  return valid && isPlainAscii(decoded) && !decoded.includes('%') ? decoded : UNSURE_NAME
}

/** Sorts after every ASCII name. */
const UNSURE_NAME = '\uffff'

function isPlainAscii(text: string): boolean {
  return /^[\x00-\x7f]*$/.test(text)
}

/** Which query parameters the default key keeps, by decoded name (ignoreParams / onlyParams). */
export type ParamFilter = (name: string) => boolean

/**
 * Compile `ignoreParams` / `onlyParams` names (`*` is the only wildcard) into the filter of
 * primaryKey(): with `only`, a parameter is kept when a name matches; otherwise when none does.
 */
export function paramFilter(names: readonly string[], only: boolean): ParamFilter {
  const exact = new Set(names.filter((n) => !n.includes('*')))
  const globs = names.filter((n) => n.includes('*')).map((n) => patternToRegExp(n))
  return function keepParam(name: string): boolean {
    const matched = exact.has(name) || globs.some((re) => re.test(name))
    return only ? matched : !matched
  }
}

/** The folds of the app's router (Express settings); a plain node:http / connect app has none. */
export interface Routing {
  /** `case sensitive routing` is off: `/Posts` reaches the handler of `/posts`. */
  foldCase: boolean
  /** `strict routing` is off: `/posts/` reaches the handler of `/posts`. */
  foldSlash: boolean
}

/** No router: nothing folded. */
export const NO_ROUTING: Routing = Object.freeze({ foldCase: false, foldSlash: false })
const EXPRESS_DEFAULTS: Routing = Object.freeze({ foldCase: true, foldSlash: true })

/**
 * How the app routes `req`: Express's `case sensitive routing` and `strict routing` settings
 * (off by default, so both folds apply), read from `req.app`. Anything that is not an Express
 * app there (connect, node:http) folds nothing. A Router created with its own `caseSensitive`
 * / `strict` options is not visible here.
 */
export function routingOf(req: unknown): Routing {
  const app = (req as { app?: { enabled?: unknown; set?: unknown } | null }).app
  // An Express app is itself a function (the request handler) carrying the settings methods.
  if (app === null || (typeof app !== 'object' && typeof app !== 'function') || typeof app.enabled !== 'function' || typeof app.set !== 'function') {
    return NO_ROUTING
  }
  try {
    const enabled = app.enabled as (name: string) => boolean
    const foldCase = !enabled.call(app, 'case sensitive routing')
    const foldSlash = !enabled.call(app, 'strict routing')
    return foldCase && foldSlash ? EXPRESS_DEFAULTS : { foldCase, foldSlash }
  } catch {
    return NO_ROUTING
  }
}

/** A request target's default key: the primary key (the family) and the exact path spelling when it differs. */
export interface TargetKey {
  /** `posts:42:GET?a=1&b=2`: normalised, folded as the router folds. */
  primary: string
  /** The raw path when it is not already the normalised, folded one (`/Posts/%34%32/`); goes after `#`. */
  spelling: string | undefined
}

/**
 * The default key of a request target. The path is split in segments, each normalised
 * (normaliseEscapes()) and, as `routing` says, lower-cased, with one trailing slash dropped; the
 * query's names and values are normalised the same way (never case-folded), filtered by `keep`,
 * and sorted by decoded name (decodedName()), repeated names keeping their order. Returns
 * undefined for a target that is not origin-form (`*`, absolute URLs).
 */
export function targetKey(method: string, url: string, routing: Routing = NO_ROUTING, keep?: ParamFilter): TargetKey | undefined {
  if (url.charCodeAt(0) !== 47 /* / */) return undefined
  const q = url.indexOf('?')
  const raw = q === -1 ? url : url.slice(0, q)
  let path = raw
  if (routing.foldSlash && path.length > 1 && path.endsWith('/')) path = path.slice(0, -1)
  let key = ''
  let canonical = ''
  if (path.length > 1) {
    // `/a/b` → segments `a`, `b`; `/a/` keeps its trailing empty segment, so it differs from `/a`.
    let start = 1
    for (;;) {
      const slash = path.indexOf('/', start)
      const segment = normaliseEscapes(slash === -1 ? path.slice(start) : path.slice(start, slash), routing.foldCase)
      canonical += '/' + segment
      key += escapeSegment(segment) + ':'
      if (slash === -1) break
      start = slash + 1
    }
  }
  key += method
  if (q !== -1) {
    const query = queryKey(url.slice(q + 1), keep)
    if (query !== undefined) key += '?' + escapeQuery(query)
  }
  return { primary: key, spelling: raw === (canonical || '/') ? undefined : raw }
}

/**
 * The primary key of a request target: `GET /posts/42?b=2&a=1` → `posts:42:GET?a=1&b=2`,
 * `GET /` → `GET` (see targetKey()). Returns undefined for a target that is not origin-form.
 */
export function primaryKey(method: string, url: string, routing: Routing = NO_ROUTING, keep?: ParamFilter): string | undefined {
  return targetKey(method, url, routing, keep)?.primary
}

/** Normalise, filter and sort a raw query string (without its `?`); undefined when the filter left nothing. */
function queryKey(query: string, keep: ParamFilter | undefined): string | undefined {
  const params: string[] = []
  const names: string[] = []
  for (const param of query.split('&')) {
    const eq = param.indexOf('=')
    const name = eq === -1 ? param : param.slice(0, eq)
    const decoded = decodedName(name)
    if (keep !== undefined && !keep(decoded === UNSURE_NAME ? safeDecode(name) : decoded)) continue
    params.push(normaliseParam(param))
    names.push(decoded)
  }
  if (params.length === 0 && query.length > 0) return undefined
  return params.length > 1 ? stableSort(params, names).join('&') : params.join('&')
}

/**
 * normaliseEscapes() for a query parameter (`name=value`) that decodes cleanly. One that does not
 * (a stray `%`, bytes that are not UTF-8) stays exactly as sent: qs then hands the app the raw
 * text (`%e9` and `%E9` are different values to it), and node:querystring decodes such a value
 * differently depending on how its name was escaped.
 */
function normaliseParam(param: string): string {
  if (!param.includes('%')) return param
  try {
    decodeURIComponent(param)
  } catch {
    return param
  }
  return normaliseEscapes(param)
}

function safeDecode(name: string): string {
  try {
    return decodeURIComponent(name.replace(/\+/g, ' '))
  } catch {
    return name
  }
}

/**
 * What a key function returned, checked: a non-empty string, or the Error that says what came
 * back instead (async key functions are not supported, so a Promise is named as such).
 */
export function checkKey(value: unknown, what: string): string | Error {
  if (typeof value === 'string' && value.length > 0) return value
  const thenable = value !== null && (typeof value === 'object' || typeof value === 'function') && typeof (value as { then?: unknown }).then === 'function'
  if (thenable) {
    // Never awaited: a rejection of it must not end the process as an unhandled rejection.
    try {
      ;(value as PromiseLike<unknown>).then(undefined, function ignoreRejection() {})
    } catch {
      // a thenable whose then() throws: nothing was started
    }
    return new Error(`${what} returned a Promise; key functions must return a string synchronously (async key functions are not supported)`)
  }
  return new Error(`${what} must return a non-empty string, returned ${describe(value)}`)
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

/**
 * Join primary and secondary parts into the key the store sees: `primary#host`, and
 * `primary#host&spelling` when the path was spelled otherwise than its normalised, folded form
 * (`&` never appears unescaped in a host part, so the two cannot be confused).
 */
export function storageKey(primary: string, host: string, spelling?: string): string {
  return spelling === undefined ? primary + '#' + host : primary + '#' + host + '&' + escapePart(spelling)
}

/** The host part of a storage key, without the path spelling storageKey() may have added. */
export function hostOf(key: string): string {
  const secondary = key.slice(key.indexOf('#') + 1)
  const amp = secondary.indexOf('&')
  return amp === -1 ? secondary : secondary.slice(0, amp)
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
    const value = (Array.isArray(raw) ? raw.join(',') : raw)
      .split(',')
      .map((s) => s.trim())
      .join(',')
    out += escapePart(name) + '=' + escapePart(value)
  }
  // Long values (cookies, tokens) are hashed so keys stay short; `~` cannot start a readable part.
  return out.length > MAX_READABLE_VARIANT ? '~' + createHash('sha256').update(out).digest('base64url') : out
}

const MAX_READABLE_VARIANT = 200
