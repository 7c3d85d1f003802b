/** cached(): wrap an async function so its results live in a value cache, keyed by its arguments. */
import { createHash } from 'node:crypto'
import { assertKnownOptions, assertOptionsObject, describe } from './validate.js'
import { createCache, getOrSet, instanceOf, resolveTimes, type ValueCache } from './value-cache.js'
import type { Duration } from './options.js'

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyFunction = (...args: any[]) => any

/**
 * The wrapped function: `F` itself when it returns a promise; a function returning a promise of
 * the same value otherwise (a store answers asynchronously).
 */
export type Cached<F extends AnyFunction> = ReturnType<F> extends Promise<unknown> ? F : (...args: Parameters<F>) => Promise<Awaited<ReturnType<F>>>

/** Options of cached(), validated once, when the function is wrapped. */
export interface CachedOptions<F extends AnyFunction = AnyFunction> {
  /** The value cache (and so the store) results live in. @default a createCache() of its own, on a memory store */
  cache?: ValueCache
  /**
   * The whole storage key of a call. Replaces the default key (namespace and canonical
   * arguments); cannot be combined with `namespace`. @default undefined
   */
  key?: (...args: Parameters<F>) => string
  /**
   * First part of the default key: `<namespace>:<arguments>`; invalidate a function's results
   * with `invalidate('<namespace>:*')`. @default the function's name (an anonymous function needs `namespace` or `key`)
   */
  namespace?: string
  /** @default the cache's `ttl` */
  ttl?: Duration
  /** @default the cache's `staleWhileRevalidate` */
  staleWhileRevalidate?: Duration
  /**
   * Store a rejection for this long (negative caching): calls within it reject with an Error of
   * the same name and message without calling the function. @default false (a rejection is never stored)
   */
  cacheRejections?: Duration | false
  /**
   * Cache tags of a result, from the result and the arguments, for `invalidateTags()`:
   * `tags: (post, id) => [\`post:${id}\`]`. @default none
   */
  tags?: (result: Awaited<ReturnType<F>>, ...args: Parameters<F>) => readonly string[]
}

/** An argument the default key cannot encode (a function, a symbol, a cycle, a class instance). */
export class UnkeyableArgumentError extends TypeError {
  constructor(namespace: string, path: string, what: string) {
    super(`cached ${namespace}: argument ${path} is ${what}, which has no stable key; pass the "key" option to key such calls`)
    this.name = 'UnkeyableArgumentError'
  }
}

const KNOWN_OPTIONS = ['cache', 'key', 'namespace', 'ttl', 'staleWhileRevalidate', 'cacheRejections', 'tags']
/** Longest argument part kept as text; a longer one becomes `~` and its SHA-256 (base64url). */
const MAX_ARGS_LENGTH = 200

/**
 * Wrap `fn` so that calls with equal arguments share one result from the cache.
 *
 * ```ts
 * const listPosts = cached(async (page: number) => db.posts.list(page), { cache, namespace: 'posts:list', ttl: '30s' })
 * await listPosts(1) // key 'posts:list:1'
 * ```
 *
 * Concurrent misses of one key call `fn` once (in the process, and across processes on a store
 * with `lock`). A rejection is passed on and never stored unless `cacheRejections` is set. A
 * failing store never fails a call: `fn` is called and the error goes to the cache's `onError`.
 * A call whose arguments have no stable key rejects with `UnkeyableArgumentError` (fn is not
 * called); see the README section "Caching function results".
 */
