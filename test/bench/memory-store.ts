/**
 * In-process measurements of the memory store, quicker and finer than `npm run bench`:
 *
 *   node --expose-gc --import tsx test/bench/memory-store.ts invalidate [--keys 100000] [--reps 5]
 *   node --expose-gc --import tsx test/bench/memory-store.ts memory [--keys 10000] [--snapshot]
 *
 * `invalidate` fills a store with entries shaped like the middleware's, then times
 * `deleteMatching('items:*')` while a 1 ms timer reads an unrelated key, and reports how late
 * that timer ran (the event loop blocked by a chunk). `memory` stores entries through the real
 * middleware on Express 5 over HTTP and reports heap+external per entry beyond the body; with
 * `--snapshot` it diffs two heap snapshots and lists what the added objects are.
 */
import { readFileSync, unlinkSync } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import v8 from 'node:v8'
import express from 'express'
import { responseCache } from '../../src/index.js'
import { buildEntry } from '../../src/entry.js'
import { kEntryStore, memoryStore } from '../../src/stores/memory.js'
import { fill } from './load.js'
import { makeBody } from './variants.js'

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    keys: { type: 'string' },
    reps: { type: 'string', default: '5' },
    snapshot: { type: 'boolean', default: false },
  },
})

const gc = (globalThis as { gc?: () => void }).gc
if (!gc) throw new Error('run with node --expose-gc')

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function settle(): Promise<NodeJS.MemoryUsage> {
  for (let i = 0; i < 4; i++) {
    gc!()
    await new Promise((resolve) => setImmediate(resolve))
  }
  return process.memoryUsage()
}

// --- invalidate -------------------------------------------------------------------------------

function entryFor(i: number, body: Uint8Array) {
  const now = Date.now()
  return buildEntry({
    status: 200,
    headers: ['X-Powered-By', 'Express', 'Content-Type', 'application/json; charset=utf-8', 'ETag', `W/"400-${i.toString(36)}"`],
    body,
    requestTime: now,
    responseTime: now,
    lifetime: 300_000,
    staleWhileRevalidate: 0,
    staleIfError: 0,
    mustRevalidate: false,
    statusHeader: 'X-Cache',
  })
}

async function invalidateOnce(keys: number) {
  const store = memoryStore({ maxEntries: keys * 2, maxBytes: 4 * 1024 ** 3 })
  const entries = store[kEntryStore]
  const body = new Uint8Array(1024)
  for (let i = 0; i < keys; i++) entries.setEntry(`items:${i}:GET#localhost:3000`, entryFor(i, body), 300_000)
  const hot = 'hot:GET#localhost:3000'
  entries.setEntry(hot, entryFor(-1, body), 300_000)
  await settle()

  // A hit on an unrelated key every millisecond: its lateness is what a request waits.
  const lateness: number[] = []
  let running = true
  let expected = performance.now() + 1
  const tick = () => {
    if (!running) return
    const now = performance.now()
    lateness.push(Math.max(0, now - expected))
    if (entries.getEntry(hot) === undefined) throw new Error('hot key lost')
    expected = now + 1
    setTimeout(tick, 1)
  }
  setTimeout(tick, 1)
  await sleep(50)
  lateness.length = 0
  const histogram = monitorEventLoopDelay({ resolution: 1 })
  histogram.enable()
  const start = performance.now()
  const removed = await store.deleteMatching('items:*')
  const ms = performance.now() - start
  histogram.disable()
  running = false
  await sleep(5)
  if (removed !== keys) throw new Error(`removed ${removed}, expected ${keys}`)
  if (store.stats().entries !== 1) throw new Error(`${store.stats().entries} entries left, expected 1`)
  lateness.sort((a, b) => a - b)
  return { ms, maxBlock: lateness[lateness.length - 1] ?? 0, loopMax: histogram.max / 1e6 }
}

async function invalidate() {
  const keys = Number(values.keys ?? 100_000)
  const reps = Number(values.reps)
  const runs: Awaited<ReturnType<typeof invalidateOnce>>[] = []
  for (let rep = 0; rep < reps; rep++) {
    const r = await invalidateOnce(keys)
    runs.push(r)
    console.log(`rep ${rep + 1}: ${r.ms.toFixed(1)} ms, longest block ${r.maxBlock.toFixed(1)} ms (event-loop delay max ${r.loopMax.toFixed(1)} ms)`)
    await settle()
  }
  console.log(
    `median of ${reps}: deleteMatching('items:*') over ${keys} keys ${median(runs.map((r) => r.ms)).toFixed(1)} ms, ` +
      `longest block ${median(runs.map((r) => r.maxBlock)).toFixed(1)} ms`,
  )
}

