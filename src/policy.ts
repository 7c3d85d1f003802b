/** RFC 9111 rules: Cache-Control and HTTP-date parsing, storability, freshness lifetime, stale windows. */
import type { IncomingHttpHeaders } from 'node:http'

/** Parsed Cache-Control: directive names in lower case; `true` for a directive without a value. */
export type Directives = Record<string, string | true>

/** Delta-seconds at or above 2^31 mean "infinity" (RFC 9111 §1.2.2), never a negative number. */
const MAX_DELTA = 2 ** 31

/**
 * Parse Cache-Control (RFC 9111 §5.2): names are case-insensitive, the first occurrence of a
 * directive wins, quoted strings are unquoted and never create directives, and anything that is
 * not a token is skipped. One pass over the text: linear time on any input.
 */
export function parseCacheControl(header: string | string[] | undefined): Directives {
  const out: Directives = Object.create(null)
  if (header === undefined) return out
  const text = Array.isArray(header) ? header.join(',') : header
  const n = text.length
  let i = 0
  while (i < n) {
    let c = text.charCodeAt(i)
    if (c === 44 /* , */ || c === 32 || c === 9) {
      i++
      continue
    }
    const nameStart = i
    while (i < n && (c = text.charCodeAt(i)) !== 61 /* = */ && c !== 44) i++
    const name = text.slice(nameStart, i).trim().toLowerCase()
    let value: string | true = true
    if (i < n && text.charCodeAt(i) === 61) {
      i++
      while (i < n && ((c = text.charCodeAt(i)) === 32 || c === 9)) i++
      if (i < n && text.charCodeAt(i) === 34 /* " */) {
        i++
        const parts: string[] = []
        let runStart = i
        while (i < n && (c = text.charCodeAt(i)) !== 34) {
          if (c === 92 /* \ */ && i + 1 < n) {
            parts.push(text.slice(runStart, i))
            runStart = i + 1
            i += 2
            continue
          }
          i++
        }
        parts.push(text.slice(runStart, i))
        value = parts.join('')
        i++ // closing quote
      } else {
        const valueStart = i
        while (i < n && text.charCodeAt(i) !== 44) i++
        value = text.slice(valueStart, i).trim()
      }
      // Whatever follows a value up to the next comma is not part of any directive.
      while (i < n && text.charCodeAt(i) !== 44) i++
    }
    if (TOKEN.test(name) && !(name in out)) out[name] = value
  }
  return out
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/

/** Surrogate-Control (W3C Edge Architecture §2.2) as it applies to one surrogate. */
export interface SurrogateControl {
  /** The directives for this surrogate: the ones targeted at its token, or else the untargeted ones. */
  directives: Directives
  /** The header value to forward: the members this surrogate did not take, or undefined for none. */
  forward: string | undefined
}

/**
 * Read Surrogate-Control for the surrogate named `token`. A member may be targeted
 * (`max-age=60;token`); members targeted at this token take precedence over untargeted ones,
 * and members targeted at other devices are left for them. Returns undefined when no member
 * applies here. Linear time: one split on commas outside quoted strings, then one parse.
 */
export function parseSurrogateControl(header: string | string[] | undefined, token: string): SurrogateControl | undefined {
  if (header === undefined) return undefined
  const text = Array.isArray(header) ? header.join(',') : header
  const mine: string[] = []
  const general: string[] = []
  const others: string[] = []
  for (const member of splitOutsideQuotes(text, 44 /* , */)) {
    const trimmed = member.trim()
    if (trimmed === '') continue
    const parts = splitOutsideQuotes(trimmed, 59 /* ; */)
    const target = parts.length > 1 ? parts[parts.length - 1].trim().toLowerCase() : undefined
    const directive = parts.length > 1 ? parts.slice(0, -1).join(';') : trimmed
    if (target === undefined) general.push(directive)
    else if (target === token.toLowerCase()) mine.push(directive)
    else others.push(trimmed)
  }
  const taken = mine.length > 0 ? mine : general
  if (taken.length === 0) return undefined
  const left = mine.length > 0 ? [...general, ...others] : others
  return { directives: parseCacheControl(taken.join(',')), forward: left.length > 0 ? left.join(', ') : undefined }
}

/** Split on a separator character that is not inside a quoted string. */
function splitOutsideQuotes(text: string, separator: number): string[] {
  const out: string[] = []
  let start = 0
  let quoted = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (quoted) {
      if (c === 92 /* \ */) i++
      else if (c === 34 /* " */) quoted = false
    } else if (c === 34) {
      quoted = true
    } else if (c === separator) {
      out.push(text.slice(start, i))
      start = i + 1
    }
  }
  out.push(text.slice(start))
  return out
}

