/** Stored entries built by hand, for tests that write straight into a store or a coder. */
import type { ResponseEntry } from '../../src/types.js'

/** A well-formed, fresh (60 s) stored 200 response with these headers and body, stored at `now`. */
export function responseEntry(body: string, headers: string[] = ['Content-Type', 'text/plain'], now = Date.now()): ResponseEntry {
  return {
    kind: 'response',
    status: 200,
    headers,
    body: Buffer.from(body),
    responseTime: now,
    initialAge: 0,
    lifetime: 60_000,
    staleWhileRevalidate: 0,
    staleIfError: 0,
    mustRevalidate: false,
  }
}
