/** prometheusMetrics() (src/metrics.ts): counters and histograms from the diagnostics channels, bounded labels, lazy prom-client. */
import { expect } from 'chai'
import diagnostics from 'node:diagnostics_channel'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Registry } from 'prom-client'
import {
  INVALIDATE_CHANNEL,
  REQUEST_CHANNEL,
  STORE_READ_CHANNEL,
  STORE_WRITE_CHANNEL,
  endRequest,
  publishInvalidate,
  publishStoreRead,
  publishStoreWrite,
  startRequest,
  storeCallStarted,
} from '../../src/diagnostics.js'
import { loadPromClient, prometheusMetrics, type PrometheusMetrics } from '../../src/metrics.js'
import { createApp as observabilityApp } from '../../examples/observability/app.js'
import { recordSpans, type RecordedSpan } from '../../examples/observability/spans.js'
import { serve } from '../support/app.js'

interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** The samples of an exposition text (no HELP/TYPE lines). */
function samples(text: string): Sample[] {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
      if (match === null) throw new Error(`not a sample line: ${line}`)
      const labels: Record<string, string> = {}
      for (const pair of (match[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2]
      return { name: match[1], labels, value: Number(match[3]) }
    })
}

/** The value of the one sample named `name` with exactly `labels`, or undefined. */
function valueOf(text: string, name: string, labels: Record<string, string>): number | undefined {
  const wanted = JSON.stringify(Object.entries(labels).sort())
  return samples(text).find((s) => s.name === name && JSON.stringify(Object.entries(s.labels).sort()) === wanted)?.value
}

/** Publish one request through the helpers, as the flow does. */
function request(key: string, outcome: 'HIT' | 'MISS' | 'BYPASS' | 'STALE' | 'REVALIDATED', route?: string): void {
  endRequest(startRequest(key, 'GET'), outcome, route === undefined ? undefined : { route })
}

