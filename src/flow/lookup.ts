/** Lookup: read a request's head key, follow a Vary record to the request's variant, and the variant key itself. */
import type { IncomingMessage } from 'node:http'
import { HELD_CONDITIONALS } from '../conditional.js'
import { variantPart } from '../key.js'
import { isPromise, type InvalidationState, type MarksAhead, type Maybe } from '../storage.js'
import type { Entry, ResponseEntry, VaryEntry } from '../types.js'
import { contexts, type Context, type Instance } from './state.js'

/** What a lookup found. */
export interface Found {
  entry: ResponseEntry | undefined
  vary: VaryEntry | undefined
  /** The key's last response was not storable (hit-for-pass): go to the app at once, without coalescing. */
  pass?: true
}

export const NOT_FOUND: Found = Object.freeze({ entry: undefined, vary: undefined })
const PASS: Found = Object.freeze({ entry: undefined, vary: undefined, pass: true })

/** Read the head key, and the variant it points to when the response varies. */
export function lookup(cache: Instance, headKey: string, req: IncomingMessage): Maybe<Found> {
  // The marks that judged the entry last time are read with it, in the same round trip (src/storage.ts `readAhead`).
  const { entry: first, ahead } = cache.storage.readAhead(headKey)
  if (!isPromise(first)) return follow(cache, { headKey, req, ahead }, first, cache.config.storeTimeout)
  // One storeTimeout for the whole lookup: the variant read gets what the head read left.
  const started = cache.config.now()
  return first.then((entry) => follow(cache, { headKey, req, ahead }, entry, cache.config.storeTimeout - (cache.config.now() - started)))
}

/** Where a lookup is: the request, its head key, and the mark reads it started with the head read. */
interface At {
  headKey: string
  req: IncomingMessage
  ahead: MarksAhead | undefined
}

function follow(cache: Instance, at: At, entry: Entry | undefined, budget: number): Maybe<Found> {
  if (entry === undefined) return NOT_FOUND
  if (entry.kind === 'response') return checked(cache, at.headKey, { entry, vary: undefined }, budget, at.ahead)
  if (at.ahead !== undefined) cache.storage.forgetMarks(at.headKey)
  if (entry.kind === 'pass') return entry.expires > cache.config.now() ? PASS : NOT_FOUND
  if (entry.kind !== 'vary') return NOT_FOUND // a value (createCache) stored under a response key
  if (budget <= 0) return NOT_FOUND
  const key = at.headKey + '#' + variantPart(entry.vary, varyHeaders(at.req, entry.vary))
  const started = cache.config.now()
  const { entry: variant, ahead } = cache.storage.readAhead(key, budget)
  const found = (v: Entry | undefined) =>
    checked(cache, key, { entry: v?.kind === 'response' ? v : undefined, vary: entry }, budget - (cache.config.now() - started), ahead)
  return isPromise(variant) ? variant.then(found) : found(variant)
}

/**
 * A found entry as invalidations recorded since it was computed leave it (src/storage.ts
 * `invalidationState`): gone after a hard tag invalidation, stale from the moment of a soft one.
 * `ahead`: the mark reads this lookup started with the entry's read, never an earlier one's.
 */
function checked(cache: Instance, key: string, found: Found, budget: number, ahead: MarksAhead | undefined): Maybe<Found> {
  const entry = found.entry
  if (entry === undefined) return found
  const state = cache.storage.invalidationState(key, entry, Math.max(1, budget), ahead)
  const apply = (s: InvalidationState): Found => {
    if (s.state === 'ok') return found
    if (s.state === 'gone') {
      cache.storage.remove(key)
      return { entry: undefined, vary: found.vary }
    }
    // Stale from the soft invalidation on: its age then is its new lifetime.
    const lifetime = Math.min(entry.lifetime, entry.initialAge + Math.max(0, s.at - entry.responseTime))
    return { entry: { ...entry, lifetime }, vary: found.vary }
  }
  return isPromise(state) ? state.then(apply) : apply(state)
}

/** The key of the entry a lookup found: the head key, or the request's variant under it. */
export function foundKey(ctx: Context, found: Found): string {
  return found.vary === undefined ? ctx.headKey : ctx.headKey + '#' + variantPart(found.vary.vary, varyHeaders(ctx.req, found.vary.vary))
}

/** The variant part of the request for the Vary record it found ('' when none). */
export function variantOf(ctx: Context): string {
  return ctx.varyRecord === undefined ? '' : variantPart(ctx.varyRecord.vary, varyHeaders(ctx.req, ctx.varyRecord.vary))
}

/**
 * The request's values of the headers a response varies on: exactly what the handler reads in
 * `req.headers`, where Node has already kept the first line of single-value fields (User-Agent,
 * Authorization, …) and joined the lines of list fields with `, `. Keyed by anything else (the
 * raw lines, say), a client that splits a header into two lines would reach, or plant, the
 * variant of a client who sends the joined value. Conditional fields held aside are read from
 * where they are held.
 */
export function varyHeaders(req: IncomingMessage, names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = Object.create(null)
  if (names.length === 0) return out
  const held = contexts.get(req)?.conditionals
  const headers = req.headers
  for (const name of names) {
    const value =
      held !== undefined && (HELD_CONDITIONALS as readonly string[]).includes(name)
        ? held[name as (typeof HELD_CONDITIONALS)[number]]
        : Object.prototype.hasOwnProperty.call(headers, name)
          ? headers[name]
          : undefined
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(', ') : value
  }
  return out
}
