/** diagnostics_channel events of the cache (README "Metrics and tracing"): names, message shapes, publish helpers. */
import diagnostics from 'node:diagnostics_channel'

/**
 * Name of the tracing channel of a request's cache phase: subscribe with
 * `diagnostics_channel.tracingChannel(REQUEST_CHANNEL)`, or to its plain channels
 * `tracing:cachet:request:start`, `…:end`, `…:asyncStart`, `…:asyncEnd` and `…:error`.
 * Every event of one request carries the same {@link RequestMessage} object.
 */
export const REQUEST_CHANNEL = 'cachet:request'
/** Name of the channel of store reads; messages are {@link StoreReadMessage}. */
export const STORE_READ_CHANNEL = 'cachet:store:read'
/** Name of the channel of store writes of responses; messages are {@link StoreWriteMessage}. */
export const STORE_WRITE_CHANNEL = 'cachet:store:write'
/** Name of the channel of invalidations; messages are {@link InvalidateMessage}. */
export const INVALIDATE_CHANNEL = 'cachet:invalidate'

/** What the cache did with a request: the value of its `X-Cache` header. */
export type RequestOutcome = 'HIT' | 'MISS' | 'BYPASS' | 'STALE' | 'REVALIDATED'

/**
 * The context object of one request on the {@link REQUEST_CHANNEL} tracing channel. The same
 * object is published at `start`, `end`, (`error`,) `asyncStart` and `asyncEnd`, so a subscriber
 * may keep its span in a `WeakMap` keyed by it. `start` and `end` carry `key`, `method` and,
 * when known, `route`; the outcome fields are filled in before `asyncStart`.
 */
export interface RequestMessage {
  /** Storage key of the response without its variant part (`/posts?page=2#example.com`); undefined when the request was passed on before it had one. */
  key: string | undefined
  /** Request method (`GET`, `HEAD`, `POST` …). */
  method: string
  /**
   * Route pattern (`/posts/:id`), never the URL: a metrics label. Set when the request starts or
   * ends, whichever knows it (Express sets `req.route` only once the route's handler runs).
   */
  route?: string
  /** What the cache did; set when the outcome is known (from `asyncStart` on). */
  outcome?: RequestOutcome
  /** The cache's member of the `Cache-Status` response header (RFC 9211), when it set one. */
  cacheStatus?: string
  /** For a MISS or REVALIDATED: whether the response was stored. */
  stored?: boolean
  /** Why the request bypassed the cache, or why the response was not stored. */
  reason?: string
  /** Milliseconds from `start` to the outcome; set from `asyncStart` on. */
  durationMs?: number
  /** Set before `error` is published: a store or coder failure met during the phase (the request was still served). */
  error?: unknown
}

/** Details known when a request's outcome is, for {@link endRequest}. Every field is optional. */
export interface RequestOutcomeDetail {
  /** Route pattern, when the request did not know it at {@link startRequest}. */
  route?: string
  /** Member of `Cache-Status` the cache set. */
  cacheStatus?: string
  /** Whether the response was stored. */
  stored?: boolean
  /** Why the request bypassed the cache or the response was not stored. */
  reason?: string
  /** A failure met during the phase: published on the `error` channel before `asyncStart`. */
  error?: unknown
}

/** A message of {@link STORE_READ_CHANNEL}: one read of the store. */
export interface StoreReadMessage {
  /** Storage key read. */
  key: string
  /** `hit`: an entry came back; `miss`: none; `error`: the store failed or did not answer in time. */
  outcome: 'hit' | 'miss' | 'error'
  /** Milliseconds the read took. */
  durationMs: number
}

/** A message of {@link STORE_WRITE_CHANNEL}: one write of a response to the store, once the store answered. */
export interface StoreWriteMessage {
  /** Storage key written. */
  key: string
  /** `landed`: stored; `failed`: the store or coder failed, timed out, or was being skipped; `refused`: the store declined (its `set` resolved `false`). */
  outcome: 'landed' | 'failed' | 'refused'
  /** Encoded size, when the entry was encoded (not for the memory store, which holds objects). */
  bytes?: number
  /** Milliseconds from the start of the write to the store's answer. */
  durationMs: number
}

/** A message of {@link INVALIDATE_CHANNEL}: one invalidation, published once it settled. */
export type InvalidateMessage = (
  | {
      /** The primary-key pattern invalidated (`*` is the only wildcard), or the key deleted. */
      pattern: string
      tags?: undefined
    }
  | {
      /** The tags invalidated. */
      tags: readonly string[]
      pattern?: undefined
    }
) & {
  /** True when the entries were marked stale instead of removed. */
  soft?: boolean
  /** How many entries were removed, when it succeeded and the store could tell. */
  removed?: number
  /** Why it failed, when it did (the caller of invalidate() got the same error). */
  error?: unknown
}

