/** One glob syntax for every store: `*` matches any run of characters, everything else is literal. */
import { describe } from './validate.js'

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

/**
 * The head of every key the cache keeps its own records under (tag and purge marks, see
 * src/storage.ts `markKey`). No key the default key function makes contains `~`; a store may keep
 * these keys apart from the entries (memcachedStore keeps them outside namespace generations).
 */
export const RECORD_PREFIX = 'cachet~'

/**
 * The namespaces a key belongs to, most general first: the global one (`''`), each prefix ending
 * at a `:` of the path (before the first `?` and `#`), the path up to its `?`, and the primary key
 * up to its first `#`. The default key function escapes `:` `?` `#` `*` inside segments, so these
 * boundaries are real ones.
 */
export function namespacesOf(key: string): string[] {
  const names = ['']
  const hash = key.indexOf('#')
  const primary = hash === -1 ? key : key.slice(0, hash)
  const query = primary.indexOf('?')
  const path = query === -1 ? primary : primary.slice(0, query)
  for (let i = path.indexOf(':'); i !== -1; i = path.indexOf(':', i + 1)) names.push(key.slice(0, i + 1))
  if (query !== -1) names.push(key.slice(0, query + 1))
  if (hash !== -1) names.push(key.slice(0, hash + 1))
  return names
}

/**
 * The narrowest namespace (see namespacesOf) holding every key that starts with `head`: the
 * namespace `head` itself lies in. `''` (the global one) when it lies in no other.
 */
export function namespaceHolding(head: string): string {
  const names = namespacesOf(head)
  return names[names.length - 1]
}
