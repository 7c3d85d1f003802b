/** Benchmark runner: `npm run bench [-- --quick] [--filter <substring>] [--cpu-prof] [--reps n] [--duration s] [--sections hit,memory,miss,invalidate,tags,coalesce,cached]`. */
import { execFile, execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { build } from 'tsup'
import { repoRoot, startServer, type ServerHandle, type ServerOptions } from './child.js'
import { burst, fill, get, median, pacedLoad, percentile, runLoad } from './load.js'
import { profileMarkdown, summariseProfile } from './profile.js'
import {
  hitRatio,
  markdown,
  pairedHitRatio,
  interleavedHitRatio,
  roundRatio,
  size,
  svgChart,
  type CachedRow,
  type CoalesceRow,
  type HitRow,
  type InvalidateRow,
  type Machine,
  type MemoryRow,
  type MissRow,
  type TagsRow,
  type Results,
  type Target,
} from './report.js'
import { childrenOf, cpuWindow, pidListeningOn, waitForQuiet, type CpuSample } from './cpu.js'
import { flush, longestRedisCommand, memcachedItemCount, redisKeyCount, startServices, stopServices, type Service } from './services.js'
import { findVariant, variants, type Variant } from './variants.js'

const SECTIONS = ['hit', 'memory', 'miss', 'invalidate', 'tags', 'coalesce', 'cached'] as const
type Section = (typeof SECTIONS)[number]

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    filter: { type: 'string', multiple: true },
    'cpu-prof': { type: 'boolean', default: false },
    sections: { type: 'string' },
    reps: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    connections: { type: 'string' },
    sizes: { type: 'string' },
    out: { type: 'string' },
    rev: { type: 'string' },
    render: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})

if (args.help) {
  console.log(`npm run bench -- [options]
  --quick              smoke run (< 1 min): few variants, 1 KB, 1 repetition, short runs
  --filter <text>      only HIT variants whose name contains <text>, or is exactly <text> without a final $ (repeatable, or comma-separated)
  --sections <list>    ${SECTIONS.join(',')} (default: all; only "hit" with --filter or --cpu-prof)
  --cpu-prof           write a CPU profile of each server process (hit and miss sections) to .tmp/cpu-profiles/ and summarise it
  --reps <n>           repetitions per variant (default 3)
  --duration <s>       measured seconds per run (default 4)
  --warmup <s>         warm-up seconds before each measurement (default 1.5)
  --connections <n>    autocannon connections for HIT runs (default 100)
  --sizes <list>       body sizes in bytes (default 1024,102400)
  --rev <commit>       measure src/ of that commit (git archive, built the same way) instead of the working tree's
  --render <json>      recompute targets, re-render latest.md/json and chart.svg from a results JSON (no measuring)
  --out <dir>          output directory (default test/bench/results for a full run, .tmp/bench otherwise)`)
  process.exit(0)
}

// --render <results.json>: recompute the targets and rewrite latest.md, latest.json and chart.svg next to a results file, measuring nothing.
if (args.render) {
  const stored = JSON.parse(readFileSync(args.render, 'utf8')) as Results
  const results: Results = { ...stored, targets: targets(stored) }
  const dir = path.dirname(path.resolve(args.render))
  writeFileSync(path.join(dir, 'latest.md'), markdown(results))
  writeFileSync(path.join(dir, 'latest.json'), JSON.stringify(results, null, 2) + '\n')
  writeFileSync(path.join(dir, 'chart.svg'), svgChart(results))
  process.stdout.write(markdown(results))
  process.exit(0)
}

