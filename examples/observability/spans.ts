/** An OpenTelemetry-style span per request's cache phase, recorded from the `cachet:request` tracing channel. */
import diagnostics from 'node:diagnostics_channel'
import { REQUEST_CHANNEL, type RequestMessage } from '../../src/index.js'

/** A finished span, shaped like what an OpenTelemetry exporter receives. */
export interface RecordedSpan {
  name: string
  /** performance.now() at `start` and at `asyncEnd`. */
  startTime: number
  endTime: number
  attributes: Record<string, string | number | boolean>
  status: 'ok' | 'error'
  /** The failure published on `error`, if any (the request was still served). */
  exception?: unknown
}

/**
 * Record one span per request's cache phase and hand it to `onSpan` when it ends. With
 * `@opentelemetry/api`, `start` is where `tracer.startSpan('cachet.cache', { attributes })`
 * goes, `error` calls `span.recordException(error)`, and `asyncEnd` sets the outcome
 * attributes and calls `span.end()`. Returns a function that stops recording.
 */
export function recordSpans(onSpan: (span: RecordedSpan) => void): () => void {
  const channel = diagnostics.tracingChannel(REQUEST_CHANNEL)
  // One open span per request: the channel hands every event of a request the same object.
  const open = new WeakMap<object, Omit<RecordedSpan, 'endTime'>>()
  const handlers = {
    start: function onStart(message: unknown) {
      const { key, method, route } = message as RequestMessage
      // tracer.startSpan('cachet.cache', { attributes: { … } })
      const attributes: RecordedSpan['attributes'] = { 'http.request.method': method }
      if (route !== undefined) attributes['http.route'] = route
      if (key !== undefined) attributes['cachet.key'] = key
      open.set(message as object, { name: 'cachet.cache', startTime: performance.now(), attributes, status: 'ok' })
    },
    end: function onEnd() {
      // The lookup was dispatched; the span stays open until asyncEnd.
    },
    asyncStart: function onAsyncStart() {},
    error: function onError(message: unknown) {
      const span = open.get(message as object)
      if (span === undefined) return
      // span.recordException(error); span.setStatus({ code: SpanStatusCode.ERROR })
      span.status = 'error'
      span.exception = (message as RequestMessage).error
    },
    asyncEnd: function onAsyncEnd(message: unknown) {
      const span = open.get(message as object)
      if (span === undefined) return // started before we subscribed
      open.delete(message as object)
      const { outcome, route, stored, reason, cacheStatus } = message as RequestMessage
      if (route !== undefined) span.attributes['http.route'] = route
      if (outcome !== undefined) span.attributes['cachet.outcome'] = outcome
      if (stored !== undefined) span.attributes['cachet.stored'] = stored
      if (reason !== undefined) span.attributes['cachet.reason'] = reason
      if (cacheStatus !== undefined) span.attributes['cachet.cache_status'] = cacheStatus
      // span.end()
      onSpan({ ...span, endTime: performance.now() })
    },
  }
  channel.subscribe(handlers)
  return function stopRecording() {
    channel.unsubscribe(handlers)
  }
}
