/** Metrics and tracing: a Prometheus `/metrics` endpoint and a span per request's cache phase, both from cachet's diagnostics channels. */
import type { AddressInfo } from 'node:net'
import express from 'express'
import { cacheRoute, prometheusMetrics, responseCache, type ResponseCache } from '../../src/index.js'
import { recordSpans, type RecordedSpan } from './spans.js'

/**
 * The app: `/posts/:id` cached for 30 s, `/metrics` never cached. `onSpan` receives each
 * request's cache span (default: logged as one line).
 */
export function createApp(options: { cache?: ResponseCache; onSpan?: (span: RecordedSpan) => void } = {}) {
  const cache = options.cache ?? responseCache()
  // One instance per process: it listens to every cache's events. Pass { registry: register }
  // (prom-client's default registry) to serve it next to collectDefaultMetrics().
  const metrics = prometheusMetrics()
  const stopSpans = recordSpans(options.onSpan ?? logSpan)

  const app = express()
  app.use(cache)
  app.get('/posts/:id', cacheRoute('30s'), (req, res) => {
    res.json({ id: Number(req.params.id), title: `Post ${req.params.id}` })
  })
  app.get('/metrics', cacheRoute(false), async (req, res, next) => {
    try {
      res.type(metrics.registry.contentType).send(await metrics.registry.metrics())
    } catch (error) {
      next(error)
    }
  })

  return {
    app,
    cache,
    metrics,
    async close() {
      stopSpans()
      metrics.close()
      await cache.close()
    },
  }
}

/** One line per span: outcome, route, duration. */
function logSpan(span: RecordedSpan): void {
  const { attributes: a } = span
  const ms = (span.endTime - span.startTime).toFixed(3)
  console.log(
    `span ${span.name} ${a['http.request.method']} ${a['http.route'] ?? '-'} ${a['cachet.outcome']} ${ms} ms${span.status === 'error' ? ' (error)' : ''}`,
  )
}

// `tsx examples/observability/app.ts`: GET /posts/1 twice, then GET /metrics.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { app } = createApp()
  const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo
    console.log(`http://127.0.0.1:${port}/posts/1 (MISS, then HIT), then /metrics`)
  })
}