const quick = args.quick
const filters = (args.filter ?? []).flatMap((f) => f.split(',')).filter(Boolean)
const partial = quick || filters.length > 0 || args.sections !== undefined || args['cpu-prof'] || args.rev !== undefined
const settings = {
  reps: Number(args.reps ?? (quick ? 1 : 3)),
  duration: Number(args.duration ?? (quick ? 1 : 4)),
  warmup: Number(args.warmup ?? (quick ? 0.5 : 1.5)),
  connections: Number(args.connections ?? 100),
  sizes: (args.sizes ?? (quick ? '1024' : '1024,102400')).split(',').map(Number),
  memoryKeys: quick ? [1_000] : [10_000, 100_000],
  invalidateKeys: quick ? 2_000 : 100_000,
  /** Request rate of the HIT load that runs while invalidate() does (fixed, so the runner's CPU is not saturated). */
  invalidateRate: 1000,
  invalidateLoadSeconds: quick ? 1.5 : 4,
  /** Entries under one tag for invalidateTags(), and the tagged keys the paced load cycles over meanwhile. */
  tagKeys: quick ? 2_000 : 100_000,
  tagHotKeys: 100,
  /** Interleaved tagged ÷ untagged pairs: ABBA/BAAB blocks per repetition (half with each server started first), and seconds per window. */
  pairBlocks: quick ? 4 : 8,
  pairWindow: quick ? 0.5 : 1,
  missConnections: 10,
  missSeconds: quick ? 1 : 4,
  /** More repetitions than the HIT runs: a 5 ms timer's phase moves one run's p50 by ±0.3 ms. */
  missReps: Number(args.reps ?? (quick ? 1 : 5)),
  coalesceConcurrent: 100,
  coalesceDelays: quick ? [5] : [5, 50],
  /** cached() micro-benchmark: sequential hits per round, interleaved rounds. */
  cachedCalls: quick ? 20_000 : 200_000,
  cachedRounds: quick ? 3 : 7,
  /** Before each measurement, wait (up to quietWaitMs) until other processes use less than this many cores. */
  quietThreshold: 0.25,
  quietWaitMs: 5_000,
}
const sections = new Set<Section>(
  args.sections ? (args.sections.split(',') as Section[]).filter((s) => SECTIONS.includes(s)) : filters.length || args['cpu-prof'] ? ['hit'] : SECTIONS,
)
/** A filter ending in `$` names one variant exactly; any other is a substring of the names it selects. */
const matchesFilter = (name: string, f: string) => (f.endsWith('$') ? name === f.slice(0, -1) : name.includes(f))
const selected = variants.filter((v) => (filters.length ? filters.some((f) => matchesFilter(v.name, f)) : quick ? v.quick : true))
const outDir = path.resolve(repoRoot, args.out ?? (partial ? '.tmp/bench' : 'test/bench/results'))
const profileDir = path.join(repoRoot, '.tmp/cpu-profiles')
const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`

const log = (message: string) => process.stderr.write(`[bench] ${message}\n`)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Pin the runner (autocannon) to CPU 0 and the servers to CPU 1 when taskset can. */
function pinCpus(): { serverCpu?: number; description: string } {
  if (os.cpus().length < 2) return { description: 'none (fewer than 2 CPUs)' }
  try {
    execFileSync('taskset', ['-a', '-cp', '0', String(process.pid)], { stdio: 'ignore' })
  } catch {
    return { description: 'none (taskset not available)' }
  }
  return {
    serverCpu: 1,
    description:
      'server process on CPU 1 (taskset -c 1); runner with autocannon on CPU 0, Redis, memcached, PostgreSQL and dynalite started by the runner inherit CPU 0',
  }
}

function versionOf(command: string, flag: string): string | undefined {
  try {
    return execFileSync(command, [flag], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
      .trim()
      .split('\n')[0]
  } catch {
    return undefined
  }
}

const git = (...a: string[]) => execFileSync('git', a, { cwd: repoRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()

/** The commit measured, and whether src/ differs from it. */
function revision(): string {
  try {
    if (rev) return `${rev.slice(0, 7)} (--rev; runner and servers from ${git('rev-parse', '--short', 'HEAD')})`
    const dirty = git('status', '--porcelain', '--', 'src') !== ''
    return `${git('rev-parse', '--short', 'HEAD')}${dirty ? ' (src/ has uncommitted changes)' : ''}`
  } catch {
    return 'unknown'
  }
}

function machine(pinning: string, services: Service[]): Machine {
  const cpuinfo = (() => {
    try {
      return readFileSync('/proc/cpuinfo', 'utf8')
    } catch {
      return ''
    }
  })()
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown CPU'
  return {
    cpu: model.trim(),
    cores: os.cpus().length,
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    loadBefore: loadBefore.map((l) => l.toFixed(2)).join(' '),
    loadAfter: os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' '),
    pinning,
    redis: services.some((s) => s.name === 'redis' && s.endpoint) ? versionOf('redis-server', '--version') : undefined,
    memcached: services.some((s) => s.name === 'memcached' && s.endpoint) ? versionOf('memcached', '-V') : undefined,
    services: services.map((s) => (s.endpoint ? `${s.name} at ${s.endpoint.host}:${s.endpoint.port} (${s.source})` : `${s.name}: ${s.skipped}`)),
  }
}

// ---------------------------------------------------------------------------------------------

const pinning = pinCpus()
/**
 * Servers load cachet as it is published: src/ built by tsup (ESM, node18 target, dependencies
 * external, like `npm run build`), not src/*.ts through tsx, whose transform adds a
 * keep-names call to every closure created and so would charge cachet for code it does not ship.
 */
// --rev: that commit's src/ (git archive) under .tmp/bench/, so the build resolves the same node_modules.
const rev = args.rev === undefined ? undefined : git('rev-parse', '--verify', `${args.rev}^{commit}`)
const srcRoot = rev ? path.join(repoRoot, `.tmp/bench/rev-${rev.slice(0, 12)}`) : repoRoot
if (rev) {
  mkdirSync(srcRoot, { recursive: true })
  execFileSync('sh', ['-c', `git archive ${rev} src | tar -x -C '${srcRoot}'`], { cwd: repoRoot, stdio: 'inherit' })
}
const cachetBuild = path.join(repoRoot, rev ? `.tmp/bench/cachet-${rev.slice(0, 12)}/index.js` : '.tmp/bench/cachet/index.js')
await build({
  entry: { index: path.join(srcRoot, 'src/index.ts') },
  format: ['esm'],
  target: 'node18',
  outDir: path.dirname(cachetBuild),
  dts: false,
  clean: true,
  silent: true,
  config: false,
})
const loadBefore = os.loadavg()
const needed = new Set<Service['name']>()
for (const v of sections.has('hit') ? selected : []) if (v.store && v.store !== 'memory' && v.store !== 'sqlite') needed.add(v.store)
if (sections.has('invalidate') || sections.has('tags') || sections.has('coalesce') || sections.has('miss')) needed.add('redis')
if (sections.has('tags') && !quick) needed.add('memcached')
const services = await startServices([...needed])
const servicePids = services.flatMap((s) => (s.endpoint ? [pidListeningOn(s.endpoint.port)] : [])).filter((pid): pid is number => pid !== undefined)
// The runner, the server, the services and their children (PostgreSQL's backends): the rest is other work.
const ownPids = (h: ServerHandle) => [process.pid, h.pid, ...servicePids, ...childrenOf(servicePids)]
const cpuLog: { foreign: number; waitedMs: number }[] = []

/**
 * Wait for a quiet machine, then run `measure` and report the CPU other processes used meanwhile,
 * and the cores the server itself used (`serverCores`, undefined where /proc is not available).
 */
async function measured<T>(
  h: ServerHandle,
  measure: () => Promise<T>,
): Promise<{ value: T; cpu?: CpuSample; serverCores?: number; serviceCores?: number; waitedMs: number }> {
  const quiet = quick ? { waitedMs: 0 } : await waitForQuiet(ownPids(h), settings.quietThreshold, settings.quietWaitMs)
  const end = cpuWindow(ownPids(h))
  const value = await measure()
  const cpu = end()
  if (cpu) cpuLog.push({ foreign: cpu.foreign, waitedMs: quiet.waitedMs })
  // ownPids(h)[1] is the server; from [2] on, the services and their children.
  const serviceCores = cpu?.perPid.slice(2).reduce((sum, cores) => sum + cores, 0)
  return { value, cpu, serverCores: cpu?.perPid[1], serviceCores, waitedMs: quiet.waitedMs }
}

process.once('SIGINT', () => process.exit(130))

const service = (name: Service['name']) => services.find((s) => s.name === name)
const endpoint = (name: Service['name']) => {
  const e = service(name)?.endpoint
  return e ? `${e.host}:${e.port}` : undefined
}

/** Server options for a variant, or the reason it cannot run here. */
function serverOptions(v: Variant, extra: ServerOptions = {}): ServerOptions | string {
  const options: ServerOptions = { cpu: pinning.serverCpu, cachet: cachetBuild, ...extra }
  if (v.store === 'redis') {
    if (!endpoint('redis')) return service('redis')?.skipped ?? 'no Redis server'
    options.redis = endpoint('redis')
  }
  if (v.store === 'memcached') {
    if (!endpoint('memcached')) return service('memcached')?.skipped ?? 'no memcached server'
    options.memcached = endpoint('memcached')
  }
  if (v.store === 'postgres' || v.store === 'dynamodb') {
    const url = service(v.store)?.url
    if (!url) return service(v.store)?.skipped ?? `no ${v.store} server`
    options[v.store] = url
  }
  return options
}

async function flushFor(v: Variant): Promise<void> {
  if (v.store === 'redis' || v.store === 'memcached') {
    const s = service(v.store)
    if (s) await flush(s)
  }
}

/**
 * Start a server for `variant`, run `body` with it, always stop it. Resolves the skip reason
 * instead when it cannot run. The store is flushed first unless `flush` is false.
 */
async function withServer<T>(
  variant: Variant,
  bodyBytes: number,
  extra: ServerOptions,
  body: (h: ServerHandle) => Promise<T>,
  flush = true,
): Promise<T | { skipped: string }> {
  const options = serverOptions(variant, extra)
  if (typeof options === 'string') return { skipped: options }
  if (flush) await flushFor(variant)
  const started = await startServer(variant.name, bodyBytes, options)
  if ('skipped' in started) return started
  try {
    return await body(started.handle)
  } finally {
    await started.handle.stop()
  }
}

/** With --cpu-prof, where this server writes its profiles: one directory per server, as node writes a profile per thread (main, and tsx's loader worker). */
function profiling(name: string, bodyBytes: number, rep: number): ServerOptions {
  return args['cpu-prof'] ? { cpuProfDir: path.join(profileDir, `${name}-${size(bodyBytes).replace(' ', '')}-rep${rep}`) } : {}
}

const isSkip = (value: unknown): value is { skipped: string } => typeof value === 'object' && value !== null && 'skipped' in value

function entriesOf(stats: unknown): number | undefined {
  if (typeof stats !== 'object' || stats === null) return undefined
  const record = stats as Record<string, unknown>
  if (typeof record.entries === 'number') return record.entries
  for (const value of Object.values(record)) {
    if (typeof value === 'object' && value !== null && typeof (value as Record<string, unknown>).entries === 'number') {
      return (value as Record<string, number>).entries
    }
  }
  return undefined
}

// --- HIT throughput ---------------------------------------------------------------------------

/**
 * The HIT variants in the order repetition `rep` measures them: a tagged variant right beside the
 * untagged one it is compared with, first on even repetitions, so that the machine's drift over a
 * run (minutes) falls on both alike and a pair's per-repetition ratios cancel it.
 */
function hitOrder(rep: number): Variant[] {
  const order: Variant[] = []
  for (const v of selected) {
    if (v.tags && selected.some((u) => u.name === untaggedOf(v))) continue
    const tagged = selected.find((t) => t.tags && untaggedOf(t) === v.name)
    order.push(...(tagged === undefined ? [v] : rep % 2 === 0 ? [tagged, v] : [v, tagged]))
  }
  return order
}

/** The untagged variant a tagged one is compared with (`…-tags-json` → `…-json`). */
function untaggedOf(v: Variant): string {
  return v.name.replace('-tags-json', '-json')
}

/**
 * Tagged ÷ untagged HIT throughput, measured interleaved: per repetition, both servers of a pair
 * run at once (each warmed up), and the load switches between them every `pairWindow` seconds in
 * blocks ordered ABBA then BAAB, so that both see the same moments of the machine and as many
 * windows right after a switch; then again with a new pair of processes started in the other
 * order. In the separate runs above the two are seconds apart, and the machine's req/s can move
 * by more than the difference asked about in that time.
 */
async function interleavedPairs(rows: Map<string, HitRow>): Promise<void> {
  const pairs = selected.flatMap((t) => {
    const u = t.tags ? selected.find((v) => v.name === untaggedOf(t)) : undefined
    return u ? [[t, u] as const] : []
  })
  for (let rep = 1; rep <= settings.reps; rep++) {
    for (const bodyBytes of settings.sizes) {
      for (const [tagged, untagged] of pairs) {
        const row = rows.get(`${tagged.name}@${bodyBytes}`)
        if (!row || row.skipped || rows.get(`${untagged.name}@${bodyBytes}`)?.skipped) continue
        try {
          // Two pairs of processes per repetition, one in each start order: two servers of one
          // variant differed by 3-7 % in CPU per request, and a pair carries its processes' luck.
          const taggedFirst = await withPair(tagged, untagged, bodyBytes, (ht, hu) => alternate(ht, hu))
          if (isSkip(taggedFirst)) continue
          const untaggedFirst = await withPair(untagged, tagged, bodyBytes, (hu, ht) => alternate(ht, hu))
          if (isSkip(untaggedFirst)) continue
          const windows = [...taggedFirst, ...untaggedFirst]
          const of = (h: 0 | 1, field: 'rps' | 'cores') => windows.filter((w) => w.h === h).map((w) => w[field] ?? NaN)
          const round = { tagged: of(0, 'rps'), untagged: of(1, 'rps'), taggedCores: of(0, 'cores'), untaggedCores: of(1, 'cores') }
          const interleaved = (row.interleaved ??= { baseline: untagged.name, windowSeconds: settings.pairWindow, rounds: [] })
          interleaved.rounds.push(round)
          log(`${tagged.name} ÷ ${untagged.name} ${size(bodyBytes)} rep ${rep}, interleaved: ${roundRatio(round).toFixed(3)} ×`)
        } catch (error) {
          row.notes.push(`interleaved pair: error: ${(error as Error).message}`)
          log(`${tagged.name} ${size(bodyBytes)} rep ${rep}, interleaved: error: ${(error as Error).message}`)
        }
      }
    }
  }
}

/**
 * Start the servers of a pair of variants on one store (flushed once, before the first starts),
 * run `body` with both, always stop them.
 */
function withPair<T>(a: Variant, b: Variant, bodyBytes: number, body: (ha: ServerHandle, hb: ServerHandle) => Promise<T>) {
  return withServer(a, bodyBytes, {}, (ha) => withServer(b, bodyBytes, {}, (hb) => body(ha, hb), false))
}

/** Warm both servers up, then load them in turn: `pairBlocks` / 2 blocks of four windows, ABBA and BAAB. */
async function alternate(...servers: [ServerHandle, ServerHandle]): Promise<{ h: 0 | 1; rps: number; cores?: number }[]> {
  for (const h of servers) {
    await get(h.port, '/items/1')
    await runLoad({ port: h.port, connections: settings.connections, seconds: settings.warmup })
  }
  const pids = [...new Set([...ownPids(servers[0]), servers[1].pid])]
  const quiet = quick ? { waitedMs: 0 } : await waitForQuiet(pids, settings.quietThreshold, settings.quietWaitMs)
  const end = cpuWindow(pids)
  const windows: { h: 0 | 1; rps: number; cores?: number }[] = []
  for (let block = 0; block < settings.pairBlocks / 2; block++) {
    const order: (0 | 1)[] = block % 2 === 0 ? [0, 1, 1, 0] : [1, 0, 0, 1]
    for (const h of order) {
      const server = cpuWindow([servers[h].pid])
      const run = await runLoad({ port: servers[h].port, connections: settings.connections, seconds: settings.pairWindow })
      windows.push({ h, rps: run.rps, cores: server()?.perPid[0] })
    }
  }
  const cpu = end()
  if (cpu) cpuLog.push({ foreign: cpu.foreign, waitedMs: quiet.waitedMs })
  return windows
}

async function hitSection(): Promise<HitRow[]> {
  const rows = new Map<string, HitRow>()
  const skipped = new Map<string, string>()
  // Per row: the share of requests answered by a store read, and the cores the store's server used.
  const storeShares = new Map<string, number[]>()
  const serviceCpu = new Map<string, number[]>()
  for (let rep = 1; rep <= settings.reps; rep++) {
    for (const bodyBytes of settings.sizes) {
      for (const v of hitOrder(rep)) {
        const key = `${v.name}@${bodyBytes}`
        const row: HitRow = rows.get(key) ?? {
          variant: v.name,
          description: v.description,
          kind: v.kind,
          bodyBytes,
          runs: [],
          rps: NaN,
          p50: NaN,
          p99: NaN,
          rpsPerCore: NaN,
          originCalls: [],
          foreignCpu: [],
          serverCpu: [],
          perCore: [],
          notes: [],
        }
        rows.set(key, row)
        const known = skipped.get(v.name)
        if (known) {
          row.skipped = known
          continue
        }
        const profile = profiling(v.name, bodyBytes, rep)
        try {
          const outcome = await withServer(v, bodyBytes, profile, async (h) => {
            const headers = v.acceptEncoding === undefined ? undefined : { 'accept-encoding': v.acceptEncoding }
            await get(h.port, '/items/1', undefined, headers)
            const probe = await get(h.port, '/items/1', undefined, headers)
            row.probe = String(probe.headers['x-cache'] ?? probe.status)
            await runLoad({ port: h.port, connections: settings.connections, seconds: settings.warmup, headers })
            await h.request({ type: 'reset' }, 'ok')
            const run = await measured(h, () => runLoad({ port: h.port, connections: settings.connections, seconds: settings.duration, headers }))
            const stats = await h.request({ type: 'stats' }, 'stats')
            if (v.compress !== undefined || v.acceptEncoding !== undefined) row.notes.push(compressionNote(probe, stats))
            return { result: run.value, cpu: run.cpu, serverCores: run.serverCores, serviceCores: run.serviceCores, stats }
          })
          if (isSkip(outcome)) {
            skipped.set(v.name, outcome.skipped)
            row.skipped = outcome.skipped
            log(`${v.name} ${size(bodyBytes)}: skipped: ${outcome.skipped}`)
            continue
          }
          const { result, stats, cpu, serverCores, serviceCores } = outcome
          row.runs.push(result)
          if (stats.storeReads) storeShares.set(key, [...(storeShares.get(key) ?? []), stats.storeReads.hit / Math.max(1, result.requests)])
          if (serviceCores !== undefined && (v.store === 'postgres' || v.store === 'dynamodb')) {
            serviceCpu.set(key, [...(serviceCpu.get(key) ?? []), serviceCores])
          }
          if (cpu) row.foreignCpu.push(cpu.foreign)
          if (serverCores !== undefined) {
            // Requests per CPU-second the server used: robust to contention.
            row.perCore.push(result.rps / serverCores)
            row.serverCpu.push(serverCores)
          }
          row.originCalls.push(stats.originCalls)
          if (stats.cacheErrors) row.notes.push(`${stats.cacheErrors} cache errors (${stats.lastCacheError})`)
          if (result.non2xx || result.errors) row.notes.push(`${result.non2xx} non-2xx, ${result.errors} errors`)
          log(
            `${v.name} ${size(bodyBytes)} rep ${rep}: ${Math.round(result.rps)} req/s, p50 ${result.p50.toFixed(2)} ms, p99 ${result.p99.toFixed(2)} ms, origin calls ${stats.originCalls}, probe ${row.probe}${cpu && serverCores !== undefined ? `, server CPU ${serverCores.toFixed(2)} cores, other CPU ${cpu.foreign.toFixed(2)} cores` : ''}`,
          )
        } catch (error) {
          row.notes.push(`error: ${(error as Error).message}`)
          log(`${v.name} ${size(bodyBytes)} rep ${rep}: error: ${(error as Error).message}`)
        }
      }
    }
  }
  await interleavedPairs(rows)
  for (const [key, row] of rows) {
    const shares = storeShares.get(key) ?? []
    if (shares.some((share) => share < 0.99)) {
      const percent = shares.map((share) => `${(100 * share).toFixed(1)} %`).join(' / ')
      row.notes.push(
        `a store read answered ${percent} of requests (per repetition); the others were answered by the origin or, after a read timed out, from the entry of a write still on its way: such a repetition's req/s is not the store's`,
      )
    }
    const cores = serviceCpu.get(key) ?? []
    if (cores.length) {
      const server = row.variant.includes('-postgres-') ? 'PostgreSQL (backends)' : 'dynalite'
      row.notes.push(`${server} used ${cores.map((c) => c.toFixed(2)).join(' / ')} cores, on the load generator's CPU`)
    }
  }
  for (const row of rows.values()) {
    row.rps = median(row.runs.map((r) => r.rps))
    row.p50 = median(row.runs.map((r) => r.p50))
    row.p99 = median(row.runs.map((r) => r.p99))
    row.rpsPerCore = median(row.perCore)
    const v = findVariant(row.variant)
    const served = median(row.runs.map((r) => r.requests))
    const origin = Math.max(0, ...row.originCalls)
    if (v.cached && origin > 0) {
      const share = (100 * origin) / served
      row.notes.push(`${share > 50 ? 'NOT serving HITs: ' : ''}origin ran up to ${origin} times in a measurement (${share.toFixed(1)} % of requests)`)
    }
    const busiest = Math.max(0, ...row.foreignCpu)
    if (busiest > settings.quietThreshold) row.notes.push(`other processes used up to ${busiest.toFixed(2)} cores during a run`)
    if (v.kind === 'cachet' && row.probe && row.probe !== 'HIT') row.notes.push(`probe X-Cache: ${row.probe}`)
    row.notes = [...new Set(row.notes)]
  }
  return [...rows.values()]
}

