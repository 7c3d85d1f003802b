/** Behaviour-test helpers: the counting origin `O`, a fake clock, one-server supertest agents, app builders. */
import http, { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http'
import https from 'node:https'
import { once } from 'node:events'
import net from 'node:net'
import type { AddressInfo } from 'node:net'
import express from 'express'
import express4, { type Express as Express4 } from 'express4'
import connect from 'connect'
import request from 'supertest'
import { responseCache, type ResponseCache } from '../../src/middleware.js'
import type { CacheOptions } from '../../src/options.js'
import { memoryStore, type MemoryStoreOptions } from '../../src/stores/memory.js'
import { hostPart, storageKey } from '../../src/key.js'
import type { Store } from '../../src/types.js'
import { mapStore } from '../../examples/custom-store/store.js'
import { TLS_CERT } from './tls.js'
import { storeFactories as sharedFactories, type CreatedStore, type StoreFactory } from './stores.js'

type Next = (error?: unknown) => void
export type Handler = (req: IncomingMessage, res: ServerResponse, next: Next) => void
export type Agent = ReturnType<typeof request>

// ---------------------------------------------------------------------------------------------
// time

/** A clock tests move by hand; pass `clock.now` to both responseCache({ now }) and memoryStore({ now }). */
export interface Clock {
  now: () => number
  advance(ms: number): void
  set(ms: number): void
}

/** A fake clock starting at a whole second near the real time (so HTTP dates round-trip exactly). */
export function fakeClock(start = Math.floor(Date.now() / 1000) * 1000): Clock {
  let t = start
  return {
    now: () => t,
    advance(ms) {
      t += ms
    },
    set(ms) {
      t = ms
    },
  }
}

/** The real clock, for remote stores whose server-side TTL cannot be moved. */
export function realClock(): Clock {
  let offset = 0
  return {
    now: () => Date.now() + offset,
    advance(ms) {
      offset += ms
    },
    set(ms) {
      offset = ms - Date.now()
    },
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** An IMF-fixdate (RFC 9110 §5.6.7) for an epoch-ms time. */
export const httpDate = (ms: number) => new Date(ms).toUTCString()

// ---------------------------------------------------------------------------------------------
// the origin

export type HeaderScript = Record<string, string | string[]>

/** What the origin answers to one request; anything missing falls back to the origin's defaults. */
export interface Reply {
  status?: number
  headers?: HeaderScript
  /** Body; default `v<calls>`. */
  body?: string | Buffer
  /** Milliseconds to wait before answering. */
  delay?: number
  /** `throw` inside the handler, `next` = next(err), `hang` = never answer. */
  fail?: 'throw' | 'next' | 'hang'
}

export interface Seen {
  method: string
  url: string
  headers: IncomingHttpHeaders
}

/**
 * The checklist's `O`: counts its calls, answers `v<calls>` with scripted status and headers.
 * Set `status`/`headers` for every call, or `script` for per-call answers. Uses node:http only,
 * so it runs under Express 4, Express 5 and connect alike.
 */
export class Origin {
  calls = 0
  status = 200
  headers: HeaderScript = {}
  /** Send a `Date` from the clock (origins do); set false to let the cache record one. */
  sendDate = true
  delay = 0
  /** Per-call override, given the 1-based call number and the request. */
  script: ((n: number, req: IncomingMessage) => Reply | undefined) | undefined
  /** Every request that reached the origin, headers as received. */
  readonly seen: Seen[] = []
  readonly handle: Handler

  constructor(private readonly clock: Clock = realClock()) {
    this.handle = (req, res, next) => this.serve(req, res, next)
  }

  /** Reset counting and script between phases of a test. */
  reset(): void {
    this.calls = 0
    this.seen.length = 0
  }

  private serve(req: IncomingMessage, res: ServerResponse, next: Next): void {
    const n = ++this.calls
    this.seen.push({ method: req.method ?? '', url: req.url ?? '', headers: { ...req.headers } })
    const reply = this.script?.(n, req) ?? {}
    const status = reply.status ?? this.status
    const headers = reply.headers ?? this.headers
    const body = reply.body ?? `v${n}`
    const delay = reply.delay ?? this.delay
    const send = () => {
      if (reply.fail === 'hang') return
      if (reply.fail === 'next') return next(new Error(`origin failed on call ${n}`))
      // A throw after a delay would escape Express: hand it over as next(err) instead.
      if (reply.fail === 'throw') return next(new Error(`origin threw on call ${n}`))
      res.statusCode = status
      const names = Object.keys(headers).map((h) => h.toLowerCase())
      if (!names.includes('content-type')) res.setHeader('Content-Type', 'text/plain; charset=utf-8')
      if (this.sendDate && !names.includes('date')) res.setHeader('Date', httpDate(this.clock.now()))
      for (const [name, value] of Object.entries(headers)) res.setHeader(name, value)
      if (status === 304 || status === 204) res.end()
      else res.end(body)
    }
    if (reply.fail === 'throw' && delay === 0) throw new Error(`origin threw on call ${n}`)
    if (delay > 0) setTimeout(send, delay)
    else send()
  }
}

// ---------------------------------------------------------------------------------------------
// servers

export interface Served {
  server: http.Server
  agent: Agent
  port: number
  /** `127.0.0.1:<port>`: the Host every request of this agent carries. */
  host: string
  close(): Promise<void>
}

/** A server listening on a loopback port: its port, and a close() that ends open connections too. */
export interface Listening {
  port: number
  close(): Promise<void>
}

/** Listen on a free loopback port (node:http or node:https alike). */
export async function listenOn(server: http.Server | https.Server): Promise<Listening> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections?.()
        server.close(() => resolve())
      }),
  }
}

