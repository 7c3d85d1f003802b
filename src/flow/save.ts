/** Save: store a response, and for a varying one its variant and the Vary record that lists the variants. */
import { variantPart } from '../key.js'
import { isPromise } from '../storage.js'
import type { Entry, ResponseEntry, VaryEntry } from '../types.js'
import { settle } from './coalesce.js'
import { varyHeaders } from './lookup.js'
import { debug, headerOf, type Context, type FlightResult } from './state.js'

/** Keep stale entries a while after expiry, for revalidation and stale serving. */
const RETAIN_WITH_VALIDATOR = 60_000

function retention(entry: ResponseEntry): number {
  const validator = headerOf(entry.headers, 'etag') !== undefined || headerOf(entry.headers, 'last-modified') !== undefined
  const extra = Math.max(entry.staleWhileRevalidate, entry.staleIfError, validator ? Math.max(entry.lifetime, RETAIN_WITH_VALIDATOR) : 0)
  return entry.lifetime + extra
}

export function save(ctx: Context, entry: ResponseEntry, vary: string[]): void {
  const { cache } = ctx
  const ttl = retention(entry)
  if (ttl <= 0) return settle(ctx, undefined)
  // An invalidation that began while this response was computed may be about the data it was
  // made from: storing it now would bring back what the invalidation removed.
  if (cache.storage.invalidatedSince(ctx.headKey, ctx.epoch) || (entry.tags !== undefined && cache.storage.tagsInvalidatedSince(entry.tags, ctx.requestTime))) {
    debug('not stored: invalidated while it was computed (%s)', ctx.headKey)
    return settle(ctx, undefined)
  }
  const result: FlightResult = { entry, vary, variant: variantPart(vary, varyHeaders(ctx.req, vary)) }
  if (vary.length === 0) return settle(ctx, result, cache.storage.write(ctx.headKey, entry, ttl, ctx.requestTime))
  // A varying response: the head key holds the list of variants, each variant its own key.
  const variantKey = ctx.headKey + '#' + result.variant
  // The record lists variants oldest first. Only a record that is written evicts: the
  // provisional one below only makes this process's own writes visible at once.
  const recordOf = (base: Entry | undefined, evict: boolean): VaryEntry => {
    const now = cache.config.now()
    const variants: string[] = []
    let expires = now + ttl
    if (base?.kind === 'vary' && sameList(base.vary, vary)) {
      for (const k of base.variants) if (k !== variantKey) variants.push(k)
      expires = Math.max(expires, base.expires)
    }
    variants.push(variantKey)
    while (variants.length > cache.config.maxVariants) {
      const dropped = variants.shift()!
      if (evict) cache.storage.remove(dropped)
    }
    return { kind: 'vary', vary, variants, expires }
  }
  const written = cache.storage.write(variantKey, entry, ttl, ctx.requestTime)
  if (!isPromise(written)) {
    // A store that holds objects: nothing is in flight, and the current record is at hand.
    const record = recordOf(cache.storage.peek(ctx.headKey), true)
    ctx.varyRecord = record
    cache.storage.write(ctx.headKey, record, record.expires - cache.config.now())
    return settle(ctx, result)
  }
  // Seen at once in this process: the variant and a record built from what is known here.
  const provisional = recordOf(cache.storage.peek(ctx.headKey) ?? ctx.varyRecord, false)
  ctx.varyRecord = provisional
  cache.storage.stage(ctx.headKey, provisional)
  // Then the store's copy (other processes add variants too) gains this variant and is written
  // back. Updates of one key run one after another in this process, each adding only its own
  // variant, so the list stays in the order the variants were stored; across processes the cap
  // holds approximately (the last writer wins).
  const update = (): Promise<void> => {
    const merge = (stored: Entry | undefined) => {
      const record = recordOf(stored, true)
      return cache.storage.write(ctx.headKey, record, record.expires - cache.config.now())
    }
    return Promise.resolve(cache.storage.read(ctx.headKey, true)).then(merge)
  }
  const previous = cache.varyUpdates.get(ctx.headKey)
  const done = (previous === undefined ? update() : previous.then(update, update)).then(() => written)
  cache.varyUpdates.set(ctx.headKey, done)
  const forget = () => {
    if (cache.varyUpdates.get(ctx.headKey) === done) cache.varyUpdates.delete(ctx.headKey)
  }
  done.then(forget, forget)
  settle(ctx, result, done)
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i])
}
