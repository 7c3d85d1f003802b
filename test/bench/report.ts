/** Benchmark results: the data shape, the markdown report, the JSON file and a hand-written SVG bar chart. */
import { median, type LoadResult } from './load.js'

export interface HitRow {
  variant: string
  description: string
  kind: string
  bodyBytes: number
  runs: LoadResult[]
  /** Medians over the repetitions. */
  rps: number
  p50: number
  p99: number
  /** Median of req/s divided by the CPU cores the server process used: throughput per server CPU-second. */
  rpsPerCore: number
  perCore: number[]
  /** CPU cores the server process used in each measurement (below ~0.95: the server was not the bottleneck). */
  serverCpu: number[]
  /** CPU cores used by other processes on the machine during each measurement. */
  foreignCpu: number[]
  /** Origin handler calls during each measurement (cached variants should show 0). */
  originCalls: number[]
  /** X-Cache (or status) of the probe request sent after the first MISS. */
  probe?: string
  skipped?: string
  notes: string[]
  /**
   * A tagged variant's interleaved measurement against its untagged `baseline`: per repetition,
   * the req/s of each window of each server (see `interleavedPairs` in run.ts).
   */
  interleaved?: {
    baseline: string
    windowSeconds: number
    /** Per repetition: each window's req/s, and the cores the server used in it (NaN where /proc is not available). */
    rounds: { tagged: number[]; untagged: number[]; taggedCores?: number[]; untaggedCores?: number[] }[]
  }
}

export interface MemoryRow {
  variant: string
  keys: number
  bodyBytes: number
  entries?: number
  /** Bytes per entry beyond the body, from RSS and from heapUsed + external. */
  rssPerEntry: number
  heapPerEntry: number
  control: NodeJS.MemoryUsage
  cached: NodeJS.MemoryUsage
  skipped?: string
}

export interface MissRow {
  variant: string
  bodyBytes: number
  connections: number
  p50: number
  p99: number
  rps: number
  /** p50 relative to the uncached route at the same size (1.03 = +3 %). */
  p50Ratio?: number
  /** Server CPU per request in µs (median over the repetitions). */
  cpuUs?: number
  skipped?: string
}

export interface InvalidateRow {
  variant: string
  keys: number
  keysBefore?: number
  keysAfter?: number
  removed?: number
  ms?: number
  connections: number
  /** Fixed request rate of the concurrent HIT load (req/s). */
  rate?: number
  baselineP99?: number
  /** Requests in flight while invalidate() ran: count, p99 and max latency. */
  overlapping?: number
  duringP99?: number
  duringMax?: number
  /** Redis only: the longest single command the server ran while invalidate() did (SLOWLOG). */
  longestStoreCommandMs?: number
  skipped?: string
}

export interface TagsRow {
  variant: string
  /** Entries filled under the tag `items` (each also `item:<id>`). */
  keys: number
  keysBefore?: number
  /** invalidateTags(['items']) as timed in the server. */
  ms?: number
  connections: number
  rate?: number
  /** Tagged keys the paced load cycles over (HITs before the purge, each one MISS after it). */
  hotKeys?: number
  baselineP99?: number
  /** Requests served during the loaded window, and those in flight while invalidateTags() ran. */
  served?: number
  overlapping?: number
  duringP99?: number
  duringMax?: number
  /** X-Cache of the requests sent after the purge, and their p99. */
  afterOutcomes?: Record<string, number>
  afterP99?: number
  /** Filled entries outside the hot set requested after the load: how many were no longer served as HITs. */
  verified?: number
  verifySample?: number
  longestStoreCommandMs?: number
  skipped?: string
}

export interface CoalesceRow {
  variant: string
  delayMs: number
  concurrent: number
  originCalls?: number
  xcache?: Record<string, number>
  skipped?: string
}