/**
 * Compressed-storage rows: what the client received, and what the store holds for the one entry:
 * the memory store's own count (body, headers, key and a fixed overhead), or for a byte store the
 * encoded entry its one response write carried (the store-write channel; the key and the store's
 * own per-item overhead not included).
 */
function compressionNote(probe: Awaited<ReturnType<typeof get>>, stats: { cacheStats?: unknown; written?: Record<string, number> }): string {
  const bytes = (stats.cacheStats as { bytes?: unknown } | undefined)?.bytes
  const writes = Object.values(stats.written ?? {})
  const held =
    typeof bytes === 'number' && entriesOf(stats.cacheStats) === 1
      ? `, store holds ${bytes} B for the entry`
      : writes.length === 1
        ? `, store holds ${writes[0]} B for the entry (encoded)`
        : writes.length > 1
          ? `, ${writes.length} entries written (${writes.join(' + ')} B encoded)`
          : ''
  return `sent ${probe.bytes} B ${String(probe.headers['content-encoding'] ?? 'identity')}${held}`
}

// --- memory per entry -------------------------------------------------------------------------

async function memorySection(): Promise<MemoryRow[]> {
  const rows: MemoryRow[] = []
  const bodyBytes = 1024
  const control = findVariant('express5-uncached')
  for (const keys of settings.memoryKeys) {
    const measure = (v: Variant) =>
      withServer(v, bodyBytes, { delayMs: 0, exposeGc: true, maxEntries: keys * 2 }, async (h) => {
        const failures = await fill(h.port, keys, (i) => `/items/${i}`)
        if (failures) throw new Error(`${failures} failed requests while filling`)
        const { usage } = await h.request({ type: 'memory' }, 'memory')
        const stats = await h.request({ type: 'stats' }, 'stats')
        return { usage, entries: entriesOf(stats.cacheStats) }
      })
    const base = await measure(control)
    if (isSkip(base)) throw new Error(`control server skipped: ${base.skipped}`)
    for (const name of ['cachet-express5-memory-json', ...(quick ? [] : ['apicache-memory'])]) {
      const v = findVariant(name)
      const cached =
        name === 'apicache-memory' && keys > 10_000
          ? { skipped: 'not measured above 10,000 keys: apicache 1.6.3 recomputes Object.keys(cache).length on every add (quadratic fill)' }
          : await measure(v).catch((error: Error) => ({ skipped: `error: ${error.message}` }))
      if (isSkip(cached)) {
        rows.push({ variant: name, keys, bodyBytes, rssPerEntry: NaN, heapPerEntry: NaN, control: base.usage, cached: base.usage, skipped: cached.skipped })
        continue
      }
      const heap = (u: NodeJS.MemoryUsage) => u.heapUsed + u.external
      const row: MemoryRow = {
        variant: name,
        keys,
        bodyBytes,
        entries: cached.entries,
        rssPerEntry: (cached.usage.rss - base.usage.rss) / keys - bodyBytes,
        heapPerEntry: (heap(cached.usage) - heap(base.usage)) / keys - bodyBytes,
        control: base.usage,
        cached: cached.usage,
      }
      rows.push(row)
      log(`memory ${name} ${keys} keys: ${Math.round(row.rssPerEntry)} B/entry (RSS), ${Math.round(row.heapPerEntry)} B/entry (heap+external) beyond the body`)
    }
  }
  return rows
}

