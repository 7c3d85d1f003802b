/** One benchmark server process: `node --import tsx test/bench/server.ts <variant> <bodyBytes> [--delay ms] [--redis host:port] [--memcached host:port] [--postgres url] [--dynamodb url] [--max-entries n] [--cachet built/index.js]`. */
import diagnostics from 'node:diagnostics_channel'
import http from 'node:http'
import { randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import express from 'express'
import express4 from 'express4'
import connect from 'connect'
import { findVariant, makeBody, type Variant } from './variants.js'
import type { Command, Reply } from './protocol.js'

type Next = (error?: unknown) => void
type Handler = (req: http.IncomingMessage, res: http.ServerResponse, next: Next) => void

/** The part of cachet's public API the benchmark uses (loaded at run time: the middleware may not exist yet). */
interface CachetApi {
  responseCache(options: Record<string, unknown>): Handler & {
    invalidate?(pattern: string): unknown
    stats?(): unknown
    close?(): unknown
  }
  invalidate?(pattern: string): unknown
  invalidateTags?(tags: string[]): Promise<void>
  memoryStore(options?: Record<string, unknown>): unknown
  redisStore(options: Record<string, unknown>): unknown
  memcachedStore(options: Record<string, unknown>): unknown
  sqliteStore?(options: Record<string, unknown>): unknown
  postgresStore?(options: Record<string, unknown>): unknown
  dynamodbStore?(options: Record<string, unknown>): unknown
  jsonCoder(): unknown
  msgpackCoder(): unknown
}

/** The variant cannot run here (missing package, middleware or store not implemented yet). */
class Skip extends Error {}

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    delay: { type: 'string', default: '5' },
    redis: { type: 'string' },
    memcached: { type: 'string' },
    postgres: { type: 'string' },
    dynamodb: { type: 'string' },
    'max-entries': { type: 'string' },
    cachet: { type: 'string' },
  },
})
const variant = findVariant(positionals[0] ?? '')
const bodyBytes = Number(positionals[1] ?? 1024)
const delayMs = Number(values.delay)
const body = makeBody(bodyBytes)
const jsonType = 'application/json; charset=utf-8'
const rawHeaders = { 'Content-Type': jsonType, 'Content-Length': String(body.buffer.length) }

let originCalls = 0
let cacheErrors = 0
let lastCacheError: string | undefined
/** Bytes of the last response write that landed, per key, from the store-write channel (README "Metrics and tracing"). */
const written = new Map<string, number>()
/** SQL and DynamoDB variants: store reads since the last reset, by outcome (the store-read channel). */
let storeReads: { hit: number; miss: number; error: number } | undefined
let cache: ReturnType<CachetApi['responseCache']> | undefined
let cachet: CachetApi | undefined
const closers: (() => unknown)[] = []

/** The origin: a simulated database call, then the precomputed body (tagged `items item:<id>` for a tags variant). */
function origin(sendBody: (res: http.ServerResponse) => void): Handler {
  return (req, res) => {
    originCalls++
    if (variant.tags) res.setHeader('Surrogate-Key', `items item:${req.url?.split('/')[2] ?? ''}`)
    if (delayMs > 0) setTimeout(() => sendBody(res), delayMs)
    else sendBody(res)
  }
}
const expressJson = origin((res) => (res as express.Response).json(body.object))
const plainJson = origin((res) => {
  res.setHeader('Content-Type', jsonType)
  res.end(body.text)
})
const precomputed: Handler = (_req, res) => {
  res.writeHead(200, rawHeaders)
  res.end(body.buffer)
}

async function loadCachet(): Promise<CachetApi> {
  // The runner passes cachet built as it is published (no tsx transform in the measured code).
  const entry = values.cachet ?? fileURLToPath(new URL('../../src/index.ts', import.meta.url))
  if (!existsSync(entry)) throw new Skip(`cachet not available yet: ${entry} does not exist`)
  const specifier = values.cachet ? pathToFileURL(values.cachet).href : '../../src/index.js'
  let api: Partial<CachetApi>
  try {
    api = (await import(specifier)) as Partial<CachetApi>
  } catch (error) {
    throw new Skip(`cachet does not load yet: ${String((error as Error).message).split('\n')[0]}`)
  }
  if (typeof api.responseCache !== 'function') throw new Skip('cachet not available yet: src/index.ts does not export responseCache')
  return api as CachetApi
}