/** Listen once on a loopback port and bind a supertest agent to that one server (one Host). */
export async function serve(app: (req: IncomingMessage, res: ServerResponse) => void): Promise<Served> {
  const server = http.createServer(app)
  const { port, close } = await listenOn(server)
  return { server, agent: request(server), port, host: `127.0.0.1:${port}`, close }
}

/** An Express 5 app. */
export function express5App(): express.Express {
  return express()
}

/** An Express 4 app (the `express4` npm alias). */
export function express4App(): Express4 {
  return express4()
}

/** A plain connect() app, served with node:http. */
export function connectApp(): connect.Server {
  return connect()
}

// ---------------------------------------------------------------------------------------------
// stores

export type { StoreFactory, CreatedStore }

/**
 * Every store the checklist runs on: memory, redis, redis-cluster, memcached, memcached-2 (the shared
 * list of test/support/stores.ts, on real servers started on first use).
 */
export const storeFactories: readonly StoreFactory[] = sharedFactories

/** Whether a factory makes the in-process store (the fake clock then drives its TTLs too). */
export const isMemory = (factory: StoreFactory) => factory.name === 'memory'

// ---------------------------------------------------------------------------------------------
// the standard test app

export interface Harness {
  O: Origin
  clock: Clock
  cache: ResponseCache
  store: Store
  /** What the factory made (remote stores: server handle, prefix, putRaw); undefined for the fake-clock memory store. */
  created: CreatedStore | undefined
  app: express.Express
  agent: Agent
  server: http.Server
  host: string
  port: number
  /** GET with optional headers. */
  get(path: string, headers?: Record<string, string | string[]>): request.Test
  close(): Promise<void>
}

export interface SetupOptions {
  /** Cache options other than store and now. */
  options?: Omit<CacheOptions, 'store' | 'now'>
  /** Use the real clock (remote-store expiry tests). */
  realTime?: boolean
  /** Options of the memory store (memory only). */
  memory?: Omit<MemoryStoreOptions, 'now'>
  /** Middleware mounted before the cache. */
  before?: (app: express.Express) => void
  /** Routes mounted after the cache instead of the catch-all origin. */
  routes?: (app: express.Express, O: Origin) => void
  /** A store to use as it is (instead of creating one from the factory). */
  store?: Store
  /**
   * Another process on the same machine: this harness's fake clock starts where that one's is
   * now, as two processes' clocks agree (each otherwise starts at the whole second it was made in,
   * and a second may pass between two set-ups).
   */
  clockFrom?: Harness
}

