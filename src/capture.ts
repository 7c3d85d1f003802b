/** res.writeHead / res.write / res.end interception: see the response as it is produced, copy the body, or swap the response. */
import type { ServerResponse } from 'node:http'
import onHeaders from 'on-headers'

/** What to do with the handler's response, decided once, just before its head goes out. */
export type HeadDecision =
  /** Send it to the client as it is; copy the body (up to the limit) when `capture` is set. */
  | { action: 'pass'; capture: boolean }
  /**
   * The hook already rewrote status and headers (e.g. a 304, or a stored response instead of
   * the handler's 304/5xx); the handler's body is not sent. `body` is sent in its place, and the
   * handler's body is still copied when `capture` is set.
   */
  | { action: 'replace'; capture: boolean; body: Uint8Array | undefined }

export interface CaptureHooks {
  /**
   * Called just before the head is written. `completeBody` is the whole body when the handler
   * produced it in one `end(chunk)` call (so an ETag can be computed before the head goes out).
   */
  head(res: ServerResponse, completeBody: Uint8Array | undefined): HeadDecision
  /** The body grew past the limit: it will not be stored. */
  overflow(): void
  /** The handler ended the response; `body` is the copy, when one was kept. */
  done(body: Uint8Array | undefined): void
  /** The connection closed before the handler ended the response. */
  aborted(): void
}

type Chunk = string | Uint8Array
type Callback = (error?: Error | null) => void

/**
 * Intercept a response the way `compression` does: the original methods are saved and called
 * with `this`, return values pass through, and an `ended` flag guards against a second end.
 */
export function capture(res: ServerResponse, maxBodySize: number, hooks: CaptureHooks): void {
  const write = res.write
  const end = res.end
  let decision: HeadDecision | undefined
  let completeBody: Uint8Array | undefined
  let chunks: Uint8Array[] | undefined = []
  let size = 0
  let ended = false

  onHeaders(res, function onResponseHead(this: ServerResponse) {
    decision = hooks.head(this, completeBody)
    if (!decision.capture) chunks = undefined
  })

  /** `last`: the chunk given to end(), copied before end() returns, so no early copy is needed. */
  function keep(chunk: Uint8Array, last: boolean): void {
    if (chunks === undefined || chunk.byteLength === 0) return
    size += chunk.byteLength
    if (size > maxBodySize) {
      // Never hold more than the cap: drop the copy and stream the rest through.
      chunks = undefined
      hooks.overflow()
      return
    }
    // A written chunk is copied now: the app may reuse its buffer once the write is flushed.
    chunks.push(last ? chunk : Buffer.from(chunk))
  }

  function ensureHead(): HeadDecision {
    if (decision === undefined) {
      if (!res.headersSent) (res as unknown as { _implicitHeader(): void })._implicitHeader()
      // Headers written before we were attached (should not happen): pass through uncaptured.
      decision ??= { action: 'pass', capture: false }
    }
    return decision
  }

  res.write = function cachetWrite(this: ServerResponse, chunk: Chunk, encoding?: BufferEncoding | Callback, cb?: Callback): boolean {
    if (ended) return false
    const d = ensureHead()
    if (chunk !== undefined && chunk !== null) keep(toBytes(chunk, encoding), false)
    if (d.action === 'replace') {
      const callback = typeof encoding === 'function' ? encoding : cb
      if (callback) process.nextTick(callback)
      return true
    }
    return (write as (...args: unknown[]) => boolean).apply(this, arguments as unknown as unknown[])
  } as ServerResponse['write']

  res.end = function cachetEnd(this: ServerResponse, chunk?: Chunk | Callback, encoding?: BufferEncoding | Callback, cb?: Callback) {
    if (ended) return this
    if (typeof chunk === 'function') {
      cb = chunk
      chunk = undefined
    } else if (typeof encoding === 'function') {
      cb = encoding
      encoding = undefined
    }
    const last = chunk === undefined || chunk === null ? undefined : toBytes(chunk, encoding)
    if (decision === undefined && size === 0) completeBody = last ?? EMPTY
    const d = ensureHead()
    ended = true
    if (last !== undefined) keep(last, true)
    const body = chunks === undefined ? undefined : concat(chunks, size)
    chunks = undefined
    if (d.action === 'replace') {
      const finish = end as (...args: unknown[]) => ServerResponse
      if (d.body !== undefined && d.body.byteLength > 0) finish.call(this, d.body, cb)
      else finish.call(this, cb)
    } else {
      ;(end as (...args: unknown[]) => ServerResponse).call(this, chunk, encoding, cb)
    }
    hooks.done(body)
    return this
  } as ServerResponse['end']

  res.once('close', function onClose() {
    if (!ended) {
      chunks = undefined
      hooks.aborted()
    }
  })
}

const EMPTY = new Uint8Array(0)

function toBytes(chunk: Chunk, encoding: unknown): Uint8Array {
  if (typeof chunk === 'string') return Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
  return chunk
}

/**
 * The stored body: exactly `size` bytes of memory of its own. A small Buffer is usually a slice
 * of Node's shared 8 KiB pool, and a kept slice would pin the whole slab for the entry's life.
 */
function concat(chunks: Uint8Array[], size: number): Uint8Array {
  const body = Buffer.allocUnsafeSlow(size)
  let offset = 0
  for (const chunk of chunks) {
    body.set(chunk, offset)
    offset += chunk.byteLength
  }
  return body
}
