/** Coalesce: concurrent misses for one key wait for one request, in this process (a flight) and across processes (the store's shared lock). */
import { currentAge } from '../entry.js'
import { variantPart } from '../key.js'
import { POLL_FIRST, POLL_MAX, isPromise, type Maybe } from '../storage.js'
import { compute } from './compute.js'
import { lookup, varyHeaders, type Found } from './lookup.js'
import { serve, writeEntry } from './serve.js'
import { debug, routeOf, type Context, type Flight, type FlightResult } from './state.js'
import { endRequest } from '../diagnostics.js'

/** A miss: join the request already computing this key, or lead the computation. */
export function miss(ctx: Context): void {
  const { cache, req } = ctx
  // Only a plain GET leads or joins a flight: a HEAD stores nothing, an authorised request may
  // get an answer the others must not see, a Range request a part of one, and a key whose last
  // response was not storable would make everyone wait for nothing (hit-for-pass).
  if (req.method !== 'GET' || req.headers.authorization !== undefined || req.headers.range !== undefined || ctx.pass) {
    return compute(ctx, undefined, false)
  }
  const flight = cache.flights.get(ctx.headKey)
  if (flight === undefined) return lead(ctx)

  let settled = false
  const timer = setTimeout(() => {
    settled = true
    debug('coalescing: waited lockTimeout for %s, going to the origin', ctx.headKey)
    compute(ctx, undefined, false)
  }, cache.config.lockTimeout)
  timer.unref?.()
  flight.promise.then((result) => {
    if (settled) return
    settled = true
    clearTimeout(timer)
    if (result !== undefined && variantPart(result.vary, varyHeaders(req, result.vary)) === result.variant && !ctx.rules.noCache) {
      cache.counters.hits++
      endRequest(ctx.trace, 'HIT', { route: routeOf(req) })
      const ageMs = currentAge(result.entry, cache.config.now())
      return writeEntry(cache, req, ctx.res, result.entry, { ageMs, label: 'HIT', route: ctx.route, collapsed: true })
    }
    // The leader's response is not shareable (or not for this variant): go to the origin now.
    compute(ctx, undefined, false)
  })
}

/**
 * First request for a key in this process: the others here wait on its flight. With a store
 * that offers a shared lock (Redis), it also takes the lock, so one process computes the
 * response while the others poll the store for it (nginx's proxy_cache_lock, across processes).
 */
function lead(ctx: Context): void {
  const { cache } = ctx
  const { storage, config } = cache
  startFlight(ctx)
  // No shared lock while the store is failing or has just failed. In-process coalescing (the
  // flight above) still holds.
  if (!storage.locksUsable(config.lockTimeout)) return compute(ctx, undefined, false)
  // The lock comes out of what the lookup left of the request's storeTimeout.
  const budget = config.storeTimeout - (config.now() - ctx.arrived)
  if (budget < config.storeTimeout / 4) return compute(ctx, undefined, false)
  const deadline = config.now() + config.lockTimeout
  storage.lock(ctx.headKey, config.lockTimeout, budget).then((token) => {
    if (token === undefined) return compute(ctx, undefined, false) // the lock itself failed: go on alone
    if (token !== null) {
      ctx.lockToken = token
      return compute(ctx, undefined, false)
    }
    pollForEntry(ctx, deadline, POLL_FIRST)
  })
}

/** Another process holds the lock: read the store until its response lands or the lock frees. */
function pollForEntry(ctx: Context, deadline: number, delay: number): void {
  const { cache, req } = ctx
  const { storage, config } = cache
  const timer = setTimeout(() => {
    const check = (found: Found) => {
      const entry = found.entry
      const now = config.now()
      if (entry !== undefined && currentAge(entry, now) < entry.lifetime) {
        if (serve(ctx, found, { ageMs: currentAge(entry, now), label: 'HIT', route: undefined })) {
          const variant = found.vary === undefined ? '' : variantPart(found.vary.vary, varyHeaders(req, found.vary.vary))
          return settle(ctx, { entry, vary: found.vary?.vary ?? [], variant })
        }
        return compute(ctx, undefined, false)
      }
      if (now >= deadline || !storage.locksUsable(config.lockTimeout)) {
        debug('coalescing: lock for %s still held after lockTimeout (or the store is failing), going to the origin', ctx.headKey)
        return compute(ctx, undefined, false)
      }
      storage.lock(ctx.headKey, config.lockTimeout).then((token) => {
        if (token === null) return pollForEntry(ctx, deadline, Math.min(delay * 2, POLL_MAX))
        // The holder finished without storing (its response was not shareable): do not queue
        // behind each other for it, every waiter goes to the origin now.
        if (token !== undefined) storage.unlock(ctx.headKey, token)
        compute(ctx, undefined, false)
      })
    }
    const found = lookup(cache, ctx.headKey, req)
    if (isPromise(found)) found.then(check, () => compute(ctx, undefined, false))
    else check(found)
  }, delay)
  timer.unref?.()
}

function startFlight(ctx: Context): void {
  let resolve!: (result: FlightResult | undefined) => void
  const promise = new Promise<FlightResult | undefined>((r) => (resolve = r))
  const key = ctx.headKey
  const flight: Flight = {
    promise,
    settle(result) {
      if (ctx.cache.flights.get(key) === flight) ctx.cache.flights.delete(key)
      resolve(result)
    },
  }
  ctx.cache.flights.set(key, flight)
  ctx.flight = flight
}

/**
 * The one place a request lets go of its key: the requests waiting on it get `result` (or go to
 * the app themselves), and the shared lock is released once `written` has landed.
 */
export function settle(ctx: Context, result: FlightResult | undefined, written?: Maybe<void>): void {
  const flight = ctx.flight
  ctx.flight = undefined
  flight?.settle(result)
  const token = ctx.lockToken
  if (token === undefined) return
  ctx.lockToken = undefined
  const { storage } = ctx.cache
  const name = ctx.headKey
  const unlock = () => storage.unlock(name, token)
  if (isPromise(written)) written.then(unlock, unlock)
  else unlock()
}