/** One subject of the cached() micro-benchmark (test/bench/cached.ts): ns per awaited hit. */
export interface CachedRow {
  subject: string
  calls: number
  rounds: number
  /** Wall time per call: median, min and max over the rounds. */
  wallNs: number
  wallMinNs: number
  wallMaxNs: number
  /** CPU time (user + system) per call, median over the rounds. */
  cpuNs: number
  /** cpuNs minus the Map memoiser's: what cached() adds per call. */
  overheadNs: number
  skipped?: string
}

export interface Target {
  name: string
  value?: number
  /** The same ratio computed on req/s per server CPU-second (robust to other load on the machine). */
  perCore?: number
  threshold: number
  comparison: '>=' | '<=' | '<'
  unit: string
  pass?: boolean
  note?: string
}

export interface Machine {
  cpu: string
  cores: number
  node: string
  os: string
  pinning: string
  /** 1/5/15-minute load averages when the run started and ended (other work on the machine skews results). */
  loadBefore: string
  loadAfter: string
  redis?: string
  memcached?: string
  services: string[]
}

export interface Results {
  date: string
  command: string
  revision: string
  machine: Machine
  settings: Record<string, unknown>
  /** How busy the rest of the machine was during the measured windows. */
  contention?: { measurements: number; medianForeignCores: number; maxForeignCores: number; noisyMeasurements: number; waitedSeconds: number }
  hits: HitRow[]
  memory: MemoryRow[]
  miss: MissRow[]
  invalidate: InvalidateRow[]
  coalesce: CoalesceRow[]
  /** Absent from results written before the sections existed. */
  cached?: CachedRow[]
  tags?: TagsRow[]
  /** Sections that failed. */
  errors: string[]
  targets: Target[]
}

export const BASELINES = ['node-raw', 'express5-ceiling', 'apicache-memory'] as const

/** One markdown table cell: first line only, pipes escaped. */
const cell = (text: string | undefined) => (text ?? '').split('\n')[0].replace(/\|/g, '\\|')
const fmt = (value: number | undefined, digits = 2) => (value === undefined || !Number.isFinite(value) ? 'n/a' : value.toFixed(digits))
const int = (value: number | undefined) => (value === undefined || !Number.isFinite(value) ? 'n/a' : Math.round(value).toLocaleString('en-US'))
export const size = (bytes: number) => (bytes >= 1024 ? `${Math.round(bytes / 1024)} KB` : `${bytes} B`)

export function hitRatio(hits: HitRow[], variant: string, baseline: string, bodyBytes: number, metric: 'rps' | 'rpsPerCore' = 'rps'): number | undefined {
  const row = hits.find((h) => h.variant === variant && h.bodyBytes === bodyBytes && !h.skipped)
  const base = hits.find((h) => h.variant === baseline && h.bodyBytes === bodyBytes && !h.skipped)
  if (!row || !base || !(base[metric] > 0) || !Number.isFinite(row[metric])) return undefined
  return row[metric] / base[metric]
}

/**
 * The median of the per-repetition ratios of `variant` to `baseline`: each repetition measures the
 * two back to back (see `hitOrder` in run.ts), so drift between repetitions cancels out.
 */
export function pairedHitRatio(hits: HitRow[], variant: string, baseline: string, bodyBytes: number, metric: 'runs' | 'perCore' = 'runs'): number | undefined {
  const row = hits.find((h) => h.variant === variant && h.bodyBytes === bodyBytes && !h.skipped)
  const base = hits.find((h) => h.variant === baseline && h.bodyBytes === bodyBytes && !h.skipped)
  if (!row || !base || row[metric].length === 0 || row[metric].length !== base[metric].length) return undefined
  const values = (h: HitRow) => (metric === 'runs' ? h.runs.map((run) => run.rps) : h.perCore)
  const [a, b] = [values(row), values(base)]
  if (b.some((x) => !(x > 0))) return undefined
  return median(a.map((x, i) => x / b[i]))
}

type InterleavedRound = NonNullable<HitRow['interleaved']>['rounds'][number]