export function cached<F extends AnyFunction>(fn: F, options: CachedOptions<F> = {}): Cached<F> {
  if (typeof fn !== 'function') throw new TypeError(`cached(fn): fn must be a function, got ${describe(fn)}`)
  assertOptionsObject('cached', options)
  assertKnownOptions('cached', options, KNOWN_OPTIONS)
  const cache = options.cache ?? createCache()
  const instance = instanceOf(cache, 'cached option "cache"')
  const times = resolveTimes(
    instance.defaults,
    {
      ttl: options.ttl,
      staleWhileRevalidate: options.staleWhileRevalidate,
      cacheRejections: options.cacheRejections,
    },
    'cached',
  )
  const tagsOf = options.tags
  if (tagsOf !== undefined && typeof tagsOf !== 'function') throw new TypeError(`cached option "tags" must be a function, got ${describe(tagsOf)}`)
  const custom = options.key
  if (custom !== undefined && typeof custom !== 'function') throw new TypeError(`cached option "key" must be a function, got ${describe(custom)}`)
  if (custom !== undefined && options.namespace !== undefined) {
    throw new TypeError('cached: give "key" or "namespace", not both ("key" returns the whole storage key)')
  }
  const namespace = options.namespace ?? fn.name
  if (typeof namespace !== 'string' || (custom === undefined && (namespace.length === 0 || namespace.includes('*')))) {
    throw new TypeError(
      options.namespace === undefined
        ? 'cached(fn): an anonymous function needs the "namespace" or "key" option'
        : `cached option "namespace" must be a non-empty string without "*", got ${describe(options.namespace)}`,
    )
  }

  const keyOf =
    custom !== undefined
      ? function customKey(args: Parameters<F>): string {
          const key = custom(...args)
          if (typeof key !== 'string' || key.length === 0)
            throw new TypeError(`cached ${namespace || fn.name}: key() must return a non-empty string, got ${describe(key)}`)
          return key
        }
      : function defaultKey(args: Parameters<F>): string {
          return cacheKey(namespace, args)
        }

  const wrapped = function cachedCall(this: unknown, ...args: Parameters<F>): Promise<unknown> {
    let key: string
    try {
      key = keyOf(args)
    } catch (error) {
      return Promise.reject(error)
    }
    const callTimes = tagsOf === undefined ? times : { ...times, tags: (value: unknown) => tagsOf(value as Awaited<ReturnType<F>>, ...args) }
    return getOrSet(instance, key, () => fn.apply(this, args), callTimes)
  }
  Object.defineProperty(wrapped, 'name', { value: fn.name })
  return wrapped as unknown as Cached<F>
}

/**
 * The default key of a call: `<namespace>:<arg>,<arg>,…`, each argument in canonical form
 * (`keyPart()`), with `%`, `*`, `?` and `#` percent-encoded so the part can never act as a
 * wildcard or a response key's separator. Longer than 200 characters: `<namespace>:~<sha256>`.
 */
export function cacheKey(namespace: string, args: readonly unknown[]): string {
  let part = ''
  try {
    for (let i = 0; i < args.length; i++) part += (i === 0 ? '' : ',') + keyPart(args[i], [])
  } catch (error) {
    if (error !== UNKEYABLE) throw error
    const [path, what] = locate(args)
    throw new UnkeyableArgumentError(namespace, path, what)
  }
  if (SPECIAL.test(part)) part = part.replace(SPECIALS, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase())
  if (part.length > MAX_ARGS_LENGTH) part = '~' + createHash('sha256').update(part).digest('base64url')
  return `${namespace}:${part}`
}