// --- memory -----------------------------------------------------------------------------------

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } }
  nodes: number[]
  strings: string[]
}

/** Self size and count per "type:name" of every node in a heap snapshot. */
function tally(): Map<string, { count: number; bytes: number }> {
  const file = v8.writeHeapSnapshot(path.join(os.tmpdir(), `cachet-memory-${process.pid}.heapsnapshot`))
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot
  unlinkSync(file)
  const fields = snap.snapshot.meta.node_fields
  const types = snap.snapshot.meta.node_types[0]
  const width = fields.length
  const typeAt = fields.indexOf('type')
  const nameAt = fields.indexOf('name')
  const sizeAt = fields.indexOf('self_size')
  const out = new Map<string, { count: number; bytes: number }>()
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt]]
    // Strings are named by their content: group them by type only.
    const name = type.includes('string') ? '' : snap.strings[snap.nodes[i + nameAt]].slice(0, 60)
    const label = `${type}:${name}`
    const row = out.get(label) ?? { count: 0, bytes: 0 }
    row.count++
    row.bytes += snap.nodes[i + sizeAt]
    out.set(label, row)
  }
  return out
}

async function memory() {
  const keys = Number(values.keys ?? 10_000)
  const body = makeBody(1024)
  const store = memoryStore({ maxEntries: keys * 2, maxBytes: 4 * 1024 ** 3 })
  const cache = responseCache({ store, ttl: '5m' })
  const app = express()
  app.use(cache)
  app.use((req, res) => {
    if (req.path.startsWith('/warm/')) res.set('Cache-Control', 'no-store')
    res.json(body.object)
  })
  const server = http.createServer(app)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  // Warm up every code path (uncached), so the baseline holds compiled code and pools.
  await fill(port, 2000, (i) => `/warm/${i}`)
  await fill(port, 200, (i) => `/items/warm-${i}`)
  await store.clear?.()
  const before = await settle()
  const first = values.snapshot ? tally() : undefined
  const failures = await fill(port, keys, (i) => `/items/${i}`)
  if (failures) throw new Error(`${failures} failed requests`)
  const after = await settle()
  const held = store.stats().entries
  if (held !== keys) throw new Error(`${held} entries held, expected ${keys}`)
  const heap = (u: NodeJS.MemoryUsage) => u.heapUsed + u.external
  console.log(`${keys} entries of ${body.buffer.length} B bodies through Express 5 + responseCache(memoryStore):`)
  console.log(`  heap+external per entry beyond the body: ${((heap(after) - heap(before)) / keys - body.buffer.length).toFixed(0)} B`)
  console.log(
    `    heapUsed ${((after.heapUsed - before.heapUsed) / keys).toFixed(0)} B, external ${((after.external - before.external) / keys).toFixed(0)} B, arrayBuffers ${((after.arrayBuffers - before.arrayBuffers) / keys).toFixed(0)} B`,
  )
  console.log(`  rss per entry beyond the body: ${((after.rss - before.rss) / keys - body.buffer.length).toFixed(0)} B`)
  if (first !== undefined) {
    const second = tally()
    const rows: { label: string; count: number; bytes: number }[] = []
    for (const [label, b] of second) {
      const a = first.get(label) ?? { count: 0, bytes: 0 }
      if (b.bytes - a.bytes > keys * 2) rows.push({ label, count: b.count - a.count, bytes: b.bytes - a.bytes })
    }
    rows.sort((x, y) => y.bytes - x.bytes)
    console.log('  heap snapshot delta (self sizes; objects per entry, bytes per entry):')
    let total = 0
    for (const r of rows) {
      total += r.bytes
      console.log(`    ${(r.count / keys).toFixed(2).padStart(6)} × ${r.label.padEnd(48)} ${(r.bytes / keys).toFixed(0).padStart(5)} B`)
    }
    console.log(`    listed total ${(total / keys).toFixed(0)} B per entry`)
  }
  server.close()
  await cache.close()
}

if (positionals[0] === 'invalidate') await invalidate()
else if (positionals[0] === 'memory') await memory()
else throw new Error('usage: memory-store.ts invalidate|memory [--keys n] [--reps n] [--snapshot]')
process.exit(0)