async function cachetMiddleware(v: Variant): Promise<Handler> {
  cachet = await loadCachet()
  const api = cachet
  // The SDK's notice about future Node versions is not a benchmark result: keep it out of the run's output.
  if (v.store === 'dynamodb') process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  const { DynamoDBClient } = v.store === 'dynamodb' ? await import('@aws-sdk/client-dynamodb') : { DynamoDBClient: undefined }
  const store = (() => {
    try {
      if (v.store === 'redis') {
        if (!values.redis) throw new Skip('no Redis server available')
        return api.redisStore({ url: `redis://${values.redis}`, ...(v.local ? { local: {} } : {}) })
      }
      if (v.store === 'memcached') {
        if (!values.memcached) throw new Skip('no memcached server available')
        return api.memcachedStore({ servers: [values.memcached], ...(v.local ? { local: {} } : {}) })
      }
      // Each server its own prefix: the store starts cold without a flush (the SQL tables and dynalite are shared by the run).
      const prefix = `bench${randomUUID().slice(0, 8)}:`
      if (v.store === 'sqlite') {
        if (!api.sqliteStore) throw new Skip('cachet has no sqliteStore')
        const dir = mkdtempSync(path.join(os.tmpdir(), 'cachet-bench-sqlite-'))
        closers.push(() => rmSync(dir, { recursive: true, force: true }))
        return api.sqliteStore({ path: path.join(dir, 'cache.db') })
      }
      if (v.store === 'postgres') {
        if (!values.postgres) throw new Skip('no PostgreSQL server available')
        if (!api.postgresStore) throw new Skip('cachet has no postgresStore')
        return api.postgresStore({ connectionString: values.postgres, prefix })
      }
      if (v.store === 'dynamodb') {
        if (!values.dynamodb) throw new Skip('no DynamoDB-compatible server available')
        if (!api.dynamodbStore || !DynamoDBClient) throw new Skip('cachet has no dynamodbStore')
        const client = new DynamoDBClient({ endpoint: values.dynamodb, region: 'us-east-1', credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' } })
        closers.push(() => client.destroy())
        return api.dynamodbStore({ client, table: 'cachet_bench', prefix })
      }
      const maxEntries = values['max-entries'] ? Number(values['max-entries']) : undefined
      return api.memoryStore(maxEntries ? { maxEntries, maxBytes: 4 * 1024 ** 3 } : {})
    } catch (error) {
      if (error instanceof Skip) throw error
      throw new Skip(`cachet ${v.store}Store: ${String((error as Error).message).split('\n')[0]}`)
    }
  })()
  const coder = v.coder === 'msgpack' ? api.msgpackCoder() : api.jsonCoder()
  const onError = (error: unknown) => {
    cacheErrors++
    lastCacheError = error instanceof Error ? error.message : String(error)
  }
  // A byte store reports no size of its own: the compressed-storage rows read what each response write sent it.
  if ((v.compress !== undefined || v.acceptEncoding !== undefined) && v.store !== 'memory') {
    diagnostics.subscribe('cachet:store:write', (message) => {
      const { key, outcome, bytes } = message as { key: string; outcome: string; bytes?: number }
      if (outcome === 'landed' && bytes !== undefined) written.set(key, bytes)
    })
  }
  // Whether each HIT really read the store: after a read timed out, requests are answered by the
  // origin, or from the entry of a write still on its way, with no store read.
  if (v.store === 'sqlite' || v.store === 'postgres' || v.store === 'dynamodb') {
    const reads = { hit: 0, miss: 0, error: 0 }
    storeReads = reads
    diagnostics.subscribe('cachet:store:read', (message) => void reads[(message as { outcome: 'hit' | 'miss' | 'error' }).outcome]++)
  }
  cache = api.responseCache({ store, coder, ttl: '5m', onError, ...(v.compress ? { compress: v.compress } : {}) })
  const opened = cache
  closers.push(() => opened.close?.())
  return cache
}

/** cache.serve(app) of the cache under test (the front door). */
function frontDoor(middleware: Handler, app: http.RequestListener): http.RequestListener {
  const serve = (middleware as { serve?: (app: http.RequestListener) => http.RequestListener }).serve
  if (typeof serve !== 'function') throw new Skip('cachet has no cache.serve(app) yet')
  return serve(app)
}

async function apicacheMiddleware(v: Variant): Promise<express.RequestHandler> {
  const { default: apicache } = await import('apicache')
  if (v.store !== 'redis') return apicache.newInstance().middleware('5 minutes')
  if (!values.redis) throw new Skip('no Redis server available')
  const [host, port] = values.redis.split(':')
  const require = createRequire(import.meta.url)
  if (v.apicacheClient === 'redis3') {
    let redisVersion: string
    try {
      redisVersion = (require('redis/package.json') as { version: string }).version
    } catch {
      throw new Skip(
        'missing npm package redis@3 (apicache 1.6.3 needs the node-redis v3 client: it checks client.connected and calls hset/hgetall/expire with callbacks); install with `npm i -D redis@3.1.2`',
      )
    }
    if (!redisVersion.startsWith('3.')) throw new Skip(`apicache 1.6.3 needs redis@3, found redis@${redisVersion}; install redis@3.1.2`)
    const redis = require('redis') as { createClient(o: object): { on(e: string, f: () => void): void; quit(): void } }
    const client = redis.createClient({ host, port: Number(port) })
    await new Promise<void>((resolve) => client.on('ready', resolve))
    closers.push(() => client.quit())
    return apicache.newInstance({ redisClient: client }).middleware('5 minutes')
  }
  // ioredis has no `connected` property; without this getter apicache 1.6.3 never reads from Redis.
  const { Redis } = await import('ioredis')
  const client = new Redis({ host, port: Number(port) })
  await new Promise<void>((resolve) => client.once('ready', () => resolve()))
  Object.defineProperty(client, 'connected', { get: () => client.status === 'ready' })
  closers.push(() => client.disconnect())
  return apicache.newInstance({ redisClient: client }).middleware('5 minutes')
}

async function buildApp(v: Variant): Promise<http.RequestListener> {
  switch (v.kind) {
    case 'raw':
      return (req, res) => precomputed(req, res, () => {})
    case 'ceiling': {
      const app = express()
      app.use(precomputed)
      return app
    }
    case 'send': {
      const app = express()
      app.use((_req, res) => void res.type('json').send(body.text))
      return app
    }
    case 'uncached': {
      const app = express()
      app.use(expressJson)
      return app
    }
    case 'apicache': {
      const app = express()
      app.use(await apicacheMiddleware(v))
      app.use(expressJson)
      return app
    }
    case 'route-cache': {
      const { default: routeCache } = await import('route-cache')
      const app = express()
      app.use(routeCache.cacheSeconds(300), expressJson)
      return app
    }
    case 'cachet': {
      const middleware = await cachetMiddleware(v)
      if (v.framework === 'express5') {
        const app = express()
        app.use(middleware)
        app.use(expressJson)
        return v.frontDoor ? frontDoor(middleware, app) : app
      }
      if (v.framework === 'express4') {
        const app = express4()
        app.use(middleware)
        app.use(expressJson)
        return v.frontDoor ? frontDoor(middleware, app) : app
      }
      const app = connect()
      app.use(middleware)
      app.use(plainJson)
      return app
    }
  }
}

async function gcAndMeasure(): Promise<NodeJS.MemoryUsage> {
  const gc = (globalThis as { gc?: () => void }).gc
  if (!gc) throw new Error('run the server with --expose-gc')
  for (let i = 0; i < 4; i++) {
    gc()
    await new Promise((resolve) => setImmediate(resolve))
  }
  return process.memoryUsage()
}

async function handle(command: Command, server: http.Server): Promise<Reply> {
  switch (command.type) {
    case 'stats':
      return {
        type: 'stats',
        originCalls,
        cacheErrors,
        lastCacheError,
        cacheStats: cache?.stats?.(),
        written: Object.fromEntries(written),
        storeReads: storeReads && { ...storeReads },
      }
    case 'reset':
      originCalls = 0
      cacheErrors = 0
      if (storeReads) Object.assign(storeReads, { hit: 0, miss: 0, error: 0 })
      return { type: 'ok' }
    case 'memory':
      return { type: 'memory', usage: await gcAndMeasure() }
    case 'invalidate': {
      const invalidate = cachet?.invalidate ?? cache?.invalidate?.bind(cache)
      if (!invalidate) throw new Error('this variant has no invalidate()')
      const start = performance.now()
      const removed = Number(await invalidate(command.pattern))
      return { type: 'invalidated', ms: performance.now() - start, removed }
    }
    case 'invalidateTags': {
      if (!cachet?.invalidateTags) throw new Error('this cachet has no invalidateTags()')
      const start = performance.now()
      await cachet.invalidateTags(command.tags)
      return { type: 'tagsInvalidated', ms: performance.now() - start }
    }
    case 'stop':
      server.closeAllConnections()
      server.close()
      // Last opened, first closed: the cache before its client and its SQLite file.
      for (const close of [...closers].reverse())
        await Promise.resolve()
          .then(close)
          .catch(() => {})
      setImmediate(() => process.exit(0))
      return { type: 'ok' }
  }
}

async function main(): Promise<void> {
  const send = (message: Reply & { id?: number }) => process.send?.(message)
  let listener: http.RequestListener
  try {
    listener = await buildApp(variant)
  } catch (error) {
    if (!(error instanceof Skip)) throw error
    send({ type: 'skip', reason: error.message })
    process.exit(0)
  }
  const server = http.createServer(listener)
  server.keepAliveTimeout = 60_000
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  process.on('message', (command: Command & { id: number }) => {
    handle(command, server).then(
      (reply) => send({ ...reply, id: command.id }),
      (error: Error) => send({ type: 'error', message: error.message, id: command.id }),
    )
  })
  process.on('disconnect', () => process.exit(0))
  send({ type: 'ready', port: (server.address() as { port: number }).port, pid: process.pid })
}

main().catch((error: Error) => {
  process.send?.({ type: 'error', message: error.stack ?? error.message })
  process.exit(1)
})
