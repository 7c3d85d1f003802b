// Conformance gate (README "Conformance"): http-cache-tests in-process against cachet in spec mode, per store, judged by the suite's own verdicts.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { runConformance } from './run.js'
import type { Summary } from './run.js'
import { evaluateGate, loadAllowlist } from './gate.js'
import type { GateResult } from './gate.js'
import { errorLines, makeTarget, unavailable } from './targets.js'
import type { StoreName } from './targets.js'

// Loaded while mocha loads spec files, so its root `after` hook (stop the servers) is registered in time.
if (existsSync(new URL('../support/servers.ts', import.meta.url))) await import('../support/servers.js')

function line(s: Summary): string {
  return (
    `${s.label}: ${s.pass} pass, ${s.requiredFailures.length} required failures, ${s.optionalFailures.length} optional failures, ` +
    `${s.dependencyFailures.length} dependency failures, ${s.setupFailures.length} setup failures, ${s.harnessErrors.length} harness errors, ` +
    `freshness-none ${s.freshnessNone} (${(s.durationMs / 1000).toFixed(1)} s)`
  )
}

function explain(s: Summary, gate: GateResult, errors: string[]): string {
  const failing = gate.unexpected.map(
    (o) =>
      `  ${o.id} [${o.verdict}] ${o.name}\n    ${o.failedDependencies !== undefined ? `depends on ${o.failedDependencies.join(', ')}` : (o.message ?? '')}`,
  )
  return [
    line(s),
    ...gate.problems.map((p) => `✗ ${p}`),
    ...failing,
    ...errorLines(errors),
    'Reproduce: npx tsx test/conformance/cli.ts --store <store> --explain [--grep <id> --dump]',
  ].join('\n')
}

async function run(store: StoreName): Promise<{ summary: Summary; gate: GateResult; errors: string[] }> {
  const target = await makeTarget(store)
  try {
    const summary = await runConformance({ middleware: target.middleware, label: target.label })
    return { summary, gate: evaluateGate(summary, store, loadAllowlist()), errors: target.errors }
  } finally {
    await target.close()
  }
}

describe('conformance (http-cache-tests)', function () {
  // One run takes ~15 s (the suite pauses 3 s between requests, 100 tests at a time).
  this.timeout(90_000)

  for (const store of ['memory', 'redis', 'memcached'] as const) {
    it(`passes the gate in spec mode on the ${store} store`, async function () {
      assert.equal(await unavailable(store), undefined, `the ${store} variant cannot run`)
      const { summary, gate, errors } = await run(store)
      console.log(`      ${line(summary)}`)
      assert.equal(summary.freshnessNone, 'yes', `freshness-none must pass\n${explain(summary, gate, errors)}`)
      assert.deepEqual(summary.harnessErrors, [], `harness errors\n${explain(summary, gate, errors)}`)
      assert.ok(gate.ok, explain(summary, gate, errors))
      assert.deepEqual(
        gate.stale.map((e) => e.id),
        [],
        'allowlist entries that no longer apply: remove them',
      )
    })
  }

  it('rejects a pass-through middleware (the gate notices when caching breaks)', async function () {
    const { summary, gate } = await run('none')
    assert.equal(gate.ok, false, `a middleware that caches nothing passed the gate: ${line(summary)}`)
    assert.ok(
      gate.unexpected.some((o) => o.verdict === 'fail'),
      'expected required failures from a pass-through',
    )
    assert.deepEqual(summary.harnessErrors, [], 'the harness itself must run cleanly against a pass-through')
  })
})