const requestStart = diagnostics.channel(`tracing:${REQUEST_CHANNEL}:start`)
const requestEnd = diagnostics.channel(`tracing:${REQUEST_CHANNEL}:end`)
const requestAsyncStart = diagnostics.channel(`tracing:${REQUEST_CHANNEL}:asyncStart`)
const requestAsyncEnd = diagnostics.channel(`tracing:${REQUEST_CHANNEL}:asyncEnd`)
const requestError = diagnostics.channel(`tracing:${REQUEST_CHANNEL}:error`)
const storeRead = diagnostics.channel(STORE_READ_CHANNEL)
const storeWrite = diagnostics.channel(STORE_WRITE_CHANNEL)
const invalidation = diagnostics.channel(INVALIDATE_CHANNEL)

/** When each traced request started (performance.now()), kept off the message itself. */
const started = new WeakMap<RequestMessage, number>()

/** True when anyone listens to any event of the request tracing channel. */
function requestTraced(): boolean {
  return (
    requestStart.hasSubscribers ||
    requestEnd.hasSubscribers ||
    requestAsyncStart.hasSubscribers ||
    requestAsyncEnd.hasSubscribers ||
    requestError.hasSubscribers
  )
}

/**
 * Begin the cache phase of a request, when its lookup starts (or when it is passed on before
 * any lookup). Publishes `start`, then `end` at once: the phase is asynchronous work whose
 * synchronous part is only its dispatch, as with `TracingChannel.traceCallback`. A span runs
 * from `start` to `asyncEnd`.
 *
 * Returns the request's message to hand to {@link endRequest}, or `undefined` — having built
 * nothing and read no clock — when nobody subscribes.
 *
 * ```ts
 * ctx.trace = startRequest(headKey, req.method, undefined)
 * ```
 */
export function startRequest(key: string | undefined, method: string, route?: string): RequestMessage | undefined {
  if (!requestTraced()) return undefined
  const message: RequestMessage = route === undefined ? { key, method } : { key, method, route }
  started.set(message, performance.now())
  requestStart.publish(message)
  requestEnd.publish(message)
  return message
}

/**
 * End the cache phase of a request once its outcome is known: fills in the outcome fields and
 * `durationMs`, publishes `error` when `detail.error` is set, then `asyncStart` and `asyncEnd`.
 * Does nothing — `detail` is not even read — when `trace` is `undefined` (nobody subscribed at
 * {@link startRequest}); calling it twice for one request publishes once.
 *
 * ```ts
 * endRequest(ctx.trace, 'HIT', { cacheStatus: member })
 * ```
 */
export function endRequest(trace: RequestMessage | undefined, outcome: RequestOutcome, detail?: RequestOutcomeDetail): void {
  if (trace === undefined || trace.outcome !== undefined) return
  trace.outcome = outcome
  if (detail !== undefined) {
    const { route, cacheStatus, stored, reason, error } = detail
    if (route !== undefined) trace.route = route
    if (cacheStatus !== undefined) trace.cacheStatus = cacheStatus
    if (stored !== undefined) trace.stored = stored
    if (reason !== undefined) trace.reason = reason
    if (error !== undefined) trace.error = error
  }
  const start = started.get(trace)
  trace.durationMs = start === undefined ? 0 : performance.now() - start
  if (trace.error !== undefined) requestError.publish(trace)
  requestAsyncStart.publish(trace)
  requestAsyncEnd.publish(trace)
}

/**
 * Mark the start of a store call for {@link publishStoreRead} / {@link publishStoreWrite}:
 * `performance.now()` when anyone listens to store reads or writes, else `0` without reading
 * the clock.
 *
 * ```ts
 * const t = storeCallStarted()
 * ```
 */
export function storeCallStarted(): number {
  return storeRead.hasSubscribers || storeWrite.hasSubscribers ? performance.now() : 0
}

/**
 * Publish one store read on {@link STORE_READ_CHANNEL}. Returns at once, building nothing,
 * when nobody subscribes, or when the read started before anyone did (`started` is `0`).
 *
 * ```ts
 * publishStoreRead(key, entry === undefined ? 'miss' : 'hit', t)
 * ```
 */
export function publishStoreRead(key: string, outcome: StoreReadMessage['outcome'], started: number): void {
  if (!storeRead.hasSubscribers || started === 0) return
  const message: StoreReadMessage = { key, outcome, durationMs: performance.now() - started }
  storeRead.publish(message)
}

/**
 * Publish one response write on {@link STORE_WRITE_CHANNEL} once the store answered. Returns at
 * once, building nothing, when nobody subscribes, or when the write started before anyone did.
 *
 * ```ts
 * publishStoreWrite(key, 'landed', t, bytes.byteLength)
 * ```
 */
export function publishStoreWrite(key: string, outcome: StoreWriteMessage['outcome'], started: number, bytes?: number): void {
  if (!storeWrite.hasSubscribers || started === 0) return
  const message: StoreWriteMessage =
    bytes === undefined ? { key, outcome, durationMs: performance.now() - started } : { key, outcome, bytes, durationMs: performance.now() - started }
  storeWrite.publish(message)
}

/**
 * Publish one settled invalidation on {@link INVALIDATE_CHANNEL}. Returns at once, without
 * reading `message`, when nobody subscribes.
 *
 * ```ts
 * publishInvalidate({ pattern, removed })
 * ```
 */
export function publishInvalidate(message: InvalidateMessage): void {
  if (!invalidation.hasSubscribers) return
  invalidation.publish(message)
}
