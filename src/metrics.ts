/** prometheusMetrics(): Prometheus counters and histograms fed by the diagnostics channels, on the optional prom-client. */
import diagnostics from 'node:diagnostics_channel'
import { createRequire } from 'node:module'
import { INVALIDATE_CHANNEL, REQUEST_CHANNEL, STORE_READ_CHANNEL, STORE_WRITE_CHANNEL } from './diagnostics.js'
import type { InvalidateMessage, RequestMessage, StoreReadMessage, StoreWriteMessage } from './diagnostics.js'
import { assertKnownOptions, describe } from './validate.js'

/**
 * A Prometheus registry as prometheusMetrics() uses it: a prom-client `Registry` (or its
 * default `register`) satisfies it. Described by shape, so cachet's types need no prom-client.
 */
export interface MetricsRegistry {
  /** The exposition text of every metric registered. */
  metrics(): Promise<string>
  /** The `Content-Type` to serve `metrics()` with. */
  readonly contentType: string
  /** Called by each metric's constructor. */
  registerMetric(metric: unknown): void
  /** Called by `close()` for each metric it registered. */
  removeSingleMetric(name: string): void
}

/** Options of {@link prometheusMetrics}. */
export interface PrometheusMetricsOptions<R extends MetricsRegistry = MetricsRegistry> {
  /** Registry the metrics join, e.g. prom-client's default `register`. @default a new prom-client `Registry` */
  registry?: R
  /** Prefix of every metric name: a valid Prometheus name start. @default 'cachet_' */
  prefix?: string
  /**
   * Upper bounds, in seconds, of the buckets of both histograms: finite, positive, increasing.
   * @default [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
   */
  buckets?: readonly number[]
  /**
   * Most distinct `route` label values kept; further routes are counted under `route="other"`,
   * so a flow that hands over raw URLs cannot grow the series without bound. @default 100
   */
  maxRoutes?: number
}

/** What {@link prometheusMetrics} returns. */
export interface PrometheusMetrics<R extends MetricsRegistry = MetricsRegistry> {
  /** The registry holding the metrics: serve `await registry.metrics()` with `registry.contentType`. */
  readonly registry: R
  /** Stop listening to the channels and remove these metrics from the registry. Idempotent. */
  close(): void
}

/** The parts of prom-client used here. */
interface PromClient {
  Registry: new () => MetricsRegistry
  Counter: new (config: MetricConfig) => { inc(labels: Record<string, string>): void }
  Histogram: new (config: MetricConfig & { buckets: number[] }) => { observe(labels: Record<string, string>, value: number): void }
}

interface MetricConfig {
  name: string
  help: string
  labelNames: string[]
  registers: MetricsRegistry[]
}