const open = new Set<Harness>()

/** Close every harness a test left open (called from an afterEach in each suite). */
export async function closeAll(): Promise<void> {
  const all = [...open]
  open.clear()
  await Promise.all(all.map((h) => h.close()))
}

/**
 * Express 5 app: [before] → responseCache({ store, now }) → [routes | O for every path and method],
 * on one server. A fresh store per call (memory: driven by the same fake clock).
 */
export async function setup(factory: StoreFactory, opts: SetupOptions = {}): Promise<Harness> {
  const clock = opts.realTime ? realClock() : fakeClock(opts.clockFrom?.clock.now())
  // The memory store runs on the same fake clock as the cache, so its TTLs move with it.
  const created = opts.store !== undefined || isMemory(factory) ? undefined : await factory.create()
  const store = opts.store ?? created?.store ?? memoryStore({ ...opts.memory, now: clock.now })
  const cache = responseCache({ ...opts.options, store, now: clock.now })
  const O = new Origin(clock)
  const app = express()
  opts.before?.(app)
  app.use(cache)
  if (opts.routes) opts.routes(app, O)
  else app.use(O.handle)
  // Errors (next(err), thrown) end as a plain 500 without a stack trace in the output.
  app.use((error: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    void error
    if (!res.headersSent) res.status(500).type('text/plain').send('origin error')
    else res.end()
  })
  const served = await serve(app)
  let closed = false
  const h: Harness = {
    O,
    clock,
    cache,
    store,
    created,
    app,
    agent: served.agent,
    server: served.server,
    host: served.host,
    port: served.port,
    get(path, headers = {}) {
      let r = served.agent.get(path)
      for (const [name, value] of Object.entries(headers)) r = r.set(name, value as string)
      return r
    },
    async close() {
      if (closed) return
      closed = true
      open.delete(h)
      await served.close()
      try {
        if (created !== undefined) await created.cleanup()
        else await cache.clear()
      } catch {
        // a stopped server: nothing left to clean
      }
      try {
        await cache.close()
      } catch {
        // already closed by cleanup(), or a dead connection
      }
    },
  }
  open.add(h)
  return h
}

/** Numbers only: the value of an integer header, or NaN. */
export function intHeader(res: request.Response, name: string): number {
  const v = res.headers[name.toLowerCase()]
  return typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : NaN
}

export interface RawResponse {
  status: number
  /** Name/value pairs exactly as received, duplicates kept. */
  rawHeaders: string[]
  body: Buffer
}

/** What getText() resolves: status, headers and the body as text. */
export interface TextResponse {
  status: number
  headers: IncomingHttpHeaders
  body: string
}

/**
 * GET on node:http, or over TLS trusting the test certificate (`tls: true`). Not fetch(): it adds
 * `Cache-Control: no-cache` to a conditional request, as the Fetch standard asks.
 */
export function getText(port: number, path: string, options: { headers?: http.OutgoingHttpHeaders; tls?: boolean } = {}): Promise<TextResponse> {
  return new Promise((resolve, reject) => {
    const target = { host: '127.0.0.1', port, path, headers: options.headers ?? {}, agent: false as const }
    const answered = (res: IncomingMessage) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }))
      res.on('error', reject)
    }
    const req = options.tls ? https.get({ ...target, ca: TLS_CERT }, answered) : http.get(target, answered)
    req.on('error', reject)
  })
}

/** A request on node:http, for checks supertest hides (duplicate header lines). */
export function rawRequest(
  port: number,
  path: string,
  headers: Record<string, string | string[]> = {},
  method = 'GET',
  body?: string | Buffer,
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** Every value of a header in a raw header list. */
export function rawValues(rawHeaders: string[], name: string): string[] {
  const out: string[] = []
  for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i].toLowerCase() === name.toLowerCase()) out.push(rawHeaders[i + 1])
  return out
}

