/** One glob syntax for every store: `*` matches any run of characters, everything else is literal. */

/**
 * Validate an invalidation pattern (or, with `what = 'key'`, a key); throws a TypeError for
 * anything that is not a usable string, and for a path (`/posts/*`): keys never start with `/`
 * (`GET /posts/42` is stored as `posts:42:GET`), so a path would silently match nothing.
 */
export function assertPattern(pattern: unknown, what = 'pattern'): asserts pattern is string {
  if (typeof pattern !== 'string' || pattern.length === 0) {
    throw new TypeError(`${what} must be a non-empty string, got ${describe(pattern)}`)
  }
  if (pattern.charCodeAt(0) === 47 /* / */) {
    throw new TypeError(
      `${what} ${describe(pattern)} is a path, not a cache key: GET /posts/42 is stored as "posts:42:GET" ` +
        `(see the README's "Keys and invalidation"); did you mean ${describe(keyFormOf(pattern, what === 'key'))}?`,
    )
  }
}

/**
 * The cache-key form of a path-shaped pattern: `/posts/*` → `posts:*`, `/posts/42` → `posts:42:*`
 * (the path and everything below it), `/` → `*`; for a key, `/posts/42` → `posts:42:GET`.
 */
function keyFormOf(path: string, exact: boolean): string {
  const end = path.search(/[?#]/)
  const segments = (end === -1 ? path : path.slice(0, end)).split('/').filter((segment) => segment !== '')
  if (exact) return [...segments, 'GET'].join(':')
  if (segments.length === 0) return '*'
  const last = segments[segments.length - 1]
  return last.endsWith('*') ? segments.join(':') : `${segments.join(':')}:*`
}

/**
 * Throw a TypeError for the first own property of `options` that is not in `known`, naming it
 * and, when one is close (a typo or a letter-case slip), the option probably meant.
 */
export function assertKnownOptions(what: string, options: object, known: readonly string[]): void {
  for (const name of Object.keys(options)) {
    if (known.includes(name)) continue
    const close = closestName(name, known)
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
