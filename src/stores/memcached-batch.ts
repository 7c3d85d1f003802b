/** Batched GETs over a memjs client's own connections: the keys read together go to each server as one pipeline of quiet GETs (GETKQ) closed by a NOOP, which memjs does not expose. */
import { writeHeader } from './memcached-cas.js'

/** A reply memjs parsed off a connection. */
interface MemjsReply {
  header: { opcode: number; status: number }
  key: Buffer
  extras: Buffer
  val: Buffer
}

/** A handler memjs keeps for further replies until one without a body arrives (`quiet`). */
type ReplyHandler = ((reply: MemjsReply) => void) & { quiet?: boolean }

/** The parts of a memjs `Server` this module drives: its reply routing and its write with timeout. */
interface MemjsServer {
  onResponse(seq: number, handler: ReplyHandler): void
  onError(seq: number, handler: (error: Error) => void): void
  write(request: Buffer): void
}

/** The parts of a memjs `Client` this module drives: server choice by key, request sequence, value decoding. */
export interface MemjsRouting {
  seq: number
  incrSeq(): void
  server(key: string): MemjsServer | null
  readonly servers: readonly object[]
  serializer?: { deserialize(opcode: number, value: Buffer, extras: Buffer): { value: unknown } }
}

/** Whether `client` is a memjs `Client` whose connections this module can drive (a wrapper around one is not). */
export function canBatch(client: object): client is MemjsRouting {
  const c = client as Partial<MemjsRouting>
  return (
    typeof c.server === 'function' &&
    typeof c.incrSeq === 'function' &&
    typeof c.seq === 'number' &&
    Array.isArray(c.servers) &&
    c.servers.every((s) => {
      const server = s as Partial<MemjsServer>
      return typeof server.onResponse === 'function' && typeof server.onError === 'function' && typeof server.write === 'function'
    })
  )
}

// Opcodes of the binary protocol (memcached's protocol_binary.h).
const GETKQ = 0x0d
const NOOP = 0x0a

/** A GET waiting for its batch's reply. */
interface Waiting {
  promise: Promise<{ value: Buffer | null }>
  resolve(reply: { value: Buffer | null } | Promise<{ value: Buffer | null }>): void
  reject(error: Error): void
  settled: boolean
}

/**
 * GETs queued until `flush()`, then sent as one request per server: a GETKQ per key (memcached
 * answers only those it holds) and a NOOP, answered last, which says that every other key is
 * absent. One request, one reply handler and one timeout per server, however many keys.
 */
export class GetBatch {
  private queued = new Map<string, Waiting>()

  /**
   * @param retry Where the GETs of a batch whose connection failed go instead, one by one (memjs's
   * own `get`, to keep the `retries` and `failover` a client was created with); without it they fail.
   */
  constructor(
    private readonly client: MemjsRouting,
    private readonly retry?: (name: string) => Promise<{ value: Buffer | null }>,
  ) {}

  /** GET `name` with the next flush (the same name queued twice shares one GET). Resolves like memjs's get(). */
  get(name: string): Promise<{ value: Buffer | null }> {
    let waiting = this.queued.get(name)
    if (waiting === undefined) {
      waiting = waitingGet()
      this.queued.set(name, waiting)
    }
    return waiting.promise
  }

  /** Send what was queued since the last flush: one write per server. */
  flush(): void {
    if (this.queued.size === 0) return
    const batch = this.queued
    this.queued = new Map()
    const byServer = new Map<MemjsServer, string[]>()
    for (const name of batch.keys()) {
      const server = this.client.server(name)
      if (server === null) {
        settle(batch.get(name)!, new Error('No servers available'))
        continue
      }
      const names = byServer.get(server)
      if (names === undefined) byServer.set(server, [name])
      else names.push(name)
    }
    for (const [server, names] of byServer) this.send(server, names, batch)
  }

  private send(server: MemjsServer, names: readonly string[], batch: Map<string, Waiting>): void {
    const c = this.client
    c.incrSeq()
    const seq = c.seq
    /** Answer every key of this request still open with `outcome(name)`, called for those only. */
    const settleOpen = (outcome: (name: string) => Outcome) => {
      for (const name of names) {
        const waiting = batch.get(name)!
        if (!waiting.settled) settle(waiting, outcome(name))
      }
    }
    const handler: ReplyHandler = (reply) => {
      // Replies come in request order: every key not answered by the NOOP's is absent.
      if (reply.header.opcode === NOOP) return settleOpen(() => ({ value: null }))
      const { status } = reply.header
      if (status !== 0) {
        // Not a value (memcached answers a missing key with silence): fail every key still open,
        // so that no key of a failed batch reads as absent.
        const error = new Error(`memcached answered status ${status} to a GET`)
        return settleOpen(() => error)
      }
      const waiting = batch.get(reply.key.toString('latin1'))
      if (waiting === undefined) return
      const value = c.serializer === undefined ? reply.val : (c.serializer.deserialize(reply.header.opcode, reply.val, reply.extras).value as Buffer)
      settle(waiting, { value })
    }
    handler.quiet = true
    server.onResponse(seq, handler)
    server.onError(seq, (error) => {
      const failure = error instanceof Error ? error : new Error(String(error))
      settleOpen(this.retry ?? (() => failure))
    })
    server.write(pipeline(names, seq))
  }
}

/** A GETKQ for each of `names` (ASCII memcached keys), then a NOOP, all with opaque `seq`. */
function pipeline(names: readonly string[], seq: number): Buffer {
  let size = 24
  for (const name of names) size += 24 + name.length
  const request = Buffer.alloc(size)
  let at = 0
  for (const name of names) {
    writeHeader(request, at, { opcode: GETKQ, keyLength: name.length, extrasLength: 0, bodyLength: name.length, opaque: seq })
    request.write(name, at + 24, 'latin1')
    at += 24 + name.length
  }
  writeHeader(request, at, { opcode: NOOP, keyLength: 0, extrasLength: 0, bodyLength: 0, opaque: seq })
  return request
}

function waitingGet(): Waiting {
  let resolve!: Waiting['resolve']
  let reject!: Waiting['reject']
  const promise = new Promise<{ value: Buffer | null }>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject, settled: false }
}

/** What answers a GET: a value (null: absent), a failure, or the GET sent again (see `retry`). */
type Outcome = { value: Buffer | null } | Error | Promise<{ value: Buffer | null }>

/** Answer `waiting` once: later replies for it (none are expected) are ignored. */
function settle(waiting: Waiting, outcome: Outcome): void {
  if (waiting.settled) return
  waiting.settled = true
  if (outcome instanceof Error) waiting.reject(outcome)
  else waiting.resolve(outcome)
}