/**
 * One repetition of an interleaved pair: the tagged server's req/s summed over its windows over
 * the untagged one's; with `perCore`, of its requests per server CPU-second (the windows last the
 * same time, so req/s summed over cores summed is requests per CPU-second).
 */
export function roundRatio(r: InterleavedRound, metric: 'rps' | 'perCore' = 'rps'): number {
  const sum = (values: number[] = []) => values.reduce((a, b) => a + b, 0)
  return metric === 'rps' ? sum(r.tagged) / sum(r.untagged) : sum(r.tagged) / sum(r.taggedCores) / (sum(r.untagged) / sum(r.untaggedCores))
}

/** The median over the repetitions of a tagged variant's interleaved ratio to `baseline` (see `roundRatio`). */
export function interleavedHitRatio(
  hits: HitRow[],
  variant: string,
  baseline: string,
  bodyBytes: number,
  metric: 'rps' | 'perCore' = 'rps',
): number | undefined {
  const rounds = hits.find((h) => h.variant === variant && h.bodyBytes === bodyBytes && !h.skipped)?.interleaved
  if (!rounds || rounds.baseline !== baseline || rounds.rounds.length === 0) return undefined
  const ratios = rounds.rounds.map((r) => roundRatio(r, metric)).filter((x) => Number.isFinite(x) && x > 0)
  return ratios.length ? median(ratios) : undefined
}

