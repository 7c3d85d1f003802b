/**
 * Diagnostics for the "proxy resets connections and refuses new ones" fault (not part of the
 * suite): runs the same load and faults as faults.test.ts and prints, for every request slower
 * than SLOW_MS (default 500), its timeline: client send, server arrival, each store call with
 * its outcome (lock → token or null), the lock commands redis-server itself ran for that key
 * (MONITOR on a direct connection, not through the proxy), the handler, and the ioredis
 * connection events around it; plus the event-loop delay of the whole run.
 *
 *   npx tsx test/reliability/diagnose-reset.ts        (SLOW_MS=300 SHOW=20 to see more)
 *
 * It showed where the 1–1.9 s went: a lock command that ran on the server but whose reply was
 * lost in a reset is sent again by ioredis after it reconnects, finds the lock holding its own
 * token and answers "held by someone else"; the request then polls its own lock.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import express from 'express'
import { Redis } from 'ioredis'
import { responseCache } from '../../src/middleware.js'
import { redisStore } from '../../src/stores/redis.js'
import type { Store } from '../../src/types.js'
import { runLoad, summarize, type LoadRequest } from '../support/load.js'
import { startProxy } from '../support/proxy.js'
import { startRedis } from '../support/servers.js'
import { checkResponse, echo, makeRequest, random, serveSite } from './site.js'

const STORE_TIMEOUT_MS = 200
const HANDLER_MS = 10
const SLOW_MS = Number(process.env.SLOW_MS ?? 500)
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const t0 = performance.now()
const now = () => performance.now() - t0

type Event = { at: number; what: string }
const events: Event[] = []
const log = (what: string) => events.push({ at: now(), what })

interface Trace {
  id: number
  path: string
  method: string
  sent: number
  arrived?: number
  finished?: number
  received?: number
  steps: Event[]
  lockKey?: string
}
const traces = new Map<number, Trace>()
const als = new AsyncLocalStorage<Trace>()

function traced(store: Store): Store {
  const wrap =
    <A extends unknown[], R>(name: string, fn: (...args: A) => R) =>
    (...args: A): R => {
      const trace = als.getStore()
      const start = now()
      const result = fn(...args)
      if (trace !== undefined && result instanceof Promise) {
        trace.steps.push({ at: start, what: `${name} start` })
        result.then(
          (value: unknown) =>
            trace.steps.push({ at: now(), what: `${name} ok (${(now() - start).toFixed(0)} ms)${name === 'lock' ? ` → ${String(value)}` : ''}` }),
          (e: Error) => trace.steps.push({ at: now(), what: `${name} failed (${(now() - start).toFixed(0)} ms): ${e.message}` }),
        )
      }
      return result
    }
  return {
    name: 'traced',
    get: wrap('get', (k: string) => store.get(k)),
    set: wrap('set', (k: string, v: Uint8Array, t: number) => store.set(k, v, t)),
    delete: wrap('delete', (k: string) => store.delete(k)),
    deleteMatching: wrap('deleteMatching', (p: string) => store.deleteMatching(p)),
    lock: wrap('lock', (k: string, t: number) => {
      const trace = als.getStore()
      if (trace !== undefined) trace.lockKey = 'lock:diag:' + k
      return store.lock!(k, t)
    }),
    unlock: wrap('unlock', (k: string, t: string) => store.unlock!(k, t)),
  }
}

async function main() {
  const redis = await startRedis()
  const proxy = await startProxy(redis.port)
  const client = new Redis({ host: '127.0.0.1', port: proxy.port, maxRetriesPerRequest: 1 })
  client.on('error', (e) => log(`ioredis error: ${e.message}`))
  for (const name of ['connect', 'ready', 'close', 'reconnecting', 'end']) client.on(name, (arg) => log(`ioredis ${name}${arg === undefined ? '' : ` ${arg}`}`))
  // Every lock command as redis-server executes it (MONITOR on a direct connection, not through the proxy).
  const monitor = await new Redis({ host: '127.0.0.1', port: redis.port }).monitor()
  const lockCommands = new Map<string, { at: number; args: string[] }[]>()
  monitor.on('monitor', (_time: string, args: string[]) => {
    // SET key token PX ttl NX, or a script with the key as KEYS[1]: EVAL script 1 key token …
    const command = String(args[0]).toLowerCase()
    const key = command === 'set' ? String(args[1]) : command === 'eval' || command === 'evalsha' ? String(args[3]) : ''
    if (!key.startsWith('lock:')) return
    const list = lockCommands.get(key) ?? []
    list.push({ at: now(), args: command === 'set' ? args : [command, '<script>', ...args.slice(2)] })
    lockCommands.set(key, list)
  })
  const errors: Error[] = []
  const cache = responseCache({
    store: traced(redisStore({ client, prefix: 'diag:' })),
    storeTimeout: `${STORE_TIMEOUT_MS}ms`,
    onError: (e) => {
      errors.push(e)
      log(`onError ${e.name}: ${e.message}`)
    },
  })
  const app = express()
  app.use((req, res, next) => {
    const id = Number(req.headers['x-trace'])
    const trace = traces.get(id)
    if (trace !== undefined) {
      trace.arrived = now()
      res.once('finish', () => (trace.finished = now()))
    }
    const run = () =>
      cache(req, res, (err?: unknown) => {
        trace?.steps.push({ at: now(), what: 'handler' })
        next(err as Error)
      })
    if (trace === undefined) run()
    else als.run(trace, run)
  })
  app.use(echo(HANDLER_MS))
  const { port, close } = await serveSite(app)

  // Event-loop delay: a histogram for the whole run, and a 10 ms sampler that records stalls.
  const histogram = monitorEventLoopDelay({ resolution: 10 })
  histogram.enable()
  let last = now()
  const sampler = setInterval(() => {
    const t = now()
    if (t - last > 60) log(`event loop stalled ${(t - last - 10).toFixed(0)} ms`)
    last = t
  }, 10)

  const rand = random(4)
  let id = 0
  const faults = (async () => {
    await sleep(1500)
    log('FAULT resets start')
    for (let i = 0; i < 8; i++) {
      proxy.reset()
      await sleep(250)
    }
    log('FAULT refuse on')
    proxy.refuse(true)
    proxy.reset()
    await sleep(1500)
    proxy.refuse(false)
    log('FAULT refuse off')
  })()
  const result = await runLoad({
    port,
    connections: 20,
    requests: 1_000_000,
    maxDurationMs: 8000,
    next: () => {
      const request = makeRequest(rand, 400)
      const trace: Trace = { id: ++id, path: request.path, method: request.method, sent: now(), steps: [] }
      traces.set(trace.id, trace)
      ;(request.meta as { trace?: Trace }).trace = trace
      return { ...request, headers: { ...request.headers, 'x-trace': String(trace.id) } }
    },
    check: (request: LoadRequest, response) => {
      const trace = (request.meta as { trace: Trace }).trace
      trace.received = now()
      // the generator's latency starts after next() returns
      trace.sent = trace.received - response.latency
      return checkResponse(request, response)
    },
  })
  await faults
  clearInterval(sampler)
  histogram.disable()

  console.log(summarize('load', result))
  console.log(
    `event-loop delay: max ${(histogram.max / 1e6).toFixed(1)} ms, p99 ${(histogram.percentile(99) / 1e6).toFixed(1)} ms, mean ${(histogram.mean / 1e6).toFixed(1)} ms`,
  )
  console.log(`errors reported: ${errors.length}`)
  const slow = [...traces.values()].filter((t) => t.received !== undefined && t.received - t.sent > SLOW_MS)
  console.log(`${slow.length} requests slower than ${SLOW_MS} ms`)
  for (const t of slow.slice(0, Number(process.env.SHOW ?? 12))) {
    console.log(`\n#${t.id} ${t.method} ${t.path}: ${(t.received! - t.sent).toFixed(0)} ms`)
    const f = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(0))
    console.log(`  sent ${f(t.sent)}  arrived ${f(t.arrived)}  finished ${f(t.finished)}  received ${f(t.received)}`)
    for (const s of t.steps) console.log(`  ${s.at.toFixed(0)}  ${s.what}`)
    for (const c of lockCommands.get(t.lockKey ?? '') ?? []) {
      if (c.at >= t.sent - 6000 && c.at <= t.received!) console.log(`  ${c.at.toFixed(0)}  redis-server ran: ${c.args.join(' ')}`)
    }
    for (const e of events)
      if (e.at >= t.sent - 50 && e.at <= t.received! + 10 && !e.what.startsWith('onError')) console.log(`  ${e.at.toFixed(0)}  * ${e.what}`)
  }
  console.log('\nevents:')
  let errs = 0
  for (const e of events) {
    if (e.what.startsWith('onError')) {
      errs++
      continue
    }
    console.log(`  ${e.at.toFixed(0)} ${e.what}${errs ? ` (+${errs} onError)` : ''}`)
    errs = 0
  }

  await close()
  await cache.close()
  client.disconnect()
  monitor.disconnect()
  await proxy.close()
  await redis.stop()
  process.exit(0)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