/** supertest parser: collect a response body as raw bytes, whatever its Content-Type. */
export function binary(res: request.Response, callback: (error: Error | null, body: Buffer) => void): void {
  const chunks: Buffer[] = []
  res.on('data', (chunk: Buffer) => chunks.push(chunk))
  res.on('end', () => callback(null, Buffer.concat(chunks)))
}

/**
 * Send one request written byte for byte on a fresh socket (for header names no client library
 * will send as given, such as `__proto__`), and read the whole response (`Connection: close`).
 */
export function wireRequest(port: number, path: string, headerLines: string[] = []): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write([`GET ${path} HTTP/1.1`, `Host: 127.0.0.1:${port}`, ...headerLines, 'Connection: close', '', ''].join('\r\n'))
    })
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('error', reject)
    socket.on('end', () => {
      const all = Buffer.concat(chunks)
      const split = all.indexOf('\r\n\r\n')
      const head = all.subarray(0, split).toString('latin1').split('\r\n')
      const status = Number(head[0].split(' ')[1])
      const rawHeaders: string[] = []
      for (const line of head.slice(1)) {
        const colon = line.indexOf(':')
        rawHeaders.push(line.slice(0, colon), line.slice(colon + 1).trim())
      }
      let body: Buffer = all.subarray(split + 4)
      if (rawValues(rawHeaders, 'transfer-encoding').includes('chunked')) body = unchunk(body)
      resolve({ status, rawHeaders, body })
    })
  })
}

function unchunk(data: Buffer): Buffer {
  const out: Buffer[] = []
  let at = 0
  for (;;) {
    const eol = data.indexOf('\r\n', at)
    const size = parseInt(data.subarray(at, eol).toString('latin1'), 16)
    if (!size) break
    out.push(data.subarray(eol + 2, eol + 2 + size))
    at = eol + 2 + size + 2
  }
  return Buffer.concat(out)
}

/** A byte store whose reads answer at once and whose writes land `ms` later (a slow network). */
export function slowWrites(ms: number): Store & { settled(): Promise<void> } {
  const inner = mapStore()
  let pending = 0
  const later = <T>(run: () => T) => {
    pending++
    return new Promise<T>((resolve) =>
      setTimeout(() => {
        pending--
        resolve(run())
      }, ms),
    )
  }
  return {
    ...inner,
    get: async (key) => inner.get(key),
    set: (key, value, ttlMs) => later(() => inner.set(key, value, ttlMs)),
    delete: (key) => later(() => inner.delete(key)),
    /** Resolves once no write has been on its way for two polls in a row. */
    async settled() {
      for (let quiet = 0; quiet < 2; quiet = pending === 0 ? quiet + 1 : 0) await sleep(ms * 2)
    },
  }
}

/**
 * Resolves once the entry a request through `h` stored under `primary` is in the backend itself,
 * not only on its way there (a loaded machine can hold a write back for a while).
 */
export async function landed(h: Harness, primary: string, host = h.host, timeoutMs = 3000): Promise<void> {
  await storeHolds(h, storageKey(primary, hostPart(host)), true, timeoutMs)
}

/** Resolves once the backend of `h` holds (or no longer holds) `key`; rejects after `timeoutMs`. */
export async function storeHolds(h: Harness, key: string, present: boolean, timeoutMs = 3000): Promise<void> {
  const until = Date.now() + timeoutMs
  for (;;) {
    const bytes = await h.store.get(key)
    if ((bytes !== undefined && bytes !== null) === present) return
    if (Date.now() > until) throw new Error(`${key} still ${present ? 'missing from' : 'in'} the store after ${timeoutMs} ms`)
    await sleep(10)
  }
}

/** Resolves once `check()` holds (polling every 10 ms); rejects naming `what` after `timeoutMs`. */
export async function eventually(check: () => boolean | Promise<boolean>, what = 'the condition', timeoutMs = 3000): Promise<void> {
  const until = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(10)
  }
}
