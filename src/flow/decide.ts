/** decide(): what a stored entry can do for a request (RFC 9111 §4, §5.2.1), as a pure function of the entry, the request's rules and the time. */
import { currentAge } from '../entry.js'
import type { RequestRules } from '../policy.js'
import type { ResponseEntry } from '../types.js'

/** What to do with a request, given what the lookup found. */
export type Decision =
  /** Fresh and acceptable to the request: serve it. */
  | { readonly kind: 'hit'; readonly age: number }
  /**
   * Stale, but the request's `max-stale` or the entry's `stale-while-revalidate` allows serving it;
   * `refresh`: one background refresh should run (stale-while-revalidate).
   */
  | { readonly kind: 'stale'; readonly age: number; readonly refresh: boolean }
  /**
   * Not servable as it is: ask the app, with the entry's validators when the request allows;
   * `fallback`: the entry may answer instead if the app fails (stale-if-error, RFC 5861 §4).
   */
  | { readonly kind: 'revalidate'; readonly entry: ResponseEntry; readonly fallback: boolean }
  /** Nothing stored: ask the app. */
  | { readonly kind: 'miss' }
  /** `only-if-cached` with nothing servable: 504 (RFC 9111 §5.2.1.7). */
  | { readonly kind: 'unavailable' }

const MISS: Decision = Object.freeze({ kind: 'miss' })
const UNAVAILABLE: Decision = Object.freeze({ kind: 'unavailable' })

/** Decide what `entry` (or its absence) means for a request with `rules`, at `now` (epoch ms). */
export function decide(entry: ResponseEntry | undefined, rules: RequestRules, now: number): Decision {
  if (entry === undefined) return rules.onlyIfCached ? UNAVAILABLE : MISS
  const age = currentAge(entry, now)
  const freshFor = entry.lifetime - age
  if (freshFor > 0 && !rules.noCache && age <= rules.maxAge && freshFor >= rules.minFresh) return { kind: 'hit', age }
  const staleness = -freshFor
  // RFC 9111 §4.2.4: stale only when nothing forbids it (must-revalidate, s-maxage, no-cache).
  if (freshFor <= 0 && !rules.noCache && age <= rules.maxAge && !entry.mustRevalidate) {
    // RFC 9111 §5.2.1.2: only a request that says max-stale takes a stale response without a refresh.
    if (rules.maxStale > 0 && staleness <= rules.maxStale) return { kind: 'stale', age, refresh: false }
    if (staleness < entry.staleWhileRevalidate) return { kind: 'stale', age, refresh: true }
  }
  if (rules.onlyIfCached) return UNAVAILABLE
  return { kind: 'revalidate', entry, fallback: !entry.mustRevalidate && freshFor <= 0 && staleness < entry.staleIfError }
}
