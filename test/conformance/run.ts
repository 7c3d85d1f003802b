// Runs the http-cache-tests suite in-process against a cache middleware (shape B) and summarises it with the suite's own verdict logic.
import http from 'node:http'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import express from 'express'
import type { RequestHandler } from 'express'
import fetch from 'node-fetch'
import type { FetchInit, FetchResponse } from 'node-fetch'
import baseSuites from 'http-cache-tests/tests/index.mjs'
import surrogateSuite from 'http-cache-tests/tests/surrogate-control.mjs'
import { determineTestResult } from 'http-cache-tests/lib/display.mjs'
import * as clientConfig from 'http-cache-tests/client/config.mjs'
import { makeCacheTest, testResults, testUUIDs } from 'http-cache-tests/client/test.mjs'
import handleConfig from 'http-cache-tests/server/handle-config.mjs'
import handleTest from 'http-cache-tests/server/handle-test.mjs'
import handleState from 'http-cache-tests/server/handle-state.mjs'
import { configs, stash } from 'http-cache-tests/server/utils.mjs'
import publishedIndex from 'http-cache-tests/results/index.mjs'
import type { RawResult, RawResults, SuiteSpec, TestSpec } from 'http-cache-tests/types'

/** A Connect/Express middleware: the cache under test. */
export type Middleware = RequestHandler | ((req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => unknown)

/** The suite's result types (lib/display.mjs `resultTypes`), named. */
export type Verdict = 'pass' | 'fail' | 'optional_fail' | 'yes' | 'no' | 'setup_fail' | 'harness_fail' | 'dependency_fail' | 'retry' | 'untested'

/** display.mjs returns one of its resultTypes arrays; its third member (the console symbol) names it uniquely. */
const VERDICT_BY_SYMBOL: Record<string, Verdict> = {
  '✅': 'pass',
  '⛔️': 'fail',
  '⚠️': 'optional_fail',
  Y: 'yes',
  N: 'no',
  '🔹': 'setup_fail',
  '⁉️': 'harness_fail',
  '⚪️': 'dependency_fail',
  '↻': 'retry',
  '-': 'untested',
}

export const VERDICT_SYMBOL: Record<Verdict, string> = Object.fromEntries(
  Object.entries(VERDICT_BY_SYMBOL).map(([symbol, verdict]) => [verdict, symbol]),
) as Record<Verdict, string>

export interface TestOutcome {
  id: string
  name: string
  suite: string
  /** `required` when the definition has no kind, as in display.mjs. */
  kind: 'required' | 'optimal' | 'check'
  verdict: Verdict
  /** The raw result recorded by client/test.mjs (`true` or `[errorName, message]`). */
  raw: RawResult | undefined
  /** The failure message, if any. */
  message?: string
  /** For dependency failures: the dependencies that did not pass. */
  failedDependencies?: string[]
}

export interface HarnessError {
  id?: string
  message: string
}

export interface Summary {
  label: string
  baseUrl?: string
  durationMs: number
  /** Tests evaluated (the suite minus browser-only tests, or the --grep selection and its dependencies). */
  total: number
  requiredTotal: number
  counts: Record<Verdict, number>
  /** Verdict `pass` (required and optimal tests that passed; checks are counted as yes/no). */
  pass: number
  /** Required tests with verdict `fail`. */
  requiredFailures: TestOutcome[]
  /** Optimal tests with verdict `optional_fail`. */
  optionalFailures: TestOutcome[]
  dependencyFailures: TestOutcome[]
  /** Verdicts `setup_fail` and `retry`: the cache interfered with a setup step or retried a request. */
  setupFailures: TestOutcome[]
  /**
   * Harness problems: the preflight through the cache failed, a test produced no result, or a test
   * ended with an error that is not one of the suite's assertions (network error, timeout, exception).
   */
  harnessErrors: HarnessError[]
  /** What the suite's origin logged as `SERVER WARNING` (unexpected requests, missing state), captured. */
  serverWarnings: string[]
  /** The verdict of `freshness-none` (a check: `yes` means "did not store a response without freshness"). */
  freshnessNone: Verdict
  outcomes: TestOutcome[]
  raw: RawResults
}

export interface RunOptions {
  middleware: Middleware
  label: string
  /** Only tests whose id matches (substring, or /regex/); their dependencies are run too. */
  grep?: string
  /** Log requests and responses of the selected tests (the suite's own dump, client and server side). */
  dump?: boolean
  /** Tests started concurrently (the suite's runner uses 100). */
  chunkSize?: number
  /** Per-request client timeout in ms, so a hanging cache fails a test instead of the run. */
  requestTimeoutMs?: number
}

/** A fresh deep copy of the suite as the CLI runs it (base tests + surrogate-control): the client mutates definitions. */
export function loadSuites(): SuiteSpec[] {
  return JSON.parse(JSON.stringify([...baseSuites, surrogateSuite])) as SuiteSpec[]
}

export function allTests(suites: SuiteSpec[]): { test: TestSpec; suite: SuiteSpec }[] {
  return suites.flatMap((suite) => suite.tests.map((test) => ({ test, suite })))
}

/** Tests the CLI runs against a proxy: everything but browser-only tests. */
export function proxyTests(suites: SuiteSpec[]): { test: TestSpec; suite: SuiteSpec }[] {
  return allTests(suites).filter(({ test }) => test.browser_only !== true)
}

export function kindOf(test: TestSpec): 'required' | 'optimal' | 'check' {
  return test.kind ?? 'required'
}

function matcher(grep: string): (id: string) => boolean {
  const rx = /^\/(.*)\/([a-z]*)$/.exec(grep)
  if (rx) {
    const re = new RegExp(rx[1], rx[2])
    return (id) => re.test(id)
  }
  return (id) => id.includes(grep)
}

/** The selected tests plus, transitively, the tests they depend on (so dependency verdicts stay meaningful). */
export function selectTests(suites: SuiteSpec[], grep?: string): { test: TestSpec; suite: SuiteSpec }[] {
  const candidates = proxyTests(suites)
  if (grep === undefined || grep === '') return candidates
  const byId = new Map(candidates.map((entry) => [entry.test.id, entry]))
  const wanted = new Set<string>()
  const add = (id: string): void => {
    if (wanted.has(id) || !byId.has(id)) return
    wanted.add(id)
    for (const dep of byId.get(id)?.test.depends_on ?? []) add(dep)
  }
  const match = matcher(grep)
  for (const { test } of candidates) if (match(test.id)) add(test.id)
  return candidates.filter(({ test }) => wanted.has(test.id))
}

function messageOf(raw: RawResult | undefined): string | undefined {
  return Array.isArray(raw) ? `${raw[0]}: ${raw[1]}` : undefined
}

/**
 * Classify results with the suite's own determineTestResult (dependencies honoured, as on cache-tests.fyi)
 * and total them. Used for our runs and for the published results in results/*.json alike.
 */
export function summarise(
  label: string,
  suites: SuiteSpec[],
  selected: { test: TestSpec; suite: SuiteSpec }[],
  raw: RawResults,
  extra: { harnessErrors?: HarnessError[]; durationMs?: number; baseUrl?: string; serverWarnings?: string[] } = {},
): Summary {
  const counts = Object.fromEntries(Object.values(VERDICT_BY_SYMBOL).map((v) => [v, 0])) as Record<Verdict, number>
  const outcomes: TestOutcome[] = []
  const harnessErrors: HarnessError[] = [...(extra.harnessErrors ?? [])]
  const verdictOf = (id: string): Verdict => {
    const symbol = determineTestResult(suites, id, raw, true)[2]
    const verdict = VERDICT_BY_SYMBOL[symbol]
    if (verdict === undefined) throw new Error(`Unknown result symbol ${symbol} for ${id}`)
    return verdict
  }
  for (const { test, suite } of selected) {
    const result = raw[test.id]
    const verdict = verdictOf(test.id)
    const outcome: TestOutcome = {
      id: test.id,
      name: test.name,
      suite: suite.name,
      kind: kindOf(test),
      verdict,
      raw: result,
      message: messageOf(result),
    }
    if (verdict === 'dependency_fail') {
      outcome.failedDependencies = (test.depends_on ?? []).filter((dep) => !['pass', 'yes'].includes(verdictOf(dep)))
    }
    counts[verdict]++
    outcomes.push(outcome)
    if (Array.isArray(result) && result[0] !== 'Assertion' && result[0] !== 'Setup') {
      harnessErrors.push({ id: test.id, message: `${result[0]}: ${result[1]}` })
    }
  }
  const freshnessNone =
    outcomes.find((o) => o.id === 'freshness-none')?.verdict ?? (raw['freshness-none'] === undefined ? 'untested' : verdictOf('freshness-none'))
  return {
    label,
    baseUrl: extra.baseUrl,
    durationMs: extra.durationMs ?? 0,
    total: outcomes.length,
    requiredTotal: outcomes.filter((o) => o.kind === 'required').length,
    counts,
    pass: counts.pass,
    requiredFailures: outcomes.filter((o) => o.verdict === 'fail'),
    optionalFailures: outcomes.filter((o) => o.verdict === 'optional_fail'),
    dependencyFailures: outcomes.filter((o) => o.verdict === 'dependency_fail'),
    setupFailures: outcomes.filter((o) => o.verdict === 'setup_fail' || o.verdict === 'retry'),
    harnessErrors,
    serverWarnings: extra.serverWarnings ?? [],
    freshnessNone,
    outcomes,
    raw,
  }
}

/**
 * The suite's origin: server/server.mjs `handleMain` minus static files (that module starts its own
 * listener on import, so its handlers are mounted directly).
 */
function originHandler(req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void): void {
  const url = new URL(req.url ?? '/', 'http://127.0.0.1/')
  const pathSegs = url.pathname.split('/')
  pathSegs.shift()
  const dispatch = pathSegs.shift()
  if (dispatch === 'config') handleConfig(pathSegs, req, res)
  else if (dispatch === 'test') frameLikeTheWire(req, res, pathSegs[0], next, () => handleTest(pathSegs, req, res))
  else if (dispatch === 'state') handleState(pathSegs, req, res)
  else {
    res.writeHead(404, { 'Content-Type': 'text/plain' })
    res.end('Not Found\n')
  }
}

/**
 * In the suite's own topology the origin writes to a socket and the cache parses what arrives; here the
 * handler writes straight into the cache middleware. Three test origin behaviours only make sense as
 * wire events, so they are translated into what a next hop would have received:
 * - `disconnect` (the origin drops the connection): an Express handler failure, `next(err)` with a
 *   clean response (no headers set), instead of destroying the client's socket;
 * - a declared `Content-Length` shorter than the body: the message ends after Content-Length bytes
 *   (a proxy discards the rest), instead of leaking extra bytes onto a kept-alive client connection;
 * - a `Transfer-Encoding` that is not chunked: the body is delimited by closing the connection.
 */
function frameLikeTheWire(req: IncomingMessage, res: ServerResponse, uuid: string | undefined, next: (err?: unknown) => void, handle: () => void): void {
  const end = res.end
  res.end = function (this: ServerResponse, ...args: unknown[]) {
    const declared = Number(res.getHeader('content-length'))
    const chunk = args[0]
    if ((typeof chunk === 'string' || chunk instanceof Uint8Array) && Number.isInteger(declared) && declared >= 0) {
      const bytes = Buffer.from(chunk)
      if (bytes.length > declared) args[0] = bytes.subarray(0, declared)
    }
    const te = res.getHeader('transfer-encoding')
    if (te !== undefined && !/(^|,)\s*chunked\s*$/i.test(String(te))) {
      ;(res as unknown as { shouldKeepAlive: boolean }).shouldKeepAlive = false
    }
    return (end as (...a: unknown[]) => ServerResponse).apply(this, args)
  } as ServerResponse['end']
  if (!isDisconnect(req, uuid)) {
    handle()
    return
  }
  // handle-test.mjs then only sets headers and calls response.socket.destroy(), synchronously: intercept that call.
  let disconnected = false
  const socket = res.socket
  const intercept = new Proxy(socket ?? {}, {
    get(target, prop) {
      if (prop === 'destroy')
        return () => {
          disconnected = true
        }
      const value: unknown = Reflect.get(target, prop, target)
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value
    },
  })
  const writable = res as { socket: unknown }
  writable.socket = intercept
  try {
    handle()
  } finally {
    writable.socket = socket
  }
  if (disconnected) {
    for (const name of res.getHeaderNames()) res.removeHeader(name)
    res.statusCode = 200
    next(new Error('origin disconnected (http-cache-tests `disconnect`)'))
  }
}

/** Whether handle-test.mjs will disconnect on this request (its own lookup: Req-Num header, else server count). */
function isDisconnect(req: IncomingMessage, uuid: string | undefined): boolean {
  if (uuid === undefined) return false
  const requests = configs.get(uuid) as { disconnect?: boolean }[] | undefined
  if (requests === undefined) return false
  const seen = (stash.get(uuid) as unknown[] | undefined)?.length ?? 0
  const reqNum = parseInt(String(req.headers['req-num'])) || seen + 1
  return requests[reqNum - 1]?.disconnect === true
}

interface Origin {
  baseUrl: string
  close: () => Promise<void>
}

async function startApp(middleware: Middleware): Promise<Origin> {
  const app = express()
  app.disable('x-powered-by')
  app.use(middleware as RequestHandler)
  app.use(originHandler)
  // What a gateway answers when its origin fails; quiet, unlike Express's default handler.
  app.use((err: unknown, _req: IncomingMessage, res: ServerResponse, _next: (err?: unknown) => void) => {
    if (res.headersSent) {
      res.destroy()
      return
    }
    res.writeHead(502, { 'Content-Type': 'text/plain' })
    res.end(`Bad Gateway: ${(err as Error).message}\n`)
  })
  const server = http.createServer(app)
  server.keepAliveTimeout = 60_000 // longer than the suite's 3 s pauses, so kept-alive sockets never race a close
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as AddressInfo
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

/**
 * Check, through the cache, the plumbing every test relies on: PUT /config is forwarded with its body,
 * /test reaches the origin, and /state reflects each new origin request (never a stored copy).
 */
async function preflight(doFetch: (url: string, init?: FetchInit) => Promise<FetchResponse>, baseUrl: string): Promise<HarnessError[]> {
  const errors: HarnessError[] = []
  const uuid = `preflight-${randomUUID()}`
  const requests = [{ id: 'harness-preflight' }, { id: 'harness-preflight' }]
  try {
    const put = await doFetch(`${baseUrl}/config/${uuid}`, {
      method: 'PUT',
      headers: [['content-type', 'application/json']],
      body: JSON.stringify(requests),
    })
    await put.text()
    if (put.status !== 201) {
      errors.push({ message: `preflight: PUT /config through the cache answered ${put.status}, not 201` })
      return errors
    }
    for (let n = 1; n <= 2; n++) {
      const res = await doFetch(`${baseUrl}/test/${uuid}`, { headers: [['Req-Num', String(n)]] })
      const body = await res.text()
      if (res.status !== 200 || body !== uuid) {
        errors.push({ message: `preflight: GET /test request ${n} answered ${res.status} "${body.slice(0, 80)}"` })
      }
      const stateRes = await doFetch(`${baseUrl}/state/${uuid}`)
      const stateText = await stateRes.text()
      let seen = -1
      try {
        seen = (JSON.parse(stateText) as unknown[]).length
      } catch {}
      if (stateRes.status !== 200 || seen !== n) {
        errors.push({
          message:
            `preflight: GET /state after ${n} origin request(s) answered ${stateRes.status} with ${seen} request(s)` +
            ` (x-cache: ${stateRes.headers.get('x-cache') ?? '-'}): the state endpoint must not be served from cache`,
        })
      }
    }
  } catch (err) {
    errors.push({ message: `preflight: ${(err as Error).message}` })
  } finally {
    configs.delete(uuid)
    stash.delete(uuid)
  }
  return errors
}

/** Run the suite against `middleware` mounted in front of the suite's origin, in this process. */
export async function runConformance(options: RunOptions): Promise<Summary> {
  const started = Date.now()
  const suites = loadSuites()
  const selected = selectTests(suites, options.grep)
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity })
  const timeout = options.requestTimeoutMs ?? 20_000
  const doFetch = (url: string, init: FetchInit = {}): Promise<FetchResponse> => fetch(url, { ...init, agent, timeout })
  const origin = await startApp(options.middleware)
  // server/utils.mjs reports origin-side surprises with console.log('SERVER WARNING: ...'): collect them.
  const serverWarnings: string[] = []
  const log = console.log
  console.log = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && args[0].startsWith('SERVER WARNING: ')) {
      serverWarnings.push(args[0].slice('SERVER WARNING: '.length))
      if (options.dump !== true) return
    }
    log(...args)
  }
  try {
    const harnessErrors = await preflight(doFetch, origin.baseUrl)
    // client/test.mjs keeps results in module state: reset it so runs in one process don't collide.
    for (const key of Object.keys(testResults)) delete testResults[key]
    for (const key of Object.keys(testUUIDs)) delete testUUIDs[key]
    clientConfig.setFetch(doFetch)
    clientConfig.setBaseUrl(origin.baseUrl)
    clientConfig.setUseBrowserCache(false)
    if (options.dump === true && options.grep !== undefined) {
      const match = matcher(options.grep)
      for (const { test } of selected) if (match(test.id)) test.dump = true
    }
    const chunkSize = options.chunkSize ?? 100
    for (let i = 0; i < selected.length; i += chunkSize) {
      await Promise.all(selected.slice(i, i + chunkSize).map(({ test }) => makeCacheTest(test)))
    }
    const raw: RawResults = { ...testResults }
    for (const { test } of selected) {
      if (raw[test.id] === undefined) harnessErrors.push({ id: test.id, message: 'no result recorded' })
    }
    for (const uuid of Object.values(testUUIDs)) {
      configs.delete(uuid)
      stash.delete(uuid)
    }
    return summarise(options.label, suites, selected, raw, {
      harnessErrors,
      durationMs: Date.now() - started,
      baseUrl: origin.baseUrl,
      serverWarnings,
    })
  } finally {
    console.log = log
    agent.destroy()
    await origin.close()
  }
}