describe('prometheusMetrics()', () => {
  let metrics: PrometheusMetrics | undefined
  afterEach(() => {
    metrics?.close()
    metrics = undefined
  })

  describe('when requests are published on the tracing channel', () => {
    it('should count them by outcome and route, and time them by outcome', async () => {
      metrics = prometheusMetrics()
      request('/posts#h', 'MISS', '/posts')
      request('/posts#h', 'HIT', '/posts')
      request('/posts#h', 'HIT', '/posts')
      request('/posts/1#h', 'HIT', '/posts/:id')
      request('/x#h', 'BYPASS')
      const text = await metrics.registry.metrics()
      expect(valueOf(text, 'cachet_requests_total', { outcome: 'HIT', route: '/posts' })).to.equal(2)
      expect(valueOf(text, 'cachet_requests_total', { outcome: 'MISS', route: '/posts' })).to.equal(1)
      expect(valueOf(text, 'cachet_requests_total', { outcome: 'HIT', route: '/posts/:id' })).to.equal(1)
      expect(valueOf(text, 'cachet_requests_total', { outcome: 'BYPASS', route: '' })).to.equal(1)
      expect(valueOf(text, 'cachet_request_cache_seconds_count', { outcome: 'HIT' })).to.equal(3)
      expect(valueOf(text, 'cachet_request_cache_seconds_count', { outcome: 'MISS' })).to.equal(1)
      expect(valueOf(text, 'cachet_request_cache_seconds_bucket', { outcome: 'HIT', le: '+Inf' })).to.equal(3)
    })
  })

  describe('when store calls and invalidations are published', () => {
    it('should count writes by outcome, time reads and writes, and count invalidations by kind and outcome', async () => {
      metrics = prometheusMetrics()
      publishStoreWrite('/a#h', 'landed', storeCallStarted(), 100)
      publishStoreWrite('/b#h', 'landed', storeCallStarted(), 100)
      publishStoreWrite('/c#h', 'refused', storeCallStarted())
      publishStoreWrite('/d#h', 'failed', storeCallStarted())
      publishStoreRead('/a#h', 'hit', storeCallStarted())
      publishStoreRead('/z#h', 'miss', storeCallStarted())
      publishStoreRead('/z#h', 'error', storeCallStarted())
      publishInvalidate({ pattern: 'posts:*', removed: 2 })
      publishInvalidate({ tags: ['post:1'] })
      publishInvalidate({ pattern: 'users:*', error: new Error('store down') })
      const text = await metrics.registry.metrics()
      expect(valueOf(text, 'cachet_store_writes_total', { outcome: 'landed' })).to.equal(2)
      expect(valueOf(text, 'cachet_store_writes_total', { outcome: 'refused' })).to.equal(1)
      expect(valueOf(text, 'cachet_store_writes_total', { outcome: 'failed' })).to.equal(1)
      expect(valueOf(text, 'cachet_store_seconds_count', { operation: 'write', outcome: 'landed' })).to.equal(2)
      expect(valueOf(text, 'cachet_store_seconds_count', { operation: 'read', outcome: 'hit' })).to.equal(1)
      expect(valueOf(text, 'cachet_store_seconds_count', { operation: 'read', outcome: 'miss' })).to.equal(1)
      expect(valueOf(text, 'cachet_store_seconds_count', { operation: 'read', outcome: 'error' })).to.equal(1)
      expect(valueOf(text, 'cachet_invalidations_total', { kind: 'pattern', outcome: 'done' })).to.equal(1)
      expect(valueOf(text, 'cachet_invalidations_total', { kind: 'tags', outcome: 'done' })).to.equal(1)
      expect(valueOf(text, 'cachet_invalidations_total', { kind: 'pattern', outcome: 'failed' })).to.equal(1)
    })
  })

  describe('when 1,000 different keys go through the cache', () => {
    it('should keep the same number of series as for 10 keys (labels never hold keys)', async () => {
      metrics = prometheusMetrics()
      const publishFor = (from: number, to: number) => {
        for (let i = from; i < to; i++) {
          const key = `/posts/${i}?q=${i}#h`
          request(key, i % 2 === 0 ? 'HIT' : 'MISS', '/posts/:id')
          publishStoreRead(key, i % 2 === 0 ? 'hit' : 'miss', storeCallStarted())
          publishStoreWrite(key, 'landed', storeCallStarted(), i)
          publishInvalidate({ pattern: `posts:${i}` })
        }
      }
      publishFor(0, 10)
      const after10 = samples(await metrics.registry.metrics())
      publishFor(10, 1000)
      const after1000 = samples(await metrics.registry.metrics())
      expect(after1000.length).to.equal(after10.length)
      expect(after1000.some((s) => Object.values(s.labels).some((v) => v.includes('/posts/1')))).to.equal(false)
      expect(valueOf(await metrics.registry.metrics(), 'cachet_requests_total', { outcome: 'HIT', route: '/posts/:id' })).to.equal(500)
    })
  })

  describe('when the flow hands over more routes than maxRoutes', () => {
    it('should count the routes beyond it under route="other"', async () => {
      metrics = prometheusMetrics({ maxRoutes: 3 })
      for (let i = 0; i < 50; i++) request(`/u/${i}#h`, 'MISS', `/u/${i}`)
      const text = await metrics.registry.metrics()
      const routes = samples(text)
        .filter((s) => s.name === 'cachet_requests_total')
        .map((s) => s.labels.route)
      expect(routes.sort()).to.deep.equal(['/u/0', '/u/1', '/u/2', 'other'])
      expect(valueOf(text, 'cachet_requests_total', { outcome: 'MISS', route: 'other' })).to.equal(47)
    })
  })

  describe('when a registry and a prefix are given', () => {
    it('should register the prefixed metrics in that registry and return it', async () => {
      const registry = new Registry()
      metrics = prometheusMetrics({ registry, prefix: 'edge_' })
      expect(metrics.registry).to.equal(registry)
      request('/p#h', 'STALE', '/p')
      const text = await registry.metrics()
      expect(valueOf(text, 'edge_requests_total', { outcome: 'STALE', route: '/p' })).to.equal(1)
      expect(text).to.not.match(/^cachet_/m)
    })

    it('should refuse a registry that already holds its metrics, leaving that registry as it was', async () => {
      const registry = new Registry()
      metrics = prometheusMetrics({ registry })
      const before = await registry.metrics()
      expect(() => prometheusMetrics({ registry })).to.throw(Error, /cannot register cachet_requests_total.*close\(\)/)
      expect(await registry.metrics()).to.equal(before)
    })
  })

  describe('when closed', () => {
    it('should stop listening and remove its metrics, so another instance can take the registry', async () => {
      const registry = new Registry()
      const first = prometheusMetrics({ registry })
      request('/p#h', 'HIT', '/p')
      first.close()
      first.close()
      expect(await registry.metrics()).to.not.include('cachet_requests_total')
      for (const name of [`tracing:${REQUEST_CHANNEL}:asyncEnd`, STORE_READ_CHANNEL, STORE_WRITE_CHANNEL, INVALIDATE_CHANNEL]) {
        expect(diagnostics.hasSubscribers(name), name).to.equal(false)
      }
      metrics = prometheusMetrics({ registry })
      request('/p#h', 'HIT', '/p')
      expect(valueOf(await registry.metrics(), 'cachet_requests_total', { outcome: 'HIT', route: '/p' })).to.equal(1)
    })
  })

  describe('when an option is invalid', () => {
    const rows: Array<[string, unknown, RegExp]> = [
      ['options', 42, /options must be an object, got 42/],
      ['unknown option', { prefx: 'a_' }, /unknown option "prefx" \(did you mean "prefix"\?\)/],
      ['registry', { registry: {} }, /option "registry" must be a prom-client Registry.*got \{\}/],
      ['prefix', { prefix: '1abc' }, /option "prefix" must be .*got "1abc"/],
      ['prefix', { prefix: 7 }, /option "prefix" must be .*got 7/],
      ['buckets', { buckets: [] }, /option "buckets" must be .*got \[\]/],
      ['buckets', { buckets: [0.1, 0.05] }, /option "buckets" must be .*got \[0.1,0.05\]/],
      ['buckets', { buckets: [0, 1] }, /option "buckets" must be .*got \[0,1\]/],
      ['maxRoutes', { maxRoutes: 0 }, /option "maxRoutes" must be a positive integer, got 0/],
    ]
    for (const [what, options, message] of rows) {
      it(`should throw a TypeError naming ${what} and showing the value (${JSON.stringify(options)})`, () => {
        expect(() => prometheusMetrics(options as never)).to.throw(TypeError, message)
      })
    }
  })
})