export function markdown(results: Results): string {
  const { machine } = results
  const out: string[] = [
    '# cachet benchmark results',
    '',
    `- date: ${results.date}`,
    `- command: \`${results.command}\``,
    `- revision: ${results.revision}`,
    `- machine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.os}`,
    `- pinning: ${machine.pinning}`,
    `- load average (1/5/15 min): ${machine.loadBefore} at start, ${machine.loadAfter} at end`,
    `- services: ${machine.services.join('; ') || 'none'}${machine.redis ? `; ${machine.redis}` : ''}${machine.memcached ? `; ${machine.memcached}` : ''}`,
    `- other processes during measurements: ${
      results.contention
        ? `median ${fmt(results.contention.medianForeignCores)} cores, max ${fmt(results.contention.maxForeignCores)} cores; ${results.contention.noisyMeasurements} of ${results.contention.measurements} measurements above the quiet threshold after waiting (${fmt(results.contention.waitedSeconds, 0)} s waited in total)`
        : 'not measured'
    }`,
    `- settings: ${Object.entries(results.settings)
      .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('/') : String(v)}`)
      .join(', ')}`,
    '',
    'Every variant runs in its own server process; autocannon drives it from the runner process. cachet is loaded as it is published:',
    'src/ built by tsup at the start of the run (ESM, dependencies external). Each measurement is preceded by a',
    'probe request (the first MISS) and a warm-up run. Figures are medians over the repetitions; latencies are exact per-request',
    'timings in milliseconds; ratios divide medians of the same run, except the tagged ÷ untagged ones: per repetition, both',
    'servers of such a pair run at once and the load switches between them every second (ABBA, BAAB), and the ratio is the median',
    "of the repetitions' ratios over those windows (the rows below are the separate runs, in which the two variants of a pair run",
    'back to back, in turn first). "origin calls" counts handler runs during the measured window',
    '(a cached variant that really serves HITs shows 0). "other CPU" is the median number of cores used by processes outside the',
    'benchmark during the measured windows (each measurement first waits, up to a limit, for the machine to be quiet).',
    '"req per server CPU-s" divides req/s by the CPU the server process used in the window: it is far less sensitive to other',
    'load on the machine than req/s, and the targets show the ratio on it too ("per CPU"). "server CPU" is the cores the server',
    'process used: well below 1, the server was not the bottleneck (the load generator on the other core, or waiting on a store).',
    '',
    '## HIT throughput',
    '',
    '| variant | body | req/s | req/s min–max | p50 ms | p99 ms | × node-raw | × express5-ceiling | × apicache-memory | req per server CPU-s | server CPU | origin calls | other CPU | notes |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ]
  for (const row of results.hits) {
    if (row.skipped) {
      out.push(`| ${row.variant} | ${size(row.bodyBytes)} | skipped | | | | | | | | | | | skipped: ${cell(row.skipped)} |`)
      continue
    }
    const ratios = BASELINES.map((b) => fmt(hitRatio(results.hits, row.variant, b, row.bodyBytes)))
    const origin = row.originCalls.length ? row.originCalls.join('/') : 'n/a'
    const all = row.runs.map((r) => r.rps)
    const spread = all.length > 1 ? `${int(Math.min(...all))}–${int(Math.max(...all))}` : ''
    out.push(
      `| ${row.variant} | ${size(row.bodyBytes)} | ${int(row.rps)} | ${spread} | ${fmt(row.p50)} | ${fmt(row.p99)} | ${ratios.join(' | ')} | ${int(row.rpsPerCore)} | ${fmt(median(row.serverCpu))} | ${origin} | ${fmt(median(row.foreignCpu))} | ${cell(row.notes.join('; '))} |`,
    )
  }
  out.push('', 'Variants:', '')
  const seen = new Set<string>()
  for (const row of results.hits) {
    if (seen.has(row.variant)) continue
    seen.add(row.variant)
    out.push(`- \`${row.variant}\`: ${row.description}`)
  }

  if (results.memory.length) {
    out.push(
      '',
      '## Memory per cached entry (memory store, after gc)',
      '',
      'Same requests sent to an uncached control server and to the cached server; per entry = (cached − control) / keys − body bytes.',
      '',
      '| variant | keys | body | entries held | RSS B/entry beyond body | heap+external B/entry beyond body |',
      '| --- | ---: | --- | ---: | ---: | ---: |',
    )
    for (const m of results.memory) {
      if (m.skipped) out.push(`| ${m.variant} | ${int(m.keys)} | ${size(m.bodyBytes)} | | | skipped: ${cell(m.skipped)} |`)
      else out.push(`| ${m.variant} | ${int(m.keys)} | ${size(m.bodyBytes)} | ${int(m.entries)} | ${int(m.rssPerEntry)} | ${int(m.heapPerEntry)} |`)
    }
  }

  if (results.miss.length) {
    out.push(
      '',
      '## MISS overhead (unique URL per request, every request a MISS, 5 ms origin)',
      '',
      '| variant | body | connections | req/s | p50 ms | p99 ms | p50 vs uncached | server CPU µs per request |',
      '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    )
    for (const m of results.miss) {
      if (m.skipped) out.push(`| ${m.variant} | ${size(m.bodyBytes)} | ${m.connections} | | | | | skipped: ${cell(m.skipped)} |`)
      else {
        const delta = m.p50Ratio === undefined ? '' : `${m.p50Ratio >= 1 ? '+' : ''}${fmt((m.p50Ratio - 1) * 100, 1)} %`
        out.push(
          `| ${m.variant} | ${size(m.bodyBytes)} | ${m.connections} | ${int(m.rps)} | ${fmt(m.p50, 3)} | ${fmt(m.p99, 3)} | ${delta} | ${m.cpuUs === undefined ? '' : fmt(m.cpuUs, 0)} |`,
        )
      }
    }
  }

  if (results.invalidate.length) {
    out.push(
      '',
      "## invalidate('items:*')",
      '',
      'Keys filled through the middleware (one request per key), then invalidate() while a load of HITs on an unrelated key runs.',
      '',
      '| variant | keys filled | held before | removed | left after | time ms | concurrent load | p99 ms before | requests overlapping | p99 ms overlapping | max ms overlapping | longest Redis command ms |',
      '| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |',
    )
    for (const r of results.invalidate) {
      if (r.skipped) out.push(`| ${r.variant} | ${int(r.keys)} | | | | | | | | | | skipped: ${cell(r.skipped)} |`)
      else
        out.push(
          `| ${r.variant} | ${int(r.keys)} | ${int(r.keysBefore)} | ${int(r.removed)} | ${int(r.keysAfter)} | ${fmt(r.ms, 1)} | ${r.rate ?? 'max'} req/s over ${r.connections} conns | ${fmt(r.baselineP99)} | ${int(r.overlapping)} | ${fmt(r.duringP99)} | ${fmt(r.duringMax)} | ${r.longestStoreCommandMs === undefined ? 'n/a' : fmt(r.longestStoreCommandMs, 2)} |`,
        )
    }
  }

  if (results.tags?.length) {
    out.push(
      '',
      "## invalidateTags(['items'])",
      '',
      'Entries filled through the middleware, every response tagged `Surrogate-Key: items item:<id>`; then a paced load cycles over',
      "a hot set of those keys (HITs) while `invalidateTags(['items'])` runs. Tag invalidation is lazy: it records a mark for the tag",
      'and entries are compared with it when read, so each hot key is one MISS after the purge, then a HIT again. "held before" counts',
      'store keys (memory: entries; Redis: DBSIZE; memcached: curr_items, where an entry may take more than one item). "in flight"',
      'counts requests overlapping the purge call\'s round trip from the runner; "no longer HIT" requests filled keys outside the',
      'hot set afterwards.',
      '',
      '| variant | entries under the tag | held before | purge ms | paced load | p99 ms before | requests served | in flight during purge | p99 / max ms in flight | after the purge | p99 ms after | no longer HIT | longest Redis command ms |',
      '| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |',
    )
    for (const r of results.tags) {
      if (r.skipped) out.push(`| ${r.variant} | ${int(r.keys)} | | | | | | | | | | | skipped: ${cell(r.skipped)} |`)
      else {
        const after = Object.entries(r.afterOutcomes ?? {})
          .map(([k, v]) => `${k}×${v}`)
          .join(', ')
        out.push(
          `| ${r.variant} | ${int(r.keys)} | ${int(r.keysBefore)} | ${fmt(r.ms, 2)} | ${r.rate} req/s over ${r.connections} conns, ${int(r.hotKeys)} hot keys | ${fmt(r.baselineP99)} | ${int(r.served)} | ${int(r.overlapping)} | ${fmt(r.duringP99)} / ${fmt(r.duringMax)} | ${after} | ${fmt(r.afterP99)} | ${int(r.verified)} of ${int(r.verifySample)} | ${r.longestStoreCommandMs === undefined ? 'n/a' : fmt(r.longestStoreCommandMs, 2)} |`,
        )
      }
    }
  }

  if (results.coalesce.length) {
    out.push(
      '',
      '## Coalescing: concurrent misses on one key',
      '',
      '| variant | origin delay | concurrent requests | origin calls | X-Cache seen |',
      '| --- | ---: | ---: | ---: | --- |',
    )
    for (const c of results.coalesce) {
      if (c.skipped) out.push(`| ${c.variant} | ${c.delayMs} ms | ${c.concurrent} | | skipped: ${cell(c.skipped)} |`)
      else {
        const seen = Object.entries(c.xcache ?? {})
          .map(([k, v]) => `${k}×${v}`)
          .join(', ')
        out.push(`| ${c.variant} | ${c.delayMs} ms | ${c.concurrent} | ${int(c.originCalls)} | ${seen} |`)
      }
    }
  }

  if (results.cached?.length) {
    const first = results.cached.find((c) => !c.skipped)
    out.push(
      '',
      '## cached(): hit overhead per call',
      '',
      `${first ? `${int(first.calls)} sequential awaited hits of one key × ${first.rounds} interleaved rounds` : 'not measured'}, in one process pinned like a server (two arguments: a`,
      'number and a 2-key object; cachet built as published). The baseline is a plain `Map`-backed async memoiser keyed by',
      '`JSON.stringify(args)` in the same process; "overhead" is the difference in CPU time per call.',
      '',
      '| subject | wall ns/op | wall min–max | CPU ns/op | overhead vs Map (CPU) |',
      '| --- | ---: | ---: | ---: | ---: |',
    )
    for (const c of results.cached) {
      if (c.skipped) out.push(`| ${c.subject} | | | | skipped: ${cell(c.skipped)} |`)
      else out.push(`| ${c.subject} | ${int(c.wallNs)} | ${int(c.wallMinNs)}–${int(c.wallMaxNs)} | ${int(c.cpuNs)} | ${int(c.overheadNs)} ns |`)
    }
  }

  if (results.errors.length) out.push('', '## Section errors', '', ...results.errors.map((e) => `- ${cell(e)}`))
  out.push(
    '',
    '## Targets',
    '',
    'Judged on the first value (req/s, p50, bytes or ms as named); "per CPU" repeats a throughput ratio on req per server CPU-second.',
    '',
    '| target | value | threshold | result | per CPU | note |',
    '| --- | ---: | ---: | --- | ---: | --- |',
  )
  for (const t of results.targets) {
    const verdict = t.pass === undefined ? 'n/a' : t.pass ? 'pass' : 'MISS'
    const perCore = t.perCore === undefined ? '' : `${fmt(t.perCore, 3)}${t.unit} (${t.comparison === '>=' && t.perCore >= t.threshold ? 'pass' : 'miss'})`
    out.push(
      `| ${t.name} | ${fmt(t.value, t.unit === '×' ? 3 : 1)}${t.unit} | ${t.comparison} ${t.threshold}${t.unit} | ${verdict} | ${perCore} | ${cell(t.note)} |`,
    )
  }
  return out.join('\n') + '\n'
}