// --- MISS overhead ----------------------------------------------------------------------------

async function missSection(): Promise<MissRow[]> {
  const names = [
    'express5-uncached',
    'cachet-express5-memory-json',
    ...(quick ? [] : ['cachet-express5-redis-msgpack', 'cachet-express5-memory-json-compress-br-ae']),
  ]
  const runs = new Map<string, { p50: number[]; p99: number[]; rps: number[]; cpuUs: number[]; skipped?: string }>()
  for (let rep = 1; rep <= settings.missReps; rep++) {
    for (const bodyBytes of settings.sizes) {
      for (const name of names) {
        const key = `${name}@${bodyBytes}`
        const entry = runs.get(key) ?? { p50: [], p99: [], rps: [], cpuUs: [] }
        runs.set(key, entry)
        if (entry.skipped) continue
        const outcome = await withServer(findVariant(name), bodyBytes, profiling(`miss-${name}`, bodyBytes, rep), async (h) => {
          const load = { port: h.port, connections: settings.missConnections }
          await runLoad({ ...load, seconds: settings.warmup, uniquePrefix: `/warmup/${rep}-` })
          await h.request({ type: 'reset' }, 'ok')
          const { value: result, serverCores } = await measured(h, () => runLoad({ ...load, seconds: settings.missSeconds, uniquePrefix: `/items/${rep}-` }))
          const stats = await h.request({ type: 'stats' }, 'stats')
          if (stats.originCalls < result.requests) throw new Error(`only ${stats.originCalls} origin calls for ${result.requests} requests`)
          // Server CPU per request: what a MISS costs, free of the timer's phase.
          return { ...result, cpuUs: serverCores === undefined ? NaN : (serverCores / result.rps) * 1e6 }
        }).catch((error: Error) => ({ skipped: `error: ${error.message}` }))
        if (isSkip(outcome)) {
          entry.skipped = outcome.skipped
          continue
        }
        entry.p50.push(outcome.p50)
        entry.p99.push(outcome.p99)
        entry.rps.push(outcome.rps)
        if (Number.isFinite(outcome.cpuUs)) entry.cpuUs.push(outcome.cpuUs)
        log(`miss ${name} ${size(bodyBytes)} rep ${rep}: p50 ${outcome.p50.toFixed(3)} ms, p99 ${outcome.p99.toFixed(3)} ms, ${Math.round(outcome.rps)} req/s`)
      }
    }
  }
  const rows: MissRow[] = []
  for (const bodyBytes of settings.sizes) {
    const base = runs.get(`express5-uncached@${bodyBytes}`)
    const baseP50 = base ? median(base.p50) : NaN
    for (const name of names) {
      const entry = runs.get(`${name}@${bodyBytes}`)
      if (!entry) continue
      const p50 = median(entry.p50)
      rows.push({
        variant: name,
        bodyBytes,
        connections: settings.missConnections,
        p50,
        p99: median(entry.p99),
        rps: median(entry.rps),
        cpuUs: entry.cpuUs.length ? median(entry.cpuUs) : undefined,
        p50Ratio: Number.isFinite(baseP50) && Number.isFinite(p50) ? p50 / baseP50 : undefined,
        skipped: entry.skipped,
      })
    }
  }
  return rows
}

