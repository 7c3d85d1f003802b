/** The one vocabulary of option checks for responseCache(), cacheRoute(), createCache(), cached() and every store: a TypeError that names the option and shows the value. */
import type { Coder, Store } from './types.js'

/** Render any value for an error message. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  // By name: JSON would print NaN and the infinities as `null`.
  if (typeof value === 'number') return String(value)
  if (typeof value === 'function') return `function ${value.name || '(anonymous)'}`
  if (typeof value === 'bigint') return `${value}n`
  if (typeof value === 'symbol') return value.toString()
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

/** Like describe(), but an object by its constructor's name (a client given in the wrong place). */
export function describeObject(value: unknown): string {
  if (value !== null && typeof value === 'object') return `an object (${value.constructor?.name ?? 'no constructor'})`
  return describe(value)
}

/** Throw a TypeError unless `options` is a plain options object (not null, not an array). */
export function assertOptionsObject(what: string, options: unknown): asserts options is object {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TypeError(`${what} options must be an object, got ${describe(options)}`)
  }
}

/**
 * Throw a TypeError for the first own property of `options` that is not in `known`, naming it
 * and, when one is close (a typo or a letter-case slip), the option probably meant.
 */
export function assertKnownOptions(what: string, options: object, known: readonly string[] | ReadonlySet<string>): void {
  for (const name of Object.keys(options)) {
    if (isKnown(known, name)) continue
    const close = closestName(name, [...known])
    throw new TypeError(`${what}: unknown option ${JSON.stringify(name)}${close === undefined ? '' : ` (did you mean ${JSON.stringify(close)}?)`}`)
  }
}

/** The name in `known` at most 2 edits (1 for short names) away from `name`, ignoring case. */
function closestName(name: string, known: readonly string[]): string | undefined {
  const wanted = name.toLowerCase()
  const limit = wanted.length <= 4 ? 1 : 2
  let best: string | undefined
  let bestDistance = limit + 1
  for (const candidate of known) {
    const distance = editDistance(wanted, candidate.toLowerCase())
    if (distance < bestDistance) {
      best = candidate
      bestDistance = distance
    }
  }
  return best
}

/** Edits (insert, delete, substitute, swap two neighbours) that turn `a` into `b`. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = []
  for (let i = 0; i <= a.length; i++) {
    rows.push([i])
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        rows[i][j] = j
        continue
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let d = Math.min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, rows[i - 2][j - 2] + 1)
      rows[i][j] = d
    }
  }
  return rows[a.length][b.length]
}

function isKnown(known: readonly string[] | ReadonlySet<string>, name: string): boolean {
  return Array.isArray(known) ? known.includes(name) : (known as ReadonlySet<string>).has(name)
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }
const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/

/**
 * Parse a duration to milliseconds: a number is seconds, a string must carry a unit.
 * Throws a TypeError naming `what` for anything else (negative, NaN, `'30'`, `'5 minutes'`).
 */
export function parseDuration(value: unknown, what: string): number {
  if (typeof value === 'number') {
    const ms = Math.round(value * 1000)
    if (Number.isFinite(value) && value >= 0 && Number.isSafeInteger(ms)) return ms
  } else if (typeof value === 'string' && value.length <= 32) {
    const m = DURATION.exec(value.trim())
    if (m) {
      const ms = Math.round(Number(m[1]) * UNIT_MS[m[2]])
      if (Number.isSafeInteger(ms)) return ms
    }
  }
  throw new TypeError(`${what} must be seconds (a number ≥ 0) or a duration like '500ms', '30s', '5m', '1h', '1d', got ${describe(value)}`)
}

/** The methods every store must have (README "Writing a store"). */
const REQUIRED_STORE_METHODS = ['get', 'set', 'delete', 'deleteMatching'] as const

export function checkStore(store: unknown): Store {
  if (store === null || typeof store !== 'object') {
    throw new TypeError(`option "store" must implement get, set, delete and deleteMatching, got ${describe(store)}`)
  }
  const missing = REQUIRED_STORE_METHODS.filter((method) => typeof (store as Record<string, unknown>)[method] !== 'function')
  if (missing.length > 0) {
    throw new TypeError(`option "store" must implement get, set, delete and deleteMatching; it is missing ${missing.join(', ')}`)
  }
  return store as Store
}

export function checkCoder(coder: unknown): Coder {
  const c = coder as Coder
  if (c === null || typeof c !== 'object' || typeof c.encode !== 'function' || typeof c.decode !== 'function') {
    throw new TypeError(`option "coder" must implement encode and decode, got ${describe(coder)}`)
  }
  return c
}

export function integer(name: string, value: unknown, fallback: number, min: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new TypeError(`option "${name}" must be an integer ≥ ${min}, got ${describe(value)}`)
  }
  return value
}

export function fraction(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
    throw new TypeError(`option "${name}" must be a number from 0 to 1, got ${describe(value)}`)
  }
  return value
}

export function positiveDuration(name: string, value: unknown, what = 'option'): number {
  const ms = parseDuration(value, `${what} "${name}"`)
  if (ms <= 0) throw new TypeError(`${what} "${name}" must be longer than 0, got ${describe(value)}`)
  return ms
}

export function boolean(name: string, value: unknown, fallback: boolean, what = 'option'): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw new TypeError(`${what} "${name}" must be true or false, got ${describe(value)}`)
  return value
}

export function optionalFunction(name: string, value: unknown, what = 'option'): unknown {
  if (value === undefined) return undefined
  if (typeof value !== 'function') throw new TypeError(`${what} "${name}" must be a function, got ${describe(value)}`)
  return value
}

/**
 * The options of an invalidation (`invalidate()`, `invalidateTags()` of either cache): true for a
 * soft one (`{ soft: true }`), false when none are given. `what` names the method in errors.
 */
export function softOption(what: string, options: unknown): boolean {
  if (options === undefined) return false
  assertOptionsObject(what, options)
  assertKnownOptions(what, options, INVALIDATE_OPTIONS)
  return boolean('soft', (options as { soft?: unknown }).soft, false, `${what} option`)
}
const INVALIDATE_OPTIONS = ['soft']