describe('loadPromClient()', () => {
  describe('when prom-client cannot be found', () => {
    it('should throw an Error naming the package to install', () => {
      const nowhere = pathToFileURL('/nonexistent-cachet-dir/index.js').href
      expect(() => loadPromClient(nowhere)).to.throw(Error, /optional peer dependency "prom-client": npm install prom-client/)
    })
  })

  describe('when src/ is read', () => {
    it('should find no static import of prom-client, so the declarations need none', () => {
      const offenders: string[] = []
      const walk = (dir: string) => {
        for (const entry of readdirSync(dir, { withFileTypes: true })) {
          const path = join(dir, entry.name)
          if (entry.isDirectory()) walk(path)
          else if (/from\s+['"]prom-client['"]|import\(\s*['"]prom-client['"]\s*\)/.test(readFileSync(path, 'utf8'))) offenders.push(path)
        }
      }
      walk(new URL('../../src', import.meta.url).pathname)
      expect(offenders).to.deep.equal([])
    })
  })
})

describe('examples/observability', () => {
  describe('when /metrics is scraped', () => {
    it('should list every metric with its HELP line, and count an event published through the helpers', async () => {
      const spans: RecordedSpan[] = []
      const example = observabilityApp({ onSpan: (span) => spans.push(span) })
      const server = await serve(example.app)
      try {
        await server.agent.get('/posts/1').expect(200)
        await server.agent.get('/posts/1').expect(200)
        endRequest(startRequest('/posts/7#example.com', 'GET'), 'HIT', { route: '/from-the-test' })
        const response = await server.agent
          .get('/metrics')
          .expect(200)
          .expect('Content-Type', /^text\/plain/)
        const text = response.text
        for (const name of [
          'cachet_requests_total',
          'cachet_request_cache_seconds',
          'cachet_store_writes_total',
          'cachet_store_seconds',
          'cachet_invalidations_total',
        ]) {
          expect(text).to.match(new RegExp(`^# HELP ${name} \\S`, 'm'), name)
          expect(text).to.match(new RegExp(`^# TYPE ${name} (counter|histogram)$`, 'm'), name)
        }
        expect(valueOf(text, 'cachet_requests_total', { outcome: 'HIT', route: '/from-the-test' })).to.equal(1)
        const mine = spans.filter((span) => span.attributes['http.route'] === '/from-the-test')
        expect(mine.map((span) => span.attributes)).to.deep.equal([
          { 'http.request.method': 'GET', 'cachet.key': '/posts/7#example.com', 'http.route': '/from-the-test', 'cachet.outcome': 'HIT' },
        ])
      } finally {
        await server.close()
        await example.close()
      }
    })
  })

  describe('when the span recorder hears an error', () => {
    it('should end that span with status error and the exception', () => {
      const spans: RecordedSpan[] = []
      const stop = recordSpans((span) => spans.push(span))
      const failure = new Error('store down')
      try {
        endRequest(startRequest('/k#h', 'GET', '/k'), 'MISS', { error: failure, stored: false })
      } finally {
        stop()
      }
      expect(spans).to.have.length(1)
      expect(spans[0].status).to.equal('error')
      expect(spans[0].exception).to.equal(failure)
      expect(spans[0].attributes).to.deep.equal({
        'http.request.method': 'GET',
        'http.route': '/k',
        'cachet.key': '/k#h',
        'cachet.outcome': 'MISS',
        'cachet.stored': false,
      })
      expect(spans[0].endTime).to.be.at.least(spans[0].startTime)
    })
  })
})
