// The conformance gate: what a Summary must satisfy (freshness-none, no unexpected failures, no harness errors), with the allowlist.
import { readFileSync } from 'node:fs'
import type { Summary, TestOutcome, Verdict } from './run.js'

export interface AllowlistEntry {
  /** Exact test id. */
  id: string
  /** The verdict of the required test this entry accepts: failure, setup failure, or dependency failure. */
  verdict: 'fail' | 'setup_fail' | 'dependency_fail'
  /** Only for these stores (default: all). */
  stores?: string[]
  /** Why cachet does not pass it, and whether that is a choice, a limit of shape B, or a known gap. */
  reason: string
}

export interface GateResult {
  ok: boolean
  /** One line per violated rule. */
  problems: string[]
  /** Outcomes that break the gate (not allowlisted). */
  unexpected: TestOutcome[]
  /** Outcomes excused by the allowlist. */
  allowlisted: { outcome: TestOutcome; entry: AllowlistEntry }[]
  /** Allowlist entries for this store whose test no longer has the listed verdict (remove them). */
  stale: AllowlistEntry[]
}

const ALLOWLIST_URL = new URL('./allowlist.json', import.meta.url)

export function loadAllowlist(): AllowlistEntry[] {
  const parsed = JSON.parse(readFileSync(ALLOWLIST_URL, 'utf8')) as { entries: AllowlistEntry[] }
  for (const entry of parsed.entries) {
    if (
      typeof entry.id !== 'string' ||
      typeof entry.reason !== 'string' ||
      entry.reason.trim() === '' ||
      !['fail', 'setup_fail', 'dependency_fail'].includes(entry.verdict)
    ) {
      throw new Error(`allowlist.json: each entry needs id, verdict (fail|setup_fail|dependency_fail) and a reason: ${JSON.stringify(entry)}`)
    }
  }
  return parsed.entries
}

/**
 * A required test counts against the gate unless it passed: besides `fail`, a setup failure or a
 * dependency failure hides a required test the cache did not pass (a cache that stops storing turns
 * required failures into exactly those). Other kinds only count when the harness lost their result.
 */
function gating(outcome: TestOutcome): boolean {
  const v: Verdict = outcome.verdict
  if (v === 'harness_fail' || v === 'untested') return true
  return outcome.kind === 'required' && v !== 'pass'
}

/**
 * The gate (README "Conformance"):
 * - `freshness-none` is `yes` (nothing stored without freshness information);
 * - every required test passes, except those in the allowlist (for the verdict listed there);
 * - no harness errors.
 * With `grep`, only the selected tests are judged.
 */
export function evaluateGate(summary: Summary, store: string, allowlist: AllowlistEntry[] = loadAllowlist()): GateResult {
  const problems: string[] = []
  const entries = allowlist.filter((e) => e.stores === undefined || e.stores.includes(store))
  const judged = new Set(summary.outcomes.map((o) => o.id))
  if (judged.has('freshness-none') && summary.freshnessNone !== 'yes') {
    problems.push(`freshness-none is "${summary.freshnessNone}", not "yes": a response without freshness information was reused`)
  }
  const unexpected: TestOutcome[] = []
  const allowlisted: GateResult['allowlisted'] = []
  for (const outcome of summary.outcomes.filter(gating)) {
    const entry = entries.find((e) => e.id === outcome.id && e.verdict === outcome.verdict)
    if (entry !== undefined) allowlisted.push({ outcome, entry })
    else unexpected.push(outcome)
  }
  if (unexpected.length > 0) {
    problems.push(
      `${unexpected.length} unexpected failure(s): ` +
        unexpected.map((o) => `${o.id} [${o.verdict}${o.failedDependencies ? ` on ${o.failedDependencies.join(', ')}` : ''}]`).join(', '),
    )
  }
  if (summary.harnessErrors.length > 0) {
    problems.push(`${summary.harnessErrors.length} harness error(s): ` + summary.harnessErrors.map((e) => `${e.id ?? 'run'}: ${e.message}`).join('; '))
  }
  const stale = entries.filter((e) => judged.has(e.id) && summary.outcomes.find((o) => o.id === e.id)?.verdict !== e.verdict)
  return { ok: problems.length === 0, problems, unexpected, allowlisted, stale }
}