/** A readable account of a test definition: each request, what the origin sends, what the client expects. */
export function explainTest(id: string, suites: SuiteSpec[] = loadSuites()): string {
  const found = allTests(suites).find(({ test }) => test.id === id)
  if (found === undefined) return `${id}: no such test`
  const { test, suite } = found
  const show = (value: unknown): string => JSON.stringify(value)
  const lines = [`${test.id} (${kindOf(test)}, ${suite.name}): ${test.name}`]
  if (test.depends_on !== undefined) lines.push(`  depends on: ${test.depends_on.join(', ')}`)
  test.requests.forEach((req, i) => {
    const parts = [`  #${i + 1} ${req.request_method ?? 'GET'}${req.query_arg !== undefined ? ` ?${req.query_arg}` : ''}`]
    if (req.request_headers !== undefined) parts.push(`req ${show(req.request_headers)}`)
    if (req.response_status !== undefined) parts.push(`origin ${req.response_status.join(' ')}`)
    if (req.response_headers !== undefined) parts.push(`origin headers ${show(req.response_headers)}`)
    if (req.response_body !== undefined) parts.push(`origin body ${show(req.response_body)}`)
    if (req.disconnect === true) parts.push('origin disconnects')
    for (const key of Object.keys(req).filter((k) => k.startsWith('expected_'))) parts.push(`${key} ${show(req[key])}`)
    if (req.setup === true) parts.push('(setup)')
    else if (req.setup_tests !== undefined) parts.push(`(setup for ${req.setup_tests.join(', ')})`)
    if (req.pause_after === true) parts.push('then pause 3 s')
    lines.push(parts.join(' | '))
  })
  return lines.join('\n')
}

/**
 * The results the package ships (results/*.json, as shown on cache-tests.fyi) for reverse proxies and
 * CDNs, summarised with the same logic over the same tests as our runs.
 */
export function summarisePublished(types: string[] = ['rev-proxy', 'cdn']): Summary[] {
  const dir = new URL('./results/', `file://${createRequire(import.meta.url).resolve('http-cache-tests/package.json')}`)
  return publishedIndex
    .filter((item) => types.includes(item.type))
    .map((item) => {
      const suites = loadSuites()
      const raw = JSON.parse(readFileSync(new URL(item.file, dir), 'utf8')) as RawResults
      return summarise(`${item.name} ${item.version}`, suites, proxyTests(suites), raw)
    })
}

/** A middleware that caches nothing: the harness must report this as failing the gate. */
export const passThrough: Middleware = (_req: IncomingMessage, _res: ServerResponse, next: (err?: unknown) => void) => {
  next()
}
