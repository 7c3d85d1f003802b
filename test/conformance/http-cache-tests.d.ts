// Type shims for the untyped http-cache-tests 0.4.5 modules (and node-fetch 2) used by the conformance gate.

// Type-only module (no such file in the package): the shapes of test definitions and raw results.
declare module 'http-cache-tests/types' {
  /** A header as written in a test definition: [name, value, (check on response?)]; values may be magic ints. */
  export type HeaderSpec = [string, string | number] | [string, string | number, boolean] | [string, string, string | number]
  export interface RequestSpec {
    request_method?: string
    request_headers?: HeaderSpec[]
    request_body?: string
    query_arg?: string
    filename?: string
    response_status?: [number, string]
    response_headers?: HeaderSpec[]
    response_body?: string
    expected_type?: 'cached' | 'not_cached' | 'lm_validated' | 'etag_validated'
    expected_status?: number
    expected_method?: string
    expected_request_headers?: (string | [string, string])[]
    expected_response_headers?: (string | HeaderSpec)[]
    expected_response_headers_missing?: (string | [string, string])[]
    expected_response_text?: string | null
    magic_locations?: boolean
    magic_ims?: boolean
    rfc850date?: string[]
    setup?: boolean
    setup_tests?: string[]
    pause_after?: boolean
    disconnect?: boolean
    check_body?: boolean
    [other: string]: unknown
  }
  export interface TestSpec {
    name: string
    id: string
    description?: string
    kind?: 'required' | 'optimal' | 'check'
    depends_on?: string[]
    browser_only?: boolean
    browser_skip?: boolean
    spec_anchors?: string[]
    dump?: boolean
    requests: RequestSpec[]
  }
  export interface SuiteSpec {
    name: string
    id: string
    description?: string
    spec_anchors?: string[]
    tests: TestSpec[]
  }
  /** A raw result as recorded by client/test.mjs: true, or [error name, message]. */
  export type RawResult = true | [string, string]
  export type RawResults = Record<string, RawResult>
}

declare module 'http-cache-tests/tests/index.mjs' {
  import type { SuiteSpec } from 'http-cache-tests/types'
  const suites: SuiteSpec[]
  export default suites
}

declare module 'http-cache-tests/tests/surrogate-control.mjs' {
  import type { SuiteSpec } from 'http-cache-tests/types'
  const suite: SuiteSpec
  export default suite
}

declare module 'http-cache-tests/lib/display.mjs' {
  import type { SuiteSpec, RawResults } from 'http-cache-tests/types'
  /** [font-awesome glyph, colour, console symbol], one of the suite's resultTypes. */
  export type ResultType = [string, string, string]
  export function determineTestResult(testSuites: SuiteSpec[], testId: string, testResults: RawResults, honorDependencies?: boolean): ResultType
  export function testLookup(testSuites: SuiteSpec[], testId: string): import('http-cache-tests/types').TestSpec
}

declare module 'http-cache-tests/client/config.mjs' {
  export function setFetch(call: unknown): void
  export function setUseBrowserCache(bool: boolean): void
  export function setBaseUrl(url: string): void
}

declare module 'http-cache-tests/client/test.mjs' {
  import type { TestSpec, RawResults } from 'http-cache-tests/types'
  export const testUUIDs: Record<string, string>
  export const testResults: RawResults
  export function makeCacheTest(test: TestSpec): Promise<void>
}

declare module 'http-cache-tests/server/handle-config.mjs' {
  import type { IncomingMessage, ServerResponse } from 'node:http'
  export default function handleConfig(pathSegs: string[], request: IncomingMessage, response: ServerResponse): void
}

declare module 'http-cache-tests/server/handle-test.mjs' {
  import type { IncomingMessage, ServerResponse } from 'node:http'
  export default function handleTest(pathSegs: string[], request: IncomingMessage, response: ServerResponse): void
}

declare module 'http-cache-tests/server/handle-state.mjs' {
  import type { IncomingMessage, ServerResponse } from 'node:http'
  export default function handleState(pathSegs: string[], request: IncomingMessage, response: ServerResponse): void
}

declare module 'http-cache-tests/server/utils.mjs' {
  export const configs: Map<string, unknown>
  export const stash: Map<string, unknown>
}

declare module 'node-fetch' {
  import type { Agent } from 'node:http'
  export interface FetchHeaders extends Iterable<[string, string]> {
    get(name: string): string | null
    has(name: string): boolean
    forEach(cb: (value: string, name: string) => void): void
  }
  export interface FetchResponse {
    status: number
    statusText: string
    headers: FetchHeaders
    text(): Promise<string>
  }
  export interface FetchInit {
    method?: string
    headers?: [string, string][] | Record<string, string>
    body?: string
    redirect?: 'follow' | 'manual' | 'error'
    agent?: Agent
    [other: string]: unknown
  }
  export default function fetch(url: string, init?: FetchInit): Promise<FetchResponse>
}

declare module 'http-cache-tests/results/index.mjs' {
  /** The implementations on cache-tests.fyi; `file` is a results/*.json name. */
  const index: { file: string; name: string; type: 'browser' | 'rev-proxy' | 'cdn'; version: string; link?: string }[]
  export default index
}
