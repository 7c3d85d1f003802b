/** cached() hit overhead per call on the memory store, against a plain Map-backed memoiser in the same run: `node --import tsx test/bench/cached.ts [--calls n] [--rounds n] [--json] [--cachet built/index.js]` (the runner's `cached` section runs it with `--json`). */
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { build } from 'tsup'

const { values: args } = parseArgs({
  options: { calls: { type: 'string' }, rounds: { type: 'string' }, json: { type: 'boolean', default: false }, cachet: { type: 'string' } },
})
const calls = Number(args.calls ?? 200_000)
const rounds = Number(args.rounds ?? 7)

// cachet as it is published (see README.md here): src/ built by tsup, not run through tsx; the runner passes its build.
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
let entry = args.cachet
if (entry === undefined) {
  const outDir = path.join(repoRoot, '.tmp/bench/cached')
  await build({
    entry: { index: path.join(repoRoot, 'src/index.ts') },
    format: ['esm'],
    target: 'node18',
    outDir,
    dts: false,
    clean: true,
    silent: true,
    config: false,
  })
  entry = path.join(outDir, 'index.js')
}
const cachet = (await import(pathToFileURL(path.resolve(entry)).href)) as typeof import('../../src/index.js')

interface Post {
  id: number
  title: string
}
const rows: Post[] = Array.from({ length: 10 }, (_, i) => ({ id: i, title: `post ${i}` }))

/** The baseline: an async memoiser on a Map, keyed by JSON of the arguments (no ttl, no store). */
function mapMemo<A extends unknown[], R>(fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  const memo = new Map<string, R>()
  return async function memoised(...args: A): Promise<R> {
    const key = JSON.stringify(args)
    const known = memo.get(key)
    if (known !== undefined) return known
    const value = await fn(...args)
    memo.set(key, value)
    return value
  }
}

async function listPosts(page: number, filter: { author?: string; tag?: string }): Promise<Post[]> {
  return rows.slice(page - 1, page + 9).filter((p) => filter.author === undefined || p.title.includes(filter.author))
}

const cache = cachet.createCache({ ttl: '1h' })
const subjects: Record<string, (page: number, filter: { author?: string; tag?: string }) => Promise<Post[]>> = {
  'cached() · memory store · jsonCoder': cachet.cached(listPosts, { cache }),
  'cached() · memory store · msgpackCoder': cachet.cached(listPosts, { cache: cachet.createCache({ ttl: '1h', coder: cachet.msgpackCoder() }) }),
  'Map memoiser (JSON.stringify key)': mapMemo(listPosts),
}

/**
 * ns per awaited call over `calls` sequential hits of one key: wall time, and the process's CPU
 * time (user + system), which other load on the machine disturbs less.
 */
async function measure(call: (page: number, filter: { author?: string; tag?: string }) => Promise<Post[]>): Promise<{ wall: number; cpu: number }> {
  const filter = { tag: 'news', author: 'post' }
  await call(1, filter)
  const cpu0 = process.cpuUsage()
  const started = process.hrtime.bigint()
  for (let i = 0; i < calls; i++) await call(1, filter)
  const wall = Number(process.hrtime.bigint() - started) / calls
  const cpu = process.cpuUsage(cpu0)
  return { wall, cpu: ((cpu.user + cpu.system) * 1000) / calls }
}

const results = new Map<string, { wall: number; cpu: number }[]>(Object.keys(subjects).map((name) => [name, []]))
for (const [name, call] of Object.entries(subjects)) await measure(call) // warm-up (JIT)
for (let r = 0; r < rounds; r++) {
  // Interleaved: round r of every subject before round r + 1 of any.
  for (const [name, call] of Object.entries(subjects)) results.get(name)!.push(await measure(call))
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
const BASELINE = 'Map memoiser (JSON.stringify key)'
const baseCpu = median(results.get(BASELINE)!.map((r) => r.cpu))
const table = [...results].map(([subject, rs]) => {
  const walls = rs.map((r) => r.wall)
  const cpu = median(rs.map((r) => r.cpu))
  return { subject, wallNs: median(walls), wallMinNs: Math.min(...walls), wallMaxNs: Math.max(...walls), cpuNs: cpu, overheadNs: cpu - baseCpu }
})
await cache.close()
if (args.json) {
  // For the runner: one JSON line on stdout.
  process.stdout.write(JSON.stringify({ calls, rounds, baseline: BASELINE, rows: table }) + '\n')
} else {
  console.log(
    `${calls} sequential hits × ${rounds} interleaved rounds, node ${process.version}, two arguments (a number and a 2-key object), load average ${os.loadavg()[0].toFixed(2)} on ${os.cpus().length} CPUs\n`,
  )
  console.log('| subject | wall ns/op (median) | min–max | CPU ns/op (median) | overhead vs Map (CPU) |')
  console.log('| --- | ---: | ---: | ---: | ---: |')
  for (const r of table) {
    console.log(
      `| ${r.subject} | ${r.wallNs.toFixed(0)} | ${r.wallMinNs.toFixed(0)}–${r.wallMaxNs.toFixed(0)} | ${r.cpuNs.toFixed(0)} | ${r.overheadNs.toFixed(0)} ns |`,
    )
  }
}