const DEFAULT_BUCKETS = [0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const OPTION_NAMES = ['registry', 'prefix', 'buckets', 'maxRoutes'] as const
/** Label value of requests whose route the flow did not know (a HIT answered before routing). */
const NO_ROUTE = ''
/** Label value of routes beyond `maxRoutes`. */
const OTHER_ROUTE = 'other'

/**
 * Count what the cache does, as Prometheus metrics, from the diagnostics channels (README
 * "Metrics and tracing"): one instance serves every cache of the process.
 *
 * - `cachet_requests_total{outcome,route}` and `cachet_request_cache_seconds{outcome}`: requests
 *   by `X-Cache` outcome and route pattern, and the time from lookup to outcome;
 * - `cachet_store_writes_total{outcome}`: response writes landed, failed, refused;
 * - `cachet_store_seconds{operation,outcome}`: store reads and writes;
 * - `cachet_invalidations_total{kind,outcome}`: invalidations by pattern or tags, done or failed.
 *
 * Labels never hold keys or URLs, so the number of series stays bounded. Needs the optional
 * peer dependency prom-client (`npm install prom-client`), loaded when this is called.
 *
 * ```ts
 * const metrics = prometheusMetrics()
 * app.get('/metrics', async (req, res) => {
 *   res.type(metrics.registry.contentType).send(await metrics.registry.metrics())
 * })
 * ```
 */
export function prometheusMetrics<R extends MetricsRegistry = MetricsRegistry>(options: PrometheusMetricsOptions<R> = {}): PrometheusMetrics<R> {
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`prometheusMetrics(options): options must be an object, got ${describe(options)}`)
  }
  assertKnownOptions('prometheusMetrics()', options, OPTION_NAMES)
  const { registry: given, prefix = 'cachet_', buckets = DEFAULT_BUCKETS, maxRoutes = 100 } = options
  if (given !== undefined && !isRegistry(given)) {
    throw new TypeError(`option "registry" must be a prom-client Registry (metrics(), registerMetric(), removeSingleMetric()), got ${describe(given)}`)
  }
  if (typeof prefix !== 'string' || (prefix !== '' && !METRIC_NAME.test(prefix))) {
    throw new TypeError(`option "prefix" must be a string of letters, digits, "_" and ":" not starting with a digit, got ${describe(prefix)}`)
  }
  if (!validBuckets(buckets)) {
    throw new TypeError(`option "buckets" must be a non-empty array of finite positive numbers in increasing order, got ${describe(buckets)}`)
  }
  if (typeof maxRoutes !== 'number' || !Number.isInteger(maxRoutes) || maxRoutes < 1) {
    throw new TypeError(`option "maxRoutes" must be a positive integer, got ${describe(maxRoutes)}`)
  }

  const client = loadPromClient()
  const registry = (given ?? new client.Registry()) as R
  const registers = [registry]
  const names = {
    requests: `${prefix}requests_total`,
    requestSeconds: `${prefix}request_cache_seconds`,
    writes: `${prefix}store_writes_total`,
    storeSeconds: `${prefix}store_seconds`,
    invalidations: `${prefix}invalidations_total`,
  }
  const created: string[] = []
  const made = function made<M>(name: string, make: () => M): M {
    try {
      const metric = make()
      created.push(name)
      return metric
    } catch (error) {
      // Leave the registry as it was: a metric of that name belongs to someone else.
      for (const done of created) registry.removeSingleMetric(done)
      throw new Error(`prometheusMetrics(): cannot register ${name} (${asMessage(error)}); close() the instance that holds it, or give another prefix`, {
        cause: error,
      })
    }
  }
  const requests = made(
    names.requests,
    () =>
      new client.Counter({
        name: names.requests,
        help: 'Requests by what the cache did (X-Cache outcome) and route pattern.',
        labelNames: ['outcome', 'route'],
        registers,
      }),
  )
  const requestSeconds = made(
    names.requestSeconds,
    () =>
      new client.Histogram({
        name: names.requestSeconds,
        help: "Seconds from a request's cache lookup to its outcome, by outcome.",
        labelNames: ['outcome'],
        buckets: [...buckets],
        registers,
      }),
  )
  const writes = made(
    names.writes,
    () =>
      new client.Counter({
        name: names.writes,
        help: 'Response writes to the store, by outcome: landed, failed, refused.',
        labelNames: ['outcome'],
        registers,
      }),
  )
  const storeSeconds = made(
    names.storeSeconds,
    () =>
      new client.Histogram({
        name: names.storeSeconds,
        help: 'Seconds per store call, by operation (read, write) and outcome.',
        labelNames: ['operation', 'outcome'],
        buckets: [...buckets],
        registers,
      }),
  )
  const invalidations = made(
    names.invalidations,
    () =>
      new client.Counter({
        name: names.invalidations,
        help: 'Invalidations by kind (pattern, tags) and outcome (done, failed).',
        labelNames: ['kind', 'outcome'],
        registers,
      }),
  )

  const routes = new Set<string>()
  const routeLabel = function routeLabel(route: string | undefined): string {
    if (route === undefined || route === '') return NO_ROUTE
    if (routes.has(route)) return route
    if (routes.size >= maxRoutes) return OTHER_ROUTE
    routes.add(route)
    return route
  }

  const onRequestEnd = function onRequestEnd(message: unknown) {
    const { outcome, route, durationMs } = message as RequestMessage
    if (outcome === undefined) return
    requests.inc({ outcome, route: routeLabel(route) })
    if (Number.isFinite(durationMs)) requestSeconds.observe({ outcome }, (durationMs as number) / 1000)
  }
  const onStoreRead = function onStoreRead(message: unknown) {
    const { outcome, durationMs } = message as StoreReadMessage
    if (Number.isFinite(durationMs)) storeSeconds.observe({ operation: 'read', outcome }, durationMs / 1000)
  }
  const onStoreWrite = function onStoreWrite(message: unknown) {
    const { outcome, durationMs } = message as StoreWriteMessage
    writes.inc({ outcome })
    if (Number.isFinite(durationMs)) storeSeconds.observe({ operation: 'write', outcome }, durationMs / 1000)
  }
  const onInvalidate = function onInvalidate(message: unknown) {
    const { tags, error } = message as InvalidateMessage
    invalidations.inc({ kind: tags === undefined ? 'pattern' : 'tags', outcome: error === undefined ? 'done' : 'failed' })
  }

  const subscriptions: Array<[string, (message: unknown, name: string | symbol) => void]> = [
    [`tracing:${REQUEST_CHANNEL}:asyncEnd`, onRequestEnd],
    [STORE_READ_CHANNEL, onStoreRead],
    [STORE_WRITE_CHANNEL, onStoreWrite],
    [INVALIDATE_CHANNEL, onInvalidate],
  ]
  for (const [name, onMessage] of subscriptions) diagnostics.subscribe(name, onMessage)

  let closed = false
  return {
    registry,
    close() {
      if (closed) return
      closed = true
      for (const [name, onMessage] of subscriptions) diagnostics.unsubscribe(name, onMessage)
      for (const name of Object.values(names)) registry.removeSingleMetric(name)
    },
  }
}

/**
 * Load prom-client, resolved from `from` (cachet's own location), or throw an Error naming the
 * package to install.
 */
export function loadPromClient(from: string = import.meta.url): PromClient {
  let loaded: unknown
  try {
    loaded = createRequire(from)('prom-client')
  } catch (error) {
    throw new Error('prometheusMetrics() needs the optional peer dependency "prom-client": npm install prom-client', { cause: error })
  }
  return loaded as PromClient
}

function asMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}

function isRegistry(value: unknown): value is MetricsRegistry {
  if (value === null || typeof value !== 'object') return false
  const candidate = value as Partial<Record<keyof MetricsRegistry, unknown>>
  return typeof candidate.metrics === 'function' && typeof candidate.registerMetric === 'function' && typeof candidate.removeSingleMetric === 'function'
}

function validBuckets(buckets: unknown): buckets is readonly number[] {
  if (!Array.isArray(buckets) || buckets.length === 0) return false
  let previous = 0
  for (const bound of buckets) {
    if (typeof bound !== 'number' || !Number.isFinite(bound) || bound <= previous) return false
    previous = bound
  }
  return true
}
