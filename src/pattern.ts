/** One glob syntax for every store: `*` matches any run of characters, everything else is literal. */

/** Validate an invalidation pattern; throws a TypeError for anything that is not a usable string. */
export function assertPattern(pattern: unknown, what = 'pattern'): asserts pattern is string {
  if (typeof pattern !== 'string' || pattern.length === 0) {
    throw new TypeError(`${what} must be a non-empty string, got ${describe(pattern)}`)
  }
}

/** True when the pattern has no wildcard, so it names exactly one key. */
export function isLiteral(pattern: string): boolean {
  return !pattern.includes('*')
}

const REGEXP_SPECIAL = /[\\^$.|?+()[\]{}]/g

/**
 * Compile a pattern to an anchored RegExp. Runs of `*` collapse to one `.*` (linear matching,
 * no catastrophic backtracking on long keys).
 */
export function patternToRegExp(pattern: string): RegExp {
  const source = pattern
    .replace(/\*+/g, '*')
    .split('*')
    .map((part) => part.replace(REGEXP_SPECIAL, '\\$&'))
    .join('[\\s\\S]*')
  return new RegExp(`^${source}$`)
}

/** Returns a predicate that tells whether a key matches the pattern. */
export function compilePattern(pattern: string): (key: string) => boolean {
  if (isLiteral(pattern)) return (key) => key === pattern
  if (/^[^*]*\*$/.test(pattern)) {
    const prefix = pattern.slice(0, -1)
    return (key) => key.startsWith(prefix)
  }
  const re = patternToRegExp(pattern)
  return (key) => re.test(key)
}

/**
 * Escape a pattern for Redis `SCAN MATCH` / `KEYS`-style globs: every glob character other than
 * `*` (`?`, `[`, `]`, `\`) is backslash-escaped, so only `*` keeps its meaning.
 */
export function toRedisGlob(pattern: string): string {
  return pattern.replace(/[?[\]\\]/g, '\\$&')
}

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
