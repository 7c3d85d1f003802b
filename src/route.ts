/** cacheRoute() marks one route's ttl and options; invalidate() drops entries in every open cache. */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { checkKey, hostOf, storageKey } from './key.js'
import { leaveUncached } from './flow/compute.js'
import { contexts } from './flow/state.js'
import { openCaches, restartUnderKey, type InvalidateOptions } from './middleware.js'
import { resolveRoute, type Duration, type RouteOptions } from './options.js'
import { assertPattern } from './pattern.js'
import { checkTags } from './storage.js'
import { softOption } from './validate.js'
import { openValueCaches } from './value-cache.js'

type Next = (error?: unknown) => void

let warned = false

/**
 * Mark a route cacheable with its own ttl, or never cached with `cacheRoute(0)` /
 * `cacheRoute(false)`. Mount it after `responseCache()`:
 *
 * ```ts
 * app.get('/posts', cacheRoute('30s'), listPosts)
 * ```
 *
 * The route ttl applies when the response's own headers carry no freshness (`s-maxage`,
 * `max-age`, `Expires`), and takes precedence over the global `ttl`.
 */
export function cacheRoute(ttl: Duration | false, options?: RouteOptions) {
  const route = resolveRoute(ttl, options)
  return function cacheRoute(req: IncomingMessage, _res: ServerResponse, next: Next): void {
    const ctx = contexts.get(req)
    if (ctx === undefined) {
      if (openCaches.size === 0 && !warned) {
        warned = true
        process.emitWarning('cacheRoute() is used without responseCache() mounted before it: nothing is cached', 'CachetWarning')
      }
      return next()
    }
    ctx.route = route
    if (route.ttl === 0) leaveUncached(ctx)
    if (route.key !== undefined && route.ttl !== 0) {
      let primary: string | Error
      try {
        primary = checkKey(route.key(req), 'cacheRoute option "key"')
      } catch (error) {
        primary = error instanceof Error ? error : new Error(String(error))
      }
      if (typeof primary !== 'string') {
        // No key, no entry: this request goes to the handler and is not stored (X-Cache: BYPASS).
        ctx.cache.report(primary, req)
        ctx.route = { ...route, ttl: 0 }
        return next()
      }
      const headKey = storageKey(primary, hostOf(ctx.headKey))
      if (headKey !== ctx.headKey && primary.length <= ctx.cache.config.maxKeyLength) {
        return restartUnderKey(ctx, headKey, next)
      }
    }
    next()
  }
}

/**
 * Remove every entry whose key matches `pattern` in every open `responseCache` and every open
 * value cache (`createCache()`, `cached()`) of the process, all variants included; resolves how
 * many store entries were removed. `*` is the only wildcard: `invalidate('posts:*')` drops
 * `/posts`, `/posts?page=2`, `/posts/42/comments` and values stored under `posts:list:1`.
 */
export async function invalidate(pattern: string, options?: InvalidateOptions): Promise<number> {
  assertPattern(pattern)
  softOption('invalidate', options)
  const counts = await Promise.all([
    ...[...openCaches].map((cache) => cache.invalidate(pattern, options)),
    ...[...openValueCaches].map((cache) => cache.invalidate(pattern, options)),
  ])
  return counts.reduce((sum, n) => sum + n, 0)
}

/**
 * Invalidate every entry carrying any of `tags` in every open `responseCache` of the process —
 * every variant, every host; every process too, since the time of the invalidation is recorded
 * in the store and compared with each entry when it is read. `{ soft: true }` marks the entries
 * stale instead: they are revalidated, or served stale while one refresh runs where
 * `stale-while-revalidate` / `stale-if-error` allow. Rejects when a store could not record it.
 *
 * ```ts
 * await invalidateTags(['post:42'])
 * ```
 */
export async function invalidateTags(tags: readonly string[], options?: InvalidateOptions): Promise<void> {
  const list = checkTags(tags)
  softOption('invalidateTags', options)
  await Promise.all([
    ...[...openCaches].map((cache) => cache.invalidateTags(list, options)),
    ...[...openValueCaches].map((cache) => cache.invalidateTags(list, options)),
  ])
}