// --- invalidate('items:*') --------------------------------------------------------------------

async function invalidateSection(): Promise<InvalidateRow[]> {
  const rows: InvalidateRow[] = []
  const keys = settings.invalidateKeys
  const connections = 10
  for (const name of ['cachet-express5-memory-json', 'cachet-express5-redis-json']) {
    const v = findVariant(name)
    const redis = service('redis')?.endpoint
    const count = async (h: ServerHandle) =>
      v.store === 'redis' && redis ? redisKeyCount(redis) : entriesOf((await h.request({ type: 'stats' }, 'stats')).cacheStats)
    const outcome = await withServer(v, 1024, { delayMs: 0, maxEntries: keys * 2 }, async (h) => {
      // A store write can time out under load (the middleware then serves uncached): fill again
      // until (nearly) every key is held; already stored keys are cheap HITs.
      let keysBefore: number | undefined
      for (let pass = 0; pass < 3 && !((keysBefore ?? 0) >= keys * 0.99); pass++) {
        const failures = await fill(h.port, keys, (i) => `/items/${i}`, 16)
        if (failures) throw new Error(`${failures} failed requests while filling`)
        await get(h.port, '/hot')
        keysBefore = await count(h)
      }
      const load = { port: h.port, path: '/hot', connections, rate: settings.invalidateRate, seconds: settings.invalidateLoadSeconds }
      const baseline = (await pacedLoad(load)).map((s) => s.latency).sort((a, b) => a - b)
      if (!quick) await waitForQuiet(ownPids(h), settings.quietThreshold, settings.quietWaitMs)
      const during = pacedLoad(load)
      await sleep((settings.invalidateLoadSeconds * 1000) / 4)
      const start = performance.now()
      const invalidate = () => h.request({ type: 'invalidate', pattern: 'items:*' }, 'invalidated')
      // On Redis, also how long the server was blocked at a time (its longest single command).
      const measured = v.store === 'redis' && redis ? await longestRedisCommand(redis, invalidate) : { result: await invalidate(), longestMs: undefined }
      const reply = measured.result
      const window = { start, end: performance.now(), ms: reply.ms, removed: reply.removed }
      // Requests in flight at any moment while invalidate() ran (as seen from the runner).
      const overlapping = (await during).filter((s) => s.start <= window.end && s.start + s.latency >= window.start).map((s) => s.latency)
      overlapping.sort((a, b) => a - b)
      const row: InvalidateRow = {
        variant: name,
        keys,
        keysBefore,
        keysAfter: await count(h),
        removed: window.removed,
        ms: window.ms,
        connections,
        rate: settings.invalidateRate,
        baselineP99: percentile(baseline, 99),
        overlapping: overlapping.length,
        duringP99: percentile(overlapping, 99),
        duringMax: overlapping[overlapping.length - 1],
        longestStoreCommandMs: measured.longestMs,
      }
      return row
    }).catch((error: Error) => ({ skipped: `error: ${error.message}` }))
    if (isSkip(outcome)) rows.push({ variant: name, keys, connections, skipped: outcome.skipped })
    else {
      rows.push(outcome)
      log(`invalidate ${name}: ${outcome.removed} removed in ${outcome.ms?.toFixed(1)} ms, overlapping p99 ${outcome.duringP99?.toFixed(2)} ms`)
    }
  }
  return rows
}

// --- invalidateTags(['items']) ---------------------------------------------------------------

