/** decide(): the table of what a stored entry can do for a request (RFC 9111 §4, §5.2.1; RFC 5861). */
import { expect } from 'chai'
import { decide, type Decision } from '../../src/flow/decide.js'
import { NO_REQUEST_RULES, requestRules, parseCacheControl, type RequestRules } from '../../src/policy.js'
import type { ResponseEntry } from '../../src/types.js'
import { responseEntry } from '../support/entries.js'

const T = 1_700_000_000_000
const rules = (cc: string): RequestRules => requestRules(parseCacheControl(cc), undefined, true)

/** An entry stored at T, fresh for `lifetime` ms, with these stale windows. */
function stored(lifetime: number, extra: Partial<ResponseEntry> = {}): ResponseEntry {
  return { ...responseEntry('x', ['Content-Type', 'text/plain'], T), lifetime, ...extra }
}

const rows: [string, ResponseEntry | undefined, RequestRules, number, Decision['kind'], Record<string, unknown>?][] = [
  ['nothing stored', undefined, NO_REQUEST_RULES, T, 'miss'],
  ['nothing stored, only-if-cached', undefined, rules('only-if-cached'), T, 'unavailable'],
  ['fresh', stored(60_000), NO_REQUEST_RULES, T + 10_000, 'hit', { age: 10_000 }],
  ['fresh, but the request says no-cache', stored(60_000), rules('no-cache'), T + 10_000, 'revalidate', { fallback: false }],
  ["fresh, but older than the request's max-age", stored(60_000), rules('max-age=5'), T + 10_000, 'revalidate'],
  ["fresh, but not for the request's min-fresh", stored(60_000), rules('min-fresh=55'), T + 10_000, 'revalidate'],
  ['stale, no window', stored(1_000), NO_REQUEST_RULES, T + 5_000, 'revalidate', { fallback: false }],
  ['stale within stale-while-revalidate', stored(1_000, { staleWhileRevalidate: 10_000 }), NO_REQUEST_RULES, T + 5_000, 'stale', { refresh: true, age: 5_000 }],
  ['stale past stale-while-revalidate', stored(1_000, { staleWhileRevalidate: 2_000 }), NO_REQUEST_RULES, T + 5_000, 'revalidate'],
  ["stale within the request's max-stale", stored(1_000), rules('max-stale=10'), T + 5_000, 'stale', { refresh: false }],
  ['stale, max-stale without a value', stored(1_000), rules('max-stale'), T + 500_000, 'stale', { refresh: false }],
  ['stale within stale-if-error', stored(1_000, { staleIfError: 10_000 }), NO_REQUEST_RULES, T + 5_000, 'revalidate', { fallback: true }],
  [
    'stale, must-revalidate forbids every stale use',
    stored(1_000, { staleWhileRevalidate: 10_000, staleIfError: 10_000, mustRevalidate: true }),
    rules('max-stale=100'),
    T + 5_000,
    'revalidate',
    { fallback: false },
  ],
  ['stale, only-if-cached', stored(1_000), rules('only-if-cached'), T + 5_000, 'unavailable'],
  ['stale within max-stale, only-if-cached', stored(1_000), rules('only-if-cached, max-stale=10'), T + 5_000, 'stale'],
  ['zero lifetime (no-cache response)', stored(0), NO_REQUEST_RULES, T + 1_000, 'revalidate'],
]

describe('decide()', () => {
  for (const [what, entry, requestRules_, now, kind, fields] of rows) {
    describe(`when ${what}`, () => {
      it(`should decide ${kind}`, () => {
        const decision = decide(entry, requestRules_, now)
        expect(decision.kind).to.equal(kind)
        for (const [name, value] of Object.entries(fields ?? {})) expect((decision as Record<string, unknown>)[name], name).to.equal(value)
        if (decision.kind === 'revalidate') expect(decision.entry).to.equal(entry)
      })
    })
  }

  it('should be pure: the same inputs give the same decision', () => {
    const entry = stored(1_000, { staleWhileRevalidate: 10_000 })
    expect(decide(entry, NO_REQUEST_RULES, T + 5_000)).to.deep.equal(decide(entry, NO_REQUEST_RULES, T + 5_000))
  })
})
