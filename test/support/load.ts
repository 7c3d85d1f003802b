/** A bounded HTTP load generator on node:http keep-alive agents, 127.0.0.1 only, that checks every response. */
import http from 'node:http'

/** One request the generator sends. */
export interface LoadRequest {
  method: string
  path: string
  headers?: Record<string, string>
  /** Anything the checker needs to know about what was asked. */
  meta?: unknown
}

/** One response as the generator received it. */
export interface LoadResponse {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
  /** Milliseconds from sending the request to the end of the response. */
  latency: number
}

export interface LoadOptions {
  /** Port of the server under test on 127.0.0.1. */
  port: number
  /** Concurrent keep-alive connections (one request in flight on each). */
  connections: number
  /** Requests to send in all. */
  requests: number
  /** The `i`-th request (0-based). */
  next(i: number): LoadRequest
  /** Returns a description of what is wrong with the response, or undefined when it is right. */
  check(request: LoadRequest, response: LoadResponse): string | undefined
  /** A request that has not completed after this long counts as a hang and is aborted. @default 10_000 */
  requestTimeoutMs?: number
  /** The whole run stops sending after this long, whatever is left. @default 120_000 */
  maxDurationMs?: number
  /** Called after each completed request (for phase changes in fault tests). */
  onResponse?(i: number, request: LoadRequest, response: LoadResponse): void
}

export interface LoadResult {
  /** Requests sent (≤ `requests` when the run hit `maxDurationMs`). */
  sent: number
  /** Requests that got a complete response. */
  completed: number
  /** Responses the checker rejected. */
  wrong: number
  /** Requests that ended in a socket or parse error. */
  errors: number
  /** Requests aborted by the per-request timeout. */
  hangs: number
  /** Responses per status code. */
  statuses: Record<number, number>
  /** Responses per `X-Cache` value (`none` when absent). */
  cache: Record<string, number>
  /** The first few failures, for the assertion message. */
  samples: string[]
  latency: { max: number; p50: number; p99: number; mean: number }
  durationMs: number
  /** Completed requests per second. */
  rate: number
  /** True when the run stopped on `maxDurationMs` rather than on the request count. */
  timedOut: boolean
}

const MAX_SAMPLES = 10

/**
 * Send `requests` requests over `connections` keep-alive connections to 127.0.0.1:`port` and
 * check each response. Bounded twice: by the request count and by `maxDurationMs`; every request
 * has its own timeout, so the run always ends by itself.
 */
export async function runLoad(options: LoadOptions): Promise<LoadResult> {
  const { port, connections, requests } = options
  if (!Number.isInteger(connections) || connections < 1) throw new TypeError(`connections must be a positive integer, got ${connections}`)
  if (!Number.isInteger(requests) || requests < 0) throw new TypeError(`requests must be an integer ≥ 0, got ${requests}`)
  const requestTimeoutMs = options.requestTimeoutMs ?? 10_000
  const maxDurationMs = options.maxDurationMs ?? 120_000
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections, maxFreeSockets: connections })
  const result: LoadResult = {
    sent: 0,
    completed: 0,
    wrong: 0,
    errors: 0,
    hangs: 0,
    statuses: {},
    cache: {},
    samples: [],
    latency: { max: 0, p50: 0, p99: 0, mean: 0 },
    durationMs: 0,
    rate: 0,
    timedOut: false,
  }
  const latencies = new Float64Array(requests)
  const started = performance.now()
  const deadline = started + maxDurationMs
  let cursor = 0

  const fail = (what: string) => {
    if (result.samples.length < MAX_SAMPLES) result.samples.push(what)
  }

  const one = (i: number): Promise<void> => {
    const request = options.next(i)
    result.sent++
    const t0 = performance.now()
    return new Promise<void>((resolve) => {
      let finished = false
      const finish = () => {
        if (finished) return
        finished = true
        clearTimeout(timer)
        resolve()
      }
      const req = http.request({ host: '127.0.0.1', port, method: request.method, path: request.path, headers: request.headers, agent }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('error', (error) => {
          result.errors++
          fail(`${request.method} ${request.path}: response error ${error.message}`)
          finish()
        })
        res.on('end', () => {
          if (finished) return
          const latency = performance.now() - t0
          latencies[result.completed] = latency
          result.completed++
          const status = res.statusCode ?? 0
          result.statuses[status] = (result.statuses[status] ?? 0) + 1
          const label = String(res.headers['x-cache'] ?? 'none')
          result.cache[label] = (result.cache[label] ?? 0) + 1
          const response: LoadResponse = { status, headers: res.headers, body: Buffer.concat(chunks), latency }
          let problem: string | undefined
          try {
            problem = options.check(request, response)
          } catch (error) {
            problem = `checker threw: ${(error as Error).message}`
          }
          if (problem !== undefined) {
            result.wrong++
            fail(`${request.method} ${request.path} ${JSON.stringify(request.headers ?? {})} → ${status} ${label}: ${problem}`)
          }
          options.onResponse?.(i, request, response)
          finish()
        })
      })
      const timer = setTimeout(() => {
        if (finished) return
        result.hangs++
        fail(`${request.method} ${request.path}: no response after ${requestTimeoutMs} ms`)
        req.destroy()
        finish()
      }, requestTimeoutMs)
      req.on('error', (error) => {
        if (finished) return
        result.errors++
        fail(`${request.method} ${request.path}: ${error.message}`)
        finish()
      })
      req.end()
    })
  }

  const worker = async () => {
    for (;;) {
      if (cursor >= requests) return
      if (performance.now() > deadline) {
        result.timedOut = true
        return
      }
      await one(cursor++)
    }
  }

  try {
    await Promise.all(Array.from({ length: Math.min(connections, Math.max(requests, 1)) }, worker))
  } finally {
    agent.destroy()
  }

  result.durationMs = performance.now() - started
  result.rate = result.completed / (result.durationMs / 1000)
  const done = latencies.subarray(0, result.completed).sort()
  if (done.length > 0) {
    let sum = 0
    for (const l of done) sum += l
    result.latency = {
      max: done[done.length - 1],
      p50: done[Math.floor(done.length * 0.5)],
      p99: done[Math.min(done.length - 1, Math.floor(done.length * 0.99))],
      mean: sum / done.length,
    }
  }
  return result
}

/** One line for logs: counts, cache labels, latency. */
export function summarize(name: string, r: LoadResult): string {
  const cache = Object.entries(r.cache)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ')
  const statuses = Object.entries(r.statuses)
    .map(([k, v]) => `${k}×${v}`)
    .join(' ')
  return (
    `${name}: ${r.completed}/${r.sent} completed in ${(r.durationMs / 1000).toFixed(1)} s (${Math.round(r.rate)} req/s); ` +
    `wrong ${r.wrong}, errors ${r.errors}, hangs ${r.hangs}; status ${statuses}; ${cache}; ` +
    `latency p50 ${r.latency.p50.toFixed(1)} ms, p99 ${r.latency.p99.toFixed(1)} ms, max ${r.latency.max.toFixed(1)} ms`
  )
}

/** An integer from the environment, or the fallback. */
export function envInt(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isSafeInteger(n) || n < 0) throw new TypeError(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`)
  return n
}