async function tagsSection(): Promise<TagsRow[]> {
  const rows: TagsRow[] = []
  const keys = settings.tagKeys
  const hotKeys = Math.min(settings.tagHotKeys, keys)
  const connections = 10
  const names = ['cachet-express5-memory-tags-json', 'cachet-express5-redis-tags-json', ...(quick ? [] : ['cachet-express5-memcached-tags-json'])]
  for (const name of names) {
    const v = findVariant(name)
    const redis = v.store === 'redis' ? service('redis')?.endpoint : undefined
    const memcached = v.store === 'memcached' ? service('memcached')?.endpoint : undefined
    const count = async (h: ServerHandle) =>
      redis ? redisKeyCount(redis) : memcached ? memcachedItemCount(memcached) : entriesOf((await h.request({ type: 'stats' }, 'stats')).cacheStats)
    const outcome = await withServer(v, 1024, { delayMs: 0, maxEntries: keys * 2 }, async (h) => {
      // As in the invalidate section: fill again until (nearly) every key is held.
      let keysBefore: number | undefined
      for (let pass = 0; pass < 3 && !((keysBefore ?? 0) >= keys * 0.99); pass++) {
        const failures = await fill(h.port, keys, (i) => `/items/${i}`, 16)
        if (failures) throw new Error(`${failures} failed requests while filling`)
        keysBefore = await count(h)
      }
      const load = {
        port: h.port,
        path: (n: number) => `/items/${n % hotKeys}`,
        connections,
        rate: settings.invalidateRate,
        seconds: settings.invalidateLoadSeconds,
      }
      const baseline = (await pacedLoad(load)).map((s) => s.latency).sort((a, b) => a - b)
      if (!quick) await waitForQuiet(ownPids(h), settings.quietThreshold, settings.quietWaitMs)
      const during = pacedLoad(load)
      await sleep((settings.invalidateLoadSeconds * 1000) / 4)
      // The window is the IPC round trip of the purge alone, not the SLOWLOG set-up and read around it.
      let [start, end] = [0, 0]
      const purge = async () => {
        start = performance.now()
        const reply = await h.request({ type: 'invalidateTags', tags: ['items'] }, 'tagsInvalidated')
        end = performance.now()
        return reply
      }
      // On Redis, also the longest single command the server ran meanwhile (SLOWLOG at a 0 µs threshold).
      const timed = redis ? await longestRedisCommand(redis, purge) : { result: await purge(), longestMs: undefined }
      const samples = await during
      const overlapping = samples.filter((s) => s.start <= end && s.start + s.latency >= start).map((s) => s.latency)
      overlapping.sort((a, b) => a - b)
      const after = samples.filter((s) => s.start > end)
      const afterOutcomes: Record<string, number> = {}
      for (const s of after) afterOutcomes[s.outcome] = (afterOutcomes[s.outcome] ?? 0) + 1
      // Keys outside the hot set, untouched since the fill: a request must not be a HIT any more.
      const sample = Math.min(200, keys - hotKeys)
      let verified = 0
      for (let i = 0; i < sample; i++) {
        const probe = await get(h.port, `/items/${hotKeys + Math.floor(((keys - hotKeys) * i) / sample)}`)
        if (probe.headers['x-cache'] !== 'HIT') verified++
      }
      const row: TagsRow = {
        variant: name,
        keys,
        keysBefore,
        ms: timed.result.ms,
        connections,
        rate: settings.invalidateRate,
        hotKeys,
        baselineP99: percentile(baseline, 99),
        served: samples.length,
        overlapping: overlapping.length,
        duringP99: percentile(overlapping, 99),
        duringMax: overlapping[overlapping.length - 1],
        afterOutcomes,
        afterP99: percentile(
          after.map((s) => s.latency).sort((a, b) => a - b),
          99,
        ),
        verified,
        verifySample: sample,
        longestStoreCommandMs: timed.longestMs,
      }
      return row
    }).catch((error: Error) => ({ skipped: `error: ${error.message}` }))
    if (isSkip(outcome)) rows.push({ variant: name, keys, connections, skipped: outcome.skipped })
    else {
      rows.push(outcome)
      log(
        `tags ${name}: purge ${outcome.ms?.toFixed(2)} ms over ${outcome.keysBefore} held, ${outcome.overlapping} requests in flight, after: ${JSON.stringify(outcome.afterOutcomes)}, ${outcome.verified}/${outcome.verifySample} no longer HIT${outcome.longestStoreCommandMs === undefined ? '' : `, longest Redis command ${outcome.longestStoreCommandMs.toFixed(2)} ms`}`,
      )
    }
  }
  return rows
}

// --- coalescing -------------------------------------------------------------------------------

async function coalesceSection(): Promise<CoalesceRow[]> {
  const rows: CoalesceRow[] = []
  const concurrent = settings.coalesceConcurrent
  for (const name of ['cachet-express5-memory-json', ...(quick ? [] : ['cachet-express5-redis-json', 'apicache-memory'])]) {
    for (const delayMs of settings.coalesceDelays) {
      const outcome = await withServer(findVariant(name), 1024, { delayMs }, async (h) => {
        const seen = await burst(h.port, '/items/coalesce', concurrent, async () => void (await h.request({ type: 'reset' }, 'ok')))
        const stats = await h.request({ type: 'stats' }, 'stats')
        const xcache: Record<string, number> = {}
        for (const value of seen) xcache[value] = (xcache[value] ?? 0) + 1
        return { variant: name, delayMs, concurrent, originCalls: stats.originCalls, xcache }
      }).catch((error: Error) => ({ skipped: `error: ${error.message}` }))
      if (isSkip(outcome)) rows.push({ variant: name, delayMs, concurrent, skipped: outcome.skipped })
      else {
        rows.push(outcome)
        log(`coalesce ${name} (${delayMs} ms origin): ${outcome.originCalls} origin calls for ${concurrent} concurrent requests`)
      }
    }
  }
  return rows
}

// --- cached() hit overhead ---------------------------------------------------------------------

/** test/bench/cached.ts in its own process, pinned like a server, on the build the servers load. */
async function cachedSection(): Promise<CachedRow[]> {
  const script = path.join(repoRoot, 'test/bench/cached.ts')
  const node = [process.execPath, '--import', 'tsx', script, '--json', '--cachet', cachetBuild]
  node.push('--calls', String(settings.cachedCalls), '--rounds', String(settings.cachedRounds))
  const [command, ...rest] = pinning.serverCpu === undefined ? node : ['taskset', '-c', String(pinning.serverCpu), ...node]
  if (!quick) await waitForQuiet([process.pid], settings.quietThreshold, settings.quietWaitMs)
  const stdout = await new Promise<string>((resolve, reject) =>
    execFile(command, rest, { cwd: repoRoot, timeout: 300_000, maxBuffer: 1 << 20 }, (error, out) => (error ? reject(error) : resolve(out))),
  )
  const line = stdout.trim().split('\n').pop() ?? ''
  const parsed = JSON.parse(line) as { calls: number; rounds: number; rows: Omit<CachedRow, 'calls' | 'rounds'>[] }
  const rows = parsed.rows.map((r) => ({ ...r, calls: parsed.calls, rounds: parsed.rounds }))
  for (const r of rows) log(`cached ${r.subject}: ${r.wallNs.toFixed(0)} ns/op wall, ${r.cpuNs.toFixed(0)} ns/op CPU (${r.overheadNs.toFixed(0)} ns vs Map)`)
  return rows
}