/**
 * Delta-seconds of a directive (RFC 9111 §1.2.2): digits only, capped at 2^31. Anything else
 * (negative, decimal, empty, a bare directive) is invalid and returns `invalid`.
 */
export function deltaSeconds(value: string | true | undefined, invalid: number): number {
  if (typeof value !== 'string' || !/^\d+$/.test(value)) return invalid
  const n = value.length > 10 ? MAX_DELTA : Number(value)
  return n >= MAX_DELTA ? MAX_DELTA : n
}

const MONTHS: Record<string, number> = {
  Jan: 0,
  Feb: 1,
  Mar: 2,
  Apr: 3,
  May: 4,
  Jun: 5,
  Jul: 6,
  Aug: 7,
  Sep: 8,
  Oct: 9,
  Nov: 10,
  Dec: 11,
}
const IMF_FIXDATE = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d{2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/
const RFC850_DATE =
  /^(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday), (\d{2})-(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/
const ASCTIME_DATE = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/

/**
 * Parse an HTTP-date (RFC 9110 §5.6.7) strictly: IMF-fixdate, the obsolete RFC 850 form and
 * asctime. Anything else (`0`, `UTC` zones, ISO dates) is NaN. Input over 64 characters is
 * rejected before any pattern runs.
 */
export function parseHttpDate(value: string | undefined): number {
  if (value === undefined || value.length > 64) return NaN
  const text = value.trim()
  let m = IMF_FIXDATE.exec(text)
  if (m) return utc([+m[3], MONTHS[m[2]], +m[1]], [+m[4], +m[5], +m[6]])
  m = RFC850_DATE.exec(text)
  if (m) {
    // RFC 9110 §5.6.7: a two-digit year more than 50 years in the future is in the past century.
    const thisYear = new Date().getUTCFullYear()
    let year = 2000 + +m[3]
    if (year > thisYear + 50) year -= 100
    return utc([year, MONTHS[m[2]], +m[1]], [+m[4], +m[5], +m[6]])
  }
  m = ASCTIME_DATE.exec(text)
  if (m) return utc([+m[6], MONTHS[m[1]], +m[2].trim()], [+m[3], +m[4], +m[5]])
  return NaN
}

/** Epoch ms of a calendar date and a time of day (UTC); NaN for one that does not exist. */
function utc([year, month, day]: [number, number, number], [h, min, s]: [number, number, number]): number {
  if (day < 1 || day > 31 || h > 23 || min > 59 || s > 60) return NaN
  const t = Date.UTC(year, month, day, h, min, s)
  // Reject rolled-over dates such as 31 Feb.
  return new Date(t).getUTCDate() === day ? t : NaN
}

/** The first line of a header, for fields that allow only one value. */
export function firstValue(value: string | string[] | number | undefined): string | undefined {
  if (value === undefined) return undefined
  if (Array.isArray(value)) return value[0]
  return String(value)
}

/**
 * Does the response carry explicit freshness (RFC 9111 §4.2.1): `s-maxage`, `max-age` or
 * `Expires`? Then any final status may be stored (RFC 9111 §3), not only `statusCodes`.
 */
export function hasExplicitFreshness(cc: Directives, expires: string | undefined): boolean {
  return cc['s-maxage'] !== undefined || cc['max-age'] !== undefined || expires !== undefined
}

/** Statuses never stored as such whatever their headers: partial content and Not Modified (RFC 9111 §3, §3.3, §4.3.4). */
const NEVER_STORED = new Set([206, 304])

/**
 * Final statuses whose semantics this cache implements (RFC 9110 §15): with `must-understand`
 * (RFC 9111 §5.2.2.3) a response with any other status is not stored.
 */
const UNDERSTOOD_STATUSES = new Set([
  200, 201, 202, 203, 204, 205, 300, 301, 302, 303, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417,
  421, 422, 426, 500, 501, 502, 503, 504, 505,
])

/** Statuses heuristically cacheable (RFC 9110 §15.1), less 206 which is never stored here. */
const HEURISTIC_STATUSES = new Set([200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501])

/** What decides freshness when the response's own headers are silent (or, with `routeOverride`, always). */
export interface FreshnessConfig {
  /** Route ttl from cacheRoute(), ms. */
  routeTtl?: number
  /**
   * The route ttl takes precedence over the response's own freshness fields (`s-maxage`,
   * `max-age`, `Expires`, targeted or Surrogate-Control `max-age`) for this cache's storage:
   * `cacheRoute(ttl, { override: true })`. It never lifts `no-store`, `private`, `Set-Cookie`,
   * `Vary: *` or the Authorization rule, and applies only to statuses in `statusCodes`.
   * `no-cache` then no longer means "validate before every reuse": the entry is fresh for the
   * route ttl and, like `must-revalidate`, is revalidated (never served stale) once that ends.
   * Only the stored lifetime changes: clients receive the app's headers as sent.
   * Flow: `routeOverride: ctx.route?.override ?? false`. @default false
   */
  routeOverride?: boolean
  /** Global `ttl` option, ms. */
  defaultTtl?: number
  heuristicFraction: number
  maxHeuristicTtl: number
}

export interface Freshness {
  /** Lifetime in ms; undefined when the response carries no freshness information at all. */
  lifetime: number | undefined
  /** Where the lifetime came from. */
  source: 's-maxage' | 'max-age' | 'expires' | 'route' | 'ttl' | 'heuristic' | 'none'
}

/** What a response says about its freshness (RFC 9111 §4.2.1). */
export interface FreshnessFacts {
  status: number
  cc: Directives
  /** The Expires field, as sent. */
  expires: string | undefined
  /** The response's Date, or the time it was received (epoch ms). */
  dateValue: number
  /** The Last-Modified field, as sent (for the heuristic, §4.2.2). */
  lastModified: string | undefined
}

/**
 * Freshness lifetime (RFC 9111 §4.2.1): `s-maxage` > `max-age` > `Expires − Date` > the
 * configured ttl (route, then global) > heuristic (§4.2.2). An invalid max-age or Expires
 * means "already expired". `dateValue` is the response's Date, or the time it was received.
 * With `config.routeOverride` and a route ttl, the route ttl comes first of all.
 */
export function freshnessLifetime(response: FreshnessFacts, config: FreshnessConfig): Freshness {
  const { status, cc, expires, dateValue, lastModified } = response
  if (config.routeOverride === true && config.routeTtl !== undefined) return { lifetime: config.routeTtl, source: 'route' }
  if (cc['s-maxage'] !== undefined) return { lifetime: deltaSeconds(cc['s-maxage'], 0) * 1000, source: 's-maxage' }
  if (cc['max-age'] !== undefined) return { lifetime: deltaSeconds(cc['max-age'], 0) * 1000, source: 'max-age' }
  if (expires !== undefined) {
    const at = parseHttpDate(expires)
    return { lifetime: Number.isNaN(at) ? 0 : Math.max(0, at - dateValue), source: 'expires' }
  }
  if (config.routeTtl !== undefined) return { lifetime: config.routeTtl, source: 'route' }
  if (config.defaultTtl !== undefined) return { lifetime: config.defaultTtl, source: 'ttl' }
  if (config.heuristicFraction > 0 && (HEURISTIC_STATUSES.has(status) || cc.public !== undefined)) {
    const modified = parseHttpDate(lastModified)
    if (!Number.isNaN(modified) && modified < dateValue) {
      const lifetime = Math.min((dateValue - modified) * config.heuristicFraction, config.maxHeuristicTtl)
      return { lifetime: Math.floor(lifetime / 1000) * 1000, source: 'heuristic' }
    }
  }
  return { lifetime: undefined, source: 'none' }
}

/** Stale windows (RFC 5861) and whether stale serving is forbidden (RFC 9111 §5.2.2.2, .8, .10). */
export function staleRules(cc: Directives): { swr: number; sie: number; mustRevalidate: boolean } {
  const mustRevalidate =
    cc['must-revalidate'] !== undefined || cc['proxy-revalidate'] !== undefined || cc['s-maxage'] !== undefined || cc['no-cache'] !== undefined
  if (mustRevalidate) return { swr: 0, sie: 0, mustRevalidate }
  return {
    swr: deltaSeconds(cc['stale-while-revalidate'], 0) * 1000,
    sie: deltaSeconds(cc['stale-if-error'], 0) * 1000,
    mustRevalidate,
  }
}

/**
 * Why a request may not be answered from or stored in the cache before it runs, or undefined.
 * RFC 9111 §3: only GET and HEAD; a GET with a body is not the request its key describes.
 */
export function requestBypassReason(method: string | undefined, headers: IncomingHttpHeaders): string | undefined {
  if (method !== 'GET' && method !== 'HEAD') return `method ${method}`
  const length = headers['content-length']
  if ((length !== undefined && length !== '0') || headers['transfer-encoding'] !== undefined) return 'request has a body'
  if (
    headers['x-http-method-override'] !== undefined ||
    headers['x-http-method'] !== undefined ||
    headers['x-method-override'] !== undefined ||
    headers['x-original-url'] !== undefined ||
    headers['x-rewrite-url'] !== undefined
  ) {
    return 'request carries a method or URL override header'
  }
  return undefined
}

/** Header fields never stored: hop-by-hop (RFC 9111 §3.1) and what the cache computes itself. */
export const UNSTORED_HEADERS = new Set([
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'age',
  'set-cookie',
  'set-cookie2',
  'content-length',
])

/** Field names a `Connection` header lists, which are hop-by-hop too. */
export function connectionTokens(value: string | string[] | number | undefined): Set<string> {
  const out = new Set<string>()
  if (value === undefined) return out
  for (const token of String(Array.isArray(value) ? value.join(',') : value).split(',')) {
    const name = token.trim().toLowerCase()
    if (name) out.add(name)
  }
  return out
}

/** Vary field names, lower case, sorted, deduplicated; `['*']` when any member is `*`. */
export function parseVary(value: string | string[] | number | undefined): string[] {
  if (value === undefined) return []
  const names = new Set<string>()
  for (const token of String(Array.isArray(value) ? value.join(',') : value).split(',')) {
    const name = token.trim().toLowerCase()
    if (name === '*') return ['*']
    if (name) names.add(name)
  }
  return [...names].sort()
}

/** Everything the storage decision looks at, gathered when the response head is about to go out. */
export interface StorageInput {
  status: number
  /** Response headers as `res.getHeaders()` returns them (lower-case names). */
  headers: Record<string, string | string[] | number | undefined>
  requestHeaders: IncomingHttpHeaders
  requestCC: Directives
  statusCodes: ReadonlySet<number>
  storeSetCookie: boolean
  /** The route let the ttl fallback store responses to requests with Cookie. */
  allowCookies: boolean
  freshness: FreshnessConfig
  /** When the response was received (ms): stands in for a missing or invalid Date. */
  now: number
  /** Surrogate-Control for this cache, when it acts as a surrogate (see parseSurrogateControl). */
  surrogate?: SurrogateControl
  /**
   * Directives of the targeted field that speaks for this cache (RFC 9213 §2.2), as
   * `targetedDirectives()` in src/targeted.ts returns them. When present they replace
   * Cache-Control (and Surrogate-Control) for this cache's storage and freshness decision,
   * `no-store` and `no-cache` included: precedence is targeted field, then Surrogate-Control
   * (when it has `max-age` or `no-store`), then Cache-Control. `private` in the plain
   * Cache-Control still keeps the response out, as does `private` in the targeted field, and
   * the Authorization rule (RFC 9111 §3.5) reads only the plain Cache-Control.
   * Flow: `targeted: targetedDirectives((name) => res.getHeader(name), targets)?.directives`.
   * @default undefined (Cache-Control rules)
   */
  targeted?: Directives
}

export type StorageDecision =
  | { store: false; reason: string; bypass: boolean }
  | {
      store: true
      lifetime: number
      staleWhileRevalidate: number
      staleIfError: number
      mustRevalidate: boolean
      vary: string[]
    }

/**
 * May this response be stored (RFC 9111 §3, README "What is not cached, and why")? Checked in order
 * of how surely a rule forbids it, so the reason reported is the most telling one.
 *
 * Statuses: 1xx, 206 and 304 never; a status in `statusCodes` with any source of freshness;
 * any other final status only with explicit freshness (`s-maxage`, `max-age`, `Expires`, or the
 * targeted / Surrogate-Control `max-age` that stands for Cache-Control), RFC 9111 §3 — the ttl
 * fallbacks, the route override and the heuristic stay limited to `statusCodes`. With
 * `must-understand` (RFC 9111 §5.2.2.3) only statuses defined in RFC 9110 §15 are stored
 * (`no-store` is still obeyed alongside it).
 */
export function storageDecision(input: StorageInput): StorageDecision {
  const { status, headers, requestHeaders } = input
  if (status < 200 || status > 599 || NEVER_STORED.has(status)) {
    return { store: false, reason: `status ${status} is never stored`, bypass: false }
  }
  if (input.requestCC['no-store'] !== undefined) return { store: false, reason: 'request Cache-Control: no-store', bypass: false }
  const responseCC = parseCacheControl(headers['cache-control'] as string | string[] | undefined)
  // A targeted field (RFC 9213 §2.2), else Surrogate-Control with max-age or no-store, speaks
  // for this cache instead of Cache-Control (which then speaks to the caches after it);
  // `private` below still holds either way.
  const targeted = input.targeted
  const sc = input.surrogate?.directives
  const surrogateRules = targeted === undefined && sc !== undefined && (sc['max-age'] !== undefined || sc['no-store'] !== undefined)
  const cc = targeted ?? (surrogateRules ? sc! : responseCC)
  const rulesName = targeted !== undefined ? 'targeted cache-control field' : surrogateRules ? 'Surrogate-Control' : 'Cache-Control'
  const expires = firstValue(headers.expires)
  const listed = input.statusCodes.has(status)
  if (!listed && !hasExplicitFreshness(cc, expires)) {
    return { store: false, reason: `status ${status} is not in statusCodes and the response has no explicit freshness`, bypass: false }
  }
  if (cc['no-store'] !== undefined) return { store: false, reason: `response ${rulesName}: no-store`, bypass: false }
  if (cc['must-understand'] !== undefined && !UNDERSTOOD_STATUSES.has(status)) {
    return { store: false, reason: `response ${rulesName}: must-understand and status ${status} is not one this cache implements`, bypass: false }
  }
  // RFC 9111 §5.2.2.7: a shared cache never stores `private`, qualified or not.
  if (responseCC.private !== undefined) return { store: false, reason: 'response Cache-Control: private', bypass: false }
  if (cc.private !== undefined) return { store: false, reason: `response ${rulesName}: private`, bypass: false }
  if ((headers['set-cookie'] !== undefined || headers['set-cookie2'] !== undefined) && !input.storeSetCookie) {
    return { store: false, reason: 'response has Set-Cookie', bypass: false }
  }
  // RFC 9111 §3.5: a response to an authorised request is shared only when it says so.
  if (
    requestHeaders.authorization !== undefined &&
    responseCC.public === undefined &&
    responseCC['s-maxage'] === undefined &&
    responseCC['must-revalidate'] === undefined
  ) {
    return { store: false, reason: 'request has Authorization and the response is not public', bypass: true }
  }
  const vary = parseVary(headers.vary)
  if (vary[0] === '*') return { store: false, reason: 'response has Vary: *', bypass: false }
  const dateValue = parseHttpDate(firstValue(headers.date))
  // Outside statusCodes only the response's own freshness counts (the check above saw it).
  const config = listed ? input.freshness : { ...input.freshness, routeOverride: false }
  const { lifetime, source } = freshnessLifetime(
    { status, cc, expires, dateValue: Number.isNaN(dateValue) ? input.now : dateValue, lastModified: firstValue(headers['last-modified']) },
    config,
  )
  if (lifetime === undefined) return { store: false, reason: 'response has no freshness information', bypass: false }
  // The cache itself, not the response, decided this is shareable: a request carrying a
  // cookie may have produced a personal answer, so keep out of it unless the route opted in.
  // A route override of a response that declared its own freshness is not such a case.
  const fallback = (source === 'ttl' || source === 'route') && !(config.routeOverride === true && hasExplicitFreshness(cc, expires))
  if (fallback && requestHeaders.cookie !== undefined && !input.allowCookies) {
    return { store: false, reason: 'request has Cookie and only the ttl fallback allows storing', bypass: false }
  }
  const stale = staleRules(cc)
  const hasValidator = headers.etag !== undefined || headers['last-modified'] !== undefined
  // RFC 9111 §5.2.2.4: `no-cache` may be stored but must be validated before every reuse;
  // under a route override it is fresh for the route ttl, then revalidated (staleRules).
  const overridden = config.routeOverride === true && source === 'route'
  const effective = cc['no-cache'] !== undefined && !overridden ? 0 : lifetime
  if (effective === 0 && !hasValidator && stale.swr === 0 && stale.sie === 0) {
    return { store: false, reason: 'response is already stale and has no validator', bypass: false }
  }
  return {
    store: true,
    lifetime: effective,
    staleWhileRevalidate: stale.swr,
    staleIfError: stale.sie,
    mustRevalidate: stale.mustRevalidate,
    vary,
  }
}

/** Request directives that limit what may be served (RFC 9111 §5.2.1). */
export interface RequestRules {
  /** Serve nothing from storage without validating it (no-cache, max-age=0, Pragma: no-cache). */
  noCache: boolean
  /** Largest acceptable age, ms. */
  maxAge: number
  /** Freshness that must remain, ms. */
  minFresh: number
  /** Staleness accepted, ms (0: none, Infinity: any). */
  maxStale: number
  onlyIfCached: boolean
}

export const NO_REQUEST_RULES: RequestRules = Object.freeze({
  noCache: false,
  maxAge: Infinity,
  minFresh: 0,
  maxStale: 0,
  onlyIfCached: false,
})

export function requestRules(cc: Directives, pragma: string | string[] | undefined, hasCacheControl: boolean): RequestRules {
  // RFC 9111 §5.4: Pragma: no-cache counts only when the request has no Cache-Control.
  const pragmaNoCache = !hasCacheControl && pragma !== undefined && /(?:^|,)\s*no-cache\s*(?:,|$)/i.test(String(pragma))
  const maxAge = cc['max-age'] === undefined ? Infinity : deltaSeconds(cc['max-age'], 0) * 1000
  return {
    noCache: cc['no-cache'] !== undefined || pragmaNoCache || maxAge === 0,
    maxAge,
    minFresh: cc['min-fresh'] === undefined ? 0 : deltaSeconds(cc['min-fresh'], 0) * 1000,
    maxStale: cc['max-stale'] === undefined ? 0 : cc['max-stale'] === true ? Infinity : deltaSeconds(cc['max-stale'], 0) * 1000,
    onlyIfCached: cc['only-if-cached'] !== undefined,
  }
}