const SPECIAL = /[%*?#]/
const SPECIALS = /[%*?#]/g
/** Thrown by keyPart() for a value without a stable key; locate() then finds it for the message. */
const UNKEYABLE = Symbol('unkeyable')

/**
 * One argument in canonical form: strings, finite numbers, booleans and null as JSON; `undefined`,
 * `NaN`, `Infinity`, `-Infinity`, `<n>n` for a bigint, `Date(<ISO>)`, `Bytes(<base64>)` for a
 * Uint8Array or Buffer, arrays in order, plain objects `{…}` with their keys sorted, `Map{k:v,…}`
 * sorted by key, `Set[…]` sorted. `{a, b}` and `{b, a}` give one key.
 */
function keyPart(value: unknown, seen: object[]): string {
  switch (typeof value) {
    case 'string':
      return quote(value)
    case 'number':
      return Object.is(value, -0) ? '0' : String(value)
    case 'boolean':
      return value ? 'true' : 'false'
    case 'undefined':
      return 'undefined'
    case 'bigint':
      return `${value}n`
    case 'function':
    case 'symbol':
      throw UNKEYABLE
  }
  if (value === null) return 'null'
  const object = value as object
  if (seen.includes(object)) throw UNKEYABLE
  seen.push(object)
  let out: string
  const proto = Object.getPrototypeOf(object)
  if (proto === Object.prototype || proto === null) {
    const names = sorted(Object.keys(object))
    out = '{'
    for (let i = 0; i < names.length; i++) {
      out += (i === 0 ? '' : ',') + quote(names[i]) + ':' + keyPart((object as Record<string, unknown>)[names[i]], seen)
    }
    out += '}'
  } else if (Array.isArray(object)) {
    out = '['
    for (let i = 0; i < object.length; i++) out += (i === 0 ? '' : ',') + keyPart(object[i], seen)
    out += ']'
  } else if (object instanceof Date) {
    out = `Date(${Number.isNaN(object.getTime()) ? 'NaN' : object.toISOString()})`
  } else if (object instanceof Uint8Array) {
    out = `Bytes(${Buffer.from(object.buffer, object.byteOffset, object.byteLength).toString('base64')})`
  } else if (object instanceof Map) {
    out =
      'Map{' +
      [...object]
        .map(([k, v]) => keyPart(k, seen) + ':' + keyPart(v, seen))
        .sort()
        .join(',') +
      '}'
  } else if (object instanceof Set) {
    out =
      'Set[' +
      [...object]
        .map((item) => keyPart(item, seen))
        .sort()
        .join(',') +
      ']'
  } else {
    throw UNKEYABLE
  }
  seen.pop()
  return out
}

/**
 * `JSON.stringify(text)`, with the common case (nothing JSON escapes: no `"`, `\`, control
 * character or lone surrogate) done without it: the same text, several times faster.
 */
function quote(text: string): string {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return JSON.stringify(text)
  }
  return '"' + text + '"'
}

/** The names in `Array#sort()` order (UTF-16 code units), sorting only when they are not already. */
function sorted(names: string[]): string[] {
  for (let i = 1; i < names.length; i++) if (names[i - 1] > names[i]) return names.sort()
  return names
}

/** Where the first value without a stable key is, and what it is (slow path, for the error only). */
function locate(args: readonly unknown[]): [path: string, what: string] {
  const seen: object[] = []
  const walk = (value: unknown, path: string): [string, string] | undefined => {
    if (typeof value === 'function') return [path, 'a function']
    if (typeof value === 'symbol') return [path, 'a symbol']
    if (value === null || typeof value !== 'object') return undefined
    if (seen.includes(value)) return [path, 'a cycle']
    seen.push(value)
    let found: [string, string] | undefined
    const proto = Object.getPrototypeOf(value)
    if (proto === Object.prototype || proto === null) {
      for (const name of Object.keys(value).sort()) if ((found = walk((value as Record<string, unknown>)[name], `${path}.${name}`))) break
    } else if (Array.isArray(value)) {
      for (let i = 0; i < value.length && !found; i++) found = walk(value[i], `${path}[${i}]`)
    } else if (value instanceof Map) {
      for (const [k, v] of value) if ((found = walk(k, `${path} (a Map key)`) ?? walk(v, `${path} (a Map value)`))) break
    } else if (value instanceof Set) {
      for (const item of value) if ((found = walk(item, `${path} (a Set member)`))) break
    } else if (!(value instanceof Date) && !(value instanceof Uint8Array)) {
      found = [path, `an instance of ${proto?.constructor?.name ?? 'a class'}`]
    }
    seen.pop()
    return found
  }
  for (let i = 0; i < args.length; i++) {
    const found = walk(args[i], `#${i + 1}`)
    if (found !== undefined) return found
  }
  return ['', 'unkeyable']
}
