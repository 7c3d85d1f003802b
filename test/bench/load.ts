/** Load generation: autocannon with exact per-request latencies, plus small HTTP helpers for filling caches and bursts. */
import http from 'node:http'
import autocannon from 'autocannon'

export interface LoadOptions {
  port: number
  /** Path requested by every connection (default `/items/1`). */
  path?: string
  /** When set, every request gets a unique path `${uniquePrefix}${n}` (so every request is a cache MISS). */
  uniquePrefix?: string
  connections: number
  seconds: number
  /** Requests per second over all connections (autocannon overallRate); unset: as fast as possible. */
  rate?: number
  /** Request header fields sent with every request. */
  headers?: Record<string, string>
}

export interface LoadResult {
  requests: number
  seconds: number
  /** 2xx responses per second. */
  rps: number
  /** Latency percentiles in milliseconds (exact, from per-request timings, not autocannon's 1 ms histogram). */
  p50: number
  p99: number
  max: number
  non2xx: number
  errors: number
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank]
}

export function median(values: number[]): number {
  const finite = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (finite.length === 0) return NaN
  const mid = finite.length >> 1
  return finite.length % 2 ? finite[mid] : (finite[mid - 1] + finite[mid]) / 2
}

export function runLoad(options: LoadOptions): Promise<LoadResult> {
  let counter = 0
  const prefix = options.uniquePrefix
  const request: autocannon.Request = { method: 'GET', path: options.path ?? '/items/1', ...(options.headers ? { headers: options.headers } : {}) }
  if (prefix !== undefined) request.setupRequest = (req) => ({ ...req, path: `${prefix}${counter++}` })
  const latencies: number[] = []
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${options.port}`,
        connections: options.connections,
        duration: options.seconds,
        timeout: 10,
        ...(options.rate ? { overallRate: options.rate } : {}),
        requests: [request],
      },
      (error, result) => {
        if (error) return reject(error)
        const sorted = Float64Array.from(latencies).sort()
        const ok = result['2xx']
        resolve({
          requests: ok,
          seconds: result.duration,
          rps: ok / result.duration,
          p50: percentile(sorted, 50),
          p99: percentile(sorted, 99),
          max: sorted.length ? sorted[sorted.length - 1] : NaN,
          non2xx: result.non2xx,
          errors: result.errors + result.timeouts,
        })
      },
    )
    instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      if (status >= 200 && status < 300) latencies.push(ms)
    })
  })
}

export interface Probe {
  status: number
  headers: http.IncomingHttpHeaders
  bytes: number
}

export function get(port: number, path: string, agent?: http.Agent, headers?: Record<string, string>): Promise<Probe> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent, headers }, (res) => {
      let bytes = 0
      res.on('data', (chunk: Buffer) => (bytes += chunk.length))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes }))
      res.on('error', reject)
    })
    req.on('error', reject)
  })
}

/** Request `count` paths with `concurrency` keep-alive connections; resolves non-2xx count. */
export async function fill(port: number, count: number, pathOf: (i: number) => string, concurrency = 32): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency })
  let next = 0
  let failures = 0
  const worker = async () => {
    while (next < count) {
      const probe = await get(port, pathOf(next++), agent)
      if (probe.status < 200 || probe.status >= 300) failures++
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  agent.destroy()
  return failures
}

/**
 * Open `n` keep-alive sockets (one request each to unique warm-up paths), then send `n` simultaneous
 * requests to `path` over them. Returns the X-Cache header values seen.
 */
export async function burst(port: number, path: string, n: number, afterWarm: () => Promise<void>): Promise<string[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: n })
  await Promise.all(Array.from({ length: n }, (_, i) => get(port, `/warm/${i}`, agent)))
  await afterWarm()
  const probes = await Promise.all(Array.from({ length: n }, () => get(port, path, agent)))
  agent.destroy()
  return probes.map((p) => String(p.headers['x-cache'] ?? p.status))
}

export interface PacedSample {
  /** performance.now() when the request was sent. */
  start: number
  latency: number
  /** The X-Cache header of the answer, else its status code. */
  outcome: string
}

/**
 * A steady open-ish load: `connections` keep-alive connections, each sending a request every
 * `connections / rate` seconds (or as soon as the previous answer arrives when late). Unlike
 * autocannon's per-second bursts, requests are spread evenly, so a short stall is seen.
 */
export async function pacedLoad(options: {
  port: number
  /** One path, or the path of the n-th request sent. */
  path: string | ((n: number) => string)
  connections: number
  rate: number
  seconds: number
}): Promise<PacedSample[]> {
  const pathOf = typeof options.path === 'string' ? () => options.path as string : options.path
  let sent = 0
  const agent = new http.Agent({ keepAlive: true, maxSockets: options.connections })
  const interval = (1000 * options.connections) / options.rate
  const end = performance.now() + options.seconds * 1000
  const samples: PacedSample[] = []
  const worker = async (index: number) => {
    let next = performance.now() + (index * interval) / options.connections
    while (next < end) {
      const wait = next - performance.now()
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
      const start = performance.now()
      const probe = await get(options.port, pathOf(sent++), agent)
      samples.push({ start, latency: performance.now() - start, outcome: String(probe.headers['x-cache'] ?? probe.status) })
      next = Math.max(next + interval, performance.now())
    }
  }
  await Promise.all(Array.from({ length: options.connections }, (_, i) => worker(i)))
  agent.destroy()
  return samples
}