// --- targets ----------------------------------------------------------------------------------

function targets(r: Omit<Results, 'targets'> & { targets?: Target[] }): Target[] {
  const list: Target[] = []
  const ratio = (name: string, variant: string, baseline: string, bodyBytes: number, threshold: number, note?: string, paired = false) => {
    const interleaved = paired ? interleavedHitRatio(r.hits, variant, baseline, bodyBytes) : undefined
    const backToBack = paired ? pairedHitRatio(r.hits, variant, baseline, bodyBytes) : undefined
    const value = interleaved ?? (paired ? backToBack : hitRatio(r.hits, variant, baseline, bodyBytes))
    const perCore = paired
      ? (interleavedHitRatio(r.hits, variant, baseline, bodyBytes, 'perCore') ?? pairedHitRatio(r.hits, variant, baseline, bodyBytes, 'perCore'))
      : hitRatio(r.hits, variant, baseline, bodyBytes, 'rpsPerCore')
    if (paired && value !== undefined) {
      const row = r.hits.find((h) => h.variant === variant && h.bodyBytes === bodyBytes)!
      const ofMedians = hitRatio(r.hits, variant, baseline, bodyBytes)?.toFixed(3)
      const separate = `the separate runs: median of the ${row.runs.length} repetitions' ratios ${backToBack?.toFixed(3)} ×, ratio of the medians ${ofMedians} ×`
      const measured = interleaved === undefined ? undefined : row.interleaved
      note =
        measured === undefined
          ? `median of the ${row.runs.length} repetitions' ratios (the pair measured back to back); ratio of the medians ${ofMedians} ×`
          : `interleaved: median over ${measured.rounds.length} repetitions of req/s in ${measured.rounds[0].tagged.length} windows of ${measured.windowSeconds} s per variant, the two servers loaded in turn, each started first for half of them; ${separate}`
    }
    const rows = [variant, baseline].map((n) => r.hits.find((h) => h.variant === n && h.bodyBytes === bodyBytes))
    const missing = rows.find((h) => h && (h.skipped || !Number.isFinite(h.rps)))
    list.push({
      name: `${name} (${size(bodyBytes)})`,
      value,
      perCore,
      threshold,
      comparison: '>=',
      unit: '×',
      pass: value === undefined ? undefined : value >= threshold,
      note:
        value !== undefined
          ? note
          : missing?.skipped
            ? `${missing.variant} skipped: ${missing.skipped}`
            : missing
              ? `${missing.variant}: ${missing.notes.join('; ') || 'no result'}`
              : 'not measured in this run',
    })
  }
  for (const bodyBytes of [1024, 102400]) {
    // What any Express 5 middleware could reach at best: the ceiling's own ratio to apicache.
    const ceiling = hitRatio(r.hits, 'express5-ceiling', 'apicache-memory', bodyBytes)
    const note = ceiling === undefined ? undefined : `the Express 5 ceiling itself is ${ceiling.toFixed(2)} × apicache here`
    ratio('memory HIT ≥ 1.5 × apicache memory HIT', 'cachet-express5-memory-json', 'apicache-memory', bodyBytes, 1.5, note)
  }
  for (const bodyBytes of [1024, 102400]) {
    ratio('memory HIT ≥ 0.9 × Express ceiling', 'cachet-express5-memory-json', 'express5-ceiling', bodyBytes, 0.9)
  }
  for (const coder of ['json', 'msgpack']) {
    ratio(`Redis HIT (${coder}) ≥ 0.8 × memory HIT`, `cachet-express5-redis-${coder}`, 'cachet-express5-memory-json', 1024, 0.8)
  }
  for (const bodyBytes of [1024, 102400]) {
    ratio('Redis HIT with local: {} ≥ 0.95 × memory HIT', 'cachet-express5-redis-local-json', 'cachet-express5-memory-json', bodyBytes, 0.95)
  }
  for (const coder of ['json', 'msgpack']) {
    ratio(`Redis HIT (${coder}) ≥ 20 × apicache Redis HIT`, `cachet-express5-redis-${coder}`, 'apicache-redis', 102400, 20)
    ratio(
      `Redis HIT (${coder}) ≥ 20 × apicache Redis HIT [proxy: ioredis + connected shim]`,
      `cachet-express5-redis-${coder}`,
      'apicache-redis-ioredis-shim',
      102400,
      20,
      'apicache driven through ioredis, not the node-redis v3 client it expects',
    )
  }
  for (const bodyBytes of [1024, 102400]) {
    // The front door is node:http plus a lookup: it cannot pass raw node:http, so 3 × apicache is
    // out of reach wherever apicache itself comes within 3 × of raw node:http.
    const apicache = hitRatio(r.hits, 'apicache-memory', 'node-raw', bodyBytes)
    const note = apicache === undefined ? undefined : `apicache itself is ${apicache.toFixed(2)} × raw node:http here`
    ratio('front door (cache.serve) memory HIT ≥ 3 × apicache memory HIT', 'cachet-express5-frontdoor-memory-json', 'apicache-memory', bodyBytes, 3, note)
    ratio('front door (cache.serve) memory HIT ≥ 0.8 × raw node:http', 'cachet-express5-frontdoor-memory-json', 'node-raw', bodyBytes, 0.8)
  }
  for (const bodyBytes of [1024, 102400]) {
    ratio('connect/node:http memory HIT ≥ 0.6 × raw node:http', 'cachet-connect-memory-json', 'node-raw', bodyBytes, 0.6)
  }
  const measures = [
    ['RSS', 'rssPerEntry'],
    ['heap+external', 'heapPerEntry'],
  ] as const
  for (const m of r.memory.filter((m) => m.variant === 'cachet-express5-memory-json' && m.bodyBytes === 1024)) {
    for (const [label, field] of measures) {
      const value = m[field]
      list.push({
        name: `memory overhead per entry beyond body, ${label} (${m.keys.toLocaleString('en-US')} keys, 1 KB)`,
        value: m.skipped ? undefined : value,
        threshold: 600,
        comparison: '<=',
        unit: ' B',
        pass: m.skipped || !Number.isFinite(value) ? undefined : value <= 600,
        note: m.skipped ?? (m.entries !== undefined && m.entries < m.keys ? `only ${m.entries} entries held` : undefined),
      })
    }
  }
  // Per entry as the slope between the two fills: what one more entry costs, without the fixed
  // cost (cachet's code and pools) that the per-fill figures spread over their keys.
  const fills = r.memory.filter((m) => m.variant === 'cachet-express5-memory-json' && m.bodyBytes === 1024 && !m.skipped).sort((a, b) => a.keys - b.keys)
  if (fills.length >= 2) {
    const [small, large] = [fills[0], fills[fills.length - 1]]
    for (const [label, field] of measures) {
      const total = (m: MemoryRow) => (m[field] + m.bodyBytes) * m.keys
      const value = (total(large) - total(small)) / (large.keys - small.keys) - large.bodyBytes
      list.push({
        name: `memory overhead per entry beyond body, ${label}, marginal (${small.keys.toLocaleString('en-US')} → ${large.keys.toLocaleString('en-US')} keys, 1 KB)`,
        value,
        threshold: 600,
        comparison: '<=',
        unit: ' B',
        pass: Number.isFinite(value) ? value <= 600 : undefined,
        note: 'slope between the two fills: the fixed cost is not spread over the keys',
      })
    }
  }
  for (const m of r.miss.filter((m) => m.variant === 'cachet-express5-memory-json')) {
    const value = m.p50Ratio === undefined ? undefined : (m.p50Ratio - 1) * 100
    const base = r.miss.find((b) => b.variant === 'express5-uncached' && b.bodyBytes === m.bodyBytes)
    const cpu =
      m.cpuUs !== undefined && base?.cpuUs !== undefined && base.p50 > 0
        ? `server CPU per request ${m.cpuUs.toFixed(0)} µs vs ${base.cpuUs.toFixed(0)} µs uncached: ${m.cpuUs >= base.cpuUs ? '+' : ''}${(m.cpuUs - base.cpuUs).toFixed(0)} µs, ${(((m.cpuUs - base.cpuUs) / 1000 / base.p50) * 100).toFixed(1)} % of the uncached p50`
        : undefined
    list.push({
      name: `MISS adds ≤ 5 % to p50 (memory, ${size(m.bodyBytes)}, ${m.connections} connections)`,
      value,
      threshold: 5,
      comparison: '<=',
      unit: ' %',
      pass: value === undefined ? undefined : value <= 5,
      note: m.skipped ?? cpu,
    })
  }
  for (const store of ['memory', 'redis', 'memcached']) {
    for (const bodyBytes of [1024, 102400]) {
      ratio(`${store} HIT with tags ≥ 0.95 × without`, `cachet-express5-${store}-tags-json`, `cachet-express5-${store}-json`, bodyBytes, 0.95, undefined, true)
    }
  }
  for (const store of ['redis', 'memcached']) {
    for (const bodyBytes of [1024, 102400]) {
      ratio(
        `${store} HIT with local: {} and tags ≥ 0.95 × without tags`,
        `cachet-express5-${store}-local-tags-json`,
        `cachet-express5-${store}-local-json`,
        bodyBytes,
        0.95,
        undefined,
        true,
      )
    }
  }
  for (const t of (r.tags ?? []).filter((t) => t.variant === 'cachet-express5-memory-tags-json')) {
    list.push({
      name: `invalidateTags() over ${t.keys.toLocaleString('en-US')} entries under one tag in memory`,
      value: t.ms,
      threshold: 1,
      comparison: '<',
      unit: ' ms',
      pass: t.ms === undefined ? undefined : t.ms < 1,
      note:
        t.skipped ??
        (t.verified !== undefined && t.verified < (t.verifySample ?? 0) ? `only ${t.verified} of ${t.verifySample} sampled entries no longer HIT` : undefined),
    })
  }
  for (const i of r.invalidate.filter((i) => i.variant === 'cachet-express5-memory-json')) {
    list.push({
      name: `invalidate('items:*') over ${i.keys.toLocaleString('en-US')} keys in memory`,
      value: i.ms,
      threshold: 100,
      comparison: '<',
      unit: ' ms',
      pass: i.ms === undefined ? undefined : i.ms < 100,
      note: i.skipped,
    })
  }
  for (const i of r.invalidate.filter((i) => i.variant === 'cachet-express5-redis-json')) {
    const value = i.longestStoreCommandMs
    list.push({
      name: `invalidate('items:*') over ${i.keys.toLocaleString('en-US')} keys never blocks Redis > 10 ms at a time (longest command)`,
      value,
      threshold: 10,
      comparison: '<=',
      unit: ' ms',
      pass: value === undefined ? undefined : value <= 10,
      note: i.skipped,
    })
  }
  return list
}