const escapeXml = (text: string) => text.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c] ?? c)
const COLOURS: Record<string, string> = { cachet: '#2f6fdf', apicache: '#e8833a', 'route-cache': '#d9b13b' }

/** Horizontal bars of median req/s, one panel per body size, each scaled to its own maximum. */
export function svgChart(results: Results): string {
  const width = 960
  const labelWidth = 260
  const barArea = width - labelWidth - 110
  const rowHeight = 18
  const parts: string[] = []
  let y = 30
  const sizes = [...new Set(results.hits.map((h) => h.bodyBytes))]
  for (const bodyBytes of sizes) {
    const rows = results.hits.filter((h) => h.bodyBytes === bodyBytes && !h.skipped)
    const max = Math.max(1, ...rows.map((r) => r.rps))
    parts.push(`<text x="10" y="${y}" font-weight="bold">${escapeXml(`${size(bodyBytes)} JSON body: median req/s`)}</text>`)
    y += 10
    for (const row of rows) {
      const w = Math.max(1, (row.rps / max) * barArea)
      const colour = COLOURS[row.kind] ?? '#8a8f98'
      parts.push(
        `<text x="${labelWidth - 6}" y="${y + 13}" text-anchor="end">${escapeXml(row.variant)}</text>`,
        `<rect x="${labelWidth}" y="${y + 2}" width="${w.toFixed(1)}" height="${rowHeight - 4}" fill="${colour}"/>`,
        `<text x="${(labelWidth + w + 6).toFixed(1)}" y="${y + 13}">${Math.round(row.rps).toLocaleString('en-US')}</text>`,
      )
      y += rowHeight
    }
    y += 30
  }
  const legend = Object.entries({ ...COLOURS, baseline: '#8a8f98' })
    .map(
      ([name, colour], i) =>
        `<rect x="${10 + i * 130}" y="${y - 12}" width="12" height="12" fill="${colour}"/><text x="${28 + i * 130}" y="${y - 2}">${name}</text>`,
    )
    .join('')
  const height = y + 10
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    ...parts,
    legend,
    '</svg>',
    '',
  ].join('\n')
}
