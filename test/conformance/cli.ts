// CLI: npx tsx test/conformance/cli.ts [--store memory|redis|memcached|none|all] [--grep id|/re/] [--dump] [--explain] [--published] [--json file]
import { writeFileSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { explainTest, loadSuites, runConformance, summarisePublished, VERDICT_SYMBOL } from './run.js'
import type { Summary } from './run.js'
import { evaluateGate, loadAllowlist } from './gate.js'
import type { GateResult } from './gate.js'
import { errorLines, makeTarget, STORES, unavailable } from './targets.js'
import type { StoreName } from './targets.js'

const USAGE = `usage: npx tsx test/conformance/cli.ts [options]
  --store S     memory (default), redis, memcached, none (pass-through control), or all
  --grep G      only tests whose id contains G (or matches /regex/), plus their dependencies
  --dump        with --grep: log the suite's client and server view of each request
  --explain     print the definition (requests, origin headers, expectations) of each failing test
  --published   also summarise the published results shipped in http-cache-tests/results
  --json FILE   write the summaries as JSON
Exit status: 0 when every run passes the gate, 1 otherwise.`

const { values } = parseArgs({
  options: {
    store: { type: 'string', default: 'memory' },
    grep: { type: 'string' },
    dump: { type: 'boolean', default: false },
    explain: { type: 'boolean', default: false },
    published: { type: 'boolean', default: false },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
})
if (values.help === true) {
  console.log(USAGE)
  process.exit(0)
}
const storeArg = values.store ?? 'memory'
const stores: StoreName[] =
  storeArg === 'all'
    ? STORES.filter((s) => s !== 'none')
    : storeArg.split(',').map((s) => {
        if (!(STORES as readonly string[]).includes(s)) {
          console.error(`unknown store ${s}\n${USAGE}`)
          process.exit(2)
        }
        return s as StoreName
      })

const pad = (value: string | number, width: number): string => String(value).padStart(width)

function table(rows: Summary[]): string {
  const head = ['', 'tests', 'pass', 'req fail', 'opt fail', 'dep fail', 'setup', 'harness', 'yes', 'no', 'freshness-none', 'time']
  const widths = [Math.max(28, ...rows.map((r) => r.label.length)), 5, 5, 8, 8, 8, 5, 7, 4, 4, 14, 6]
  const line = (cells: (string | number)[]): string => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[0]) : pad(c, widths[i]))).join('  ')
  return [
    line(head),
    ...rows.map((r) =>
      line([
        r.label,
        r.total,
        r.pass,
        r.requiredFailures.length,
        r.optionalFailures.length,
        r.dependencyFailures.length,
        r.setupFailures.length,
        r.harnessErrors.length,
        r.counts.yes,
        r.counts.no,
        `${VERDICT_SYMBOL[r.freshnessNone]} ${r.freshnessNone}`,
        r.durationMs > 0 ? `${(r.durationMs / 1000).toFixed(1)}s` : '-',
      ]),
    ),
  ].join('\n')
}

function report(summary: Summary, gate: GateResult): void {
  console.log(`\n== ${summary.label}: gate ${gate.ok ? 'PASSED' : 'FAILED'}`)
  for (const problem of gate.problems) console.log(`  ✗ ${problem}`)
  if (summary.requiredFailures.length > 0) {
    console.log(`\n  Required failures (${summary.requiredFailures.length}):`)
    for (const o of summary.requiredFailures) {
      const allowed = gate.allowlisted.find((a) => a.outcome.id === o.id)
      console.log(`    ${allowed !== undefined ? '(allowlisted) ' : ''}${o.id} — ${o.name}\n        ${o.message ?? ''}`)
    }
  }
  const other = gate.unexpected.filter((o) => o.verdict !== 'fail')
  const otherAllowed = gate.allowlisted.filter((a) => a.outcome.verdict !== 'fail')
  if (other.length + otherAllowed.length > 0) {
    console.log('\n  Setup / dependency failures that count for the gate:')
    for (const o of [...other, ...otherAllowed.map((a) => a.outcome)]) {
      const allowed = otherAllowed.some((a) => a.outcome === o)
      const why = o.failedDependencies !== undefined ? `depends on ${o.failedDependencies.join(', ')}` : (o.message ?? '')
      console.log(`    ${allowed ? '(allowlisted) ' : ''}${o.id} [${o.verdict}] — ${o.name}\n        ${why}`)
    }
  }
  for (const e of summary.harnessErrors) console.log(`  harness: ${e.id ?? 'run'}: ${e.message}`)
  for (const e of gate.stale)
    console.log(`  note: allowlist entry ${e.id} [${e.verdict}] no longer applies (now ${summary.outcomes.find((o) => o.id === e.id)?.verdict ?? 'absent'})`)
  if (summary.serverWarnings.length > 0) {
    console.log(
      `  origin warnings (${summary.serverWarnings.length}): ${[...new Set(summary.serverWarnings.map((w) => w.replace(/[0-9a-f-]{36}/g, '<uuid>')))].join('; ')}`,
    )
  }
  if (values.explain === true && gate.unexpected.length + summary.requiredFailures.length > 0) {
    const suites = loadSuites()
    const ids = new Set([...summary.requiredFailures, ...gate.unexpected].map((o) => o.id))
    console.log("\n  Definitions (numbers in date headers are seconds relative to the origin's now):")
    for (const id of ids) console.log(explainTest(id, suites).replace(/^/gm, '    '))
  }
}

const summaries: Summary[] = []
let failed = false
const allowlist = loadAllowlist()
for (const store of stores) {
  const why = await unavailable(store)
  if (why !== undefined) {
    console.log(`skipping ${store}: ${why}`)
    continue
  }
  const target = await makeTarget(store)
  try {
    const summary = await runConformance({ middleware: target.middleware, label: target.label, grep: values.grep, dump: values.dump })
    const gate = evaluateGate(summary, store, allowlist)
    summaries.push(summary)
    failed ||= !gate.ok
    report(summary, gate)
    for (const line of errorLines(target.errors)) console.log(`  ${line}`)
  } finally {
    await target.close()
  }
}
if (stores.some((s) => s === 'redis' || s === 'memcached')) {
  const support = await import('../support/servers.js').catch(() => undefined)
  await support?.stopAllServers()
}

const published = values.published === true ? summarisePublished() : []
console.log(`\n${table([...summaries, ...published])}`)
if (published.length > 0) {
  console.log('(published rows: results/*.json shipped with http-cache-tests 0.4.5, same tests, same verdict logic)')
}
if (values.json !== undefined) {
  writeFileSync(values.json, JSON.stringify({ runs: summaries, published }, null, 2))
  console.log(`wrote ${values.json}`)
}
process.exit(failed ? 1 : 0)