// --- main -------------------------------------------------------------------------------------

async function main(): Promise<void> {
  log(
    `sections: ${[...sections].join(', ')}; ${sections.has('hit') ? `${selected.length} HIT variants × ${settings.sizes.length} sizes × ${settings.reps} reps` : ''}`,
  )
  log(`pinning: ${pinning.description}`)
  if (args['cpu-prof']) mkdirSync(profileDir, { recursive: true })
  const startedAt = Date.now()
  // A failing section is reported and the others still run: a long run is never lost to one error.
  const errors: string[] = []
  const section = async <T>(name: Section, run: () => Promise<T[]>): Promise<T[]> => {
    if (!sections.has(name)) return []
    try {
      return await run()
    } catch (error) {
      errors.push(`${name}: ${(error as Error).message}`)
      log(`section ${name} failed: ${(error as Error).stack}`)
      return []
    }
  }
  const hits = await section('hit', hitSection)
  const memory = await section('memory', memorySection)
  const miss = await section('miss', missSection)
  const invalidate = await section('invalidate', invalidateSection)
  const tags = await section('tags', tagsSection)
  const coalesce = await section('coalesce', coalesceSection)
  const cached = await section('cached', cachedSection)
  const partialResults = {
    date: new Date().toISOString(),
    command,
    revision: revision(),
    machine: machine(pinning.description, services),
    settings: { ...settings, sections: [...sections], elapsedSeconds: Math.round((Date.now() - startedAt) / 1000) },
    contention: cpuLog.length
      ? {
          measurements: cpuLog.length,
          medianForeignCores: median(cpuLog.map((c) => c.foreign)),
          maxForeignCores: Math.max(...cpuLog.map((c) => c.foreign)),
          noisyMeasurements: cpuLog.filter((c) => c.foreign > settings.quietThreshold).length,
          waitedSeconds: cpuLog.reduce((sum, c) => sum + c.waitedMs, 0) / 1000,
        }
      : undefined,
    hits,
    memory,
    miss,
    invalidate,
    coalesce,
    cached,
    tags,
    errors,
  }
  const results: Results = { ...partialResults, targets: targets(partialResults) }
  const report = markdown(results)
  process.stdout.write(`\n${report}`)
  mkdirSync(outDir, { recursive: true })
  writeFileSync(path.join(outDir, 'latest.md'), report)
  writeFileSync(path.join(outDir, 'latest.json'), JSON.stringify(results, (_k, v: unknown) => (Number.isNaN(v) ? null : v), 2) + '\n')
  writeFileSync(path.join(outDir, 'chart.svg'), svgChart(results))
  log(`wrote ${path.relative(repoRoot, outDir)}/latest.md, latest.json, chart.svg`)

  if (args['cpu-prof']) {
    // In each server's directory, summarise the busiest profile: the main thread's.
    const summaries = readdirSync(profileDir, { withFileTypes: true })
      .filter((d) => d.isDirectory() && statSync(path.join(profileDir, d.name)).mtimeMs >= startedAt)
      .flatMap((d) => {
        const dir = path.join(profileDir, d.name)
        const busiest = readdirSync(dir)
          .filter((f) => f.endsWith('.cpuprofile'))
          .map((f) => summariseProfile(path.join(dir, f), repoRoot))
          .sort((a, b) => b.busyMs - a.busyMs)[0]
        return busiest ? [profileMarkdown(busiest, d.name)] : []
      })
    const text = summaries.join('\n\n') + '\n'
    writeFileSync(path.join(profileDir, 'summary.md'), text)
    process.stdout.write(`\n${text}`)
    log(`CPU profiles in ${path.relative(repoRoot, profileDir)}/ (summary.md)`)
  }
}

try {
  await main()
} finally {
  await stopServices()
}
process.exit(0)
