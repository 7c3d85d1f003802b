/** Compare-and-set over a memjs client's own connections (memcached's binary-protocol GET, ADD and SET with CAS, which memjs does not expose), and the request header it and the batched GETs (memcached-batch.ts) write. */

/** A reply of the binary protocol: its status, the item's CAS value and the value. */
export interface CasReply {
  /** 0 stored or found, 1 no such key, 2 the key exists (ADD) or changed (SET with CAS). */
  status: number
  /** The item's CAS value after the request (own copy). */
  cas: Buffer
  /** The value (own copy; empty unless a GET found one). */
  value: Buffer
}

/** The parts of a memjs `Client` this module drives: its request sequence and its send-and-route call. */
export interface MemjsConnection {
  seq: number
  incrSeq(): void
  perform(
    key: string,
    request: Buffer,
    seq: number,
    callback: (error: Error | null, response: { header: { status: number; cas: Buffer }; val: Buffer } | null) => void,
  ): void
}

/** Whether `client` is a memjs `Client` this module can drive (a wrapper around one is not). */
export function hasConnection(client: object): client is MemjsConnection {
  const candidate = client as Partial<MemjsConnection>
  return typeof candidate.perform === 'function' && typeof candidate.incrSeq === 'function' && typeof candidate.seq === 'number'
}

// Opcodes and status of the binary protocol (memcached's protocol_binary.h).
const GET = 0x00
const SET = 0x01
const ADD = 0x02
/** Status: the key exists (ADD), or its CAS changed (SET). */
export const EXISTS = 2
/** Status: no such key. */
export const NOT_FOUND = 1

/** Compare-and-set on the connections of one memjs client. */
export class CasClient {
  /**
   * Items as this process's last compare-and-set or read of them found them, by memcached key:
   * bytes and CAS value, so that the next compare-and-set expecting those bytes sends its SET at
   * once. At most MAX_KNOWN keys.
   */
  private readonly known = new Map<string, { bytes: Buffer; cas: Buffer }>()

  /**
   * @param hold Called before requests that go out together: holds back the connection's writes
   * until the end of the run, so that they leave in one system call.
   */
  constructor(
    private readonly connection: MemjsConnection,
    private readonly hold: () => void = () => {},
  ) {}

  /**
   * Store `value` under `name` (a memcached key) with `expires` (memcached's expiry field) only
   * while it holds exactly `expected` (`null`: nothing). Resolves `true` when stored, else what it
   * holds now. One round trip when the item is as this process last saw it, two otherwise: the
   * write and a GET go out together, so the GET answers what a refused write met.
   */
  async setIf(name: string, expected: Buffer | null, value: Buffer, expires: number): Promise<true | Buffer | null> {
    const extras = Buffer.alloc(8)
    extras.writeUInt32BE(expires, 4)
    if (expected === null) {
      this.hold()
      const [added, held] = await Promise.all([this.send(ADD, name, extras, value), this.send(GET, name)])
      return this.outcome(name, added, held, value)
    }
    let known = this.known.get(name)
    if (known === undefined || !known.bytes.equals(expected)) {
      const held = await this.send(GET, name)
      if (held.status === NOT_FOUND) return null
      this.remember(name, held.value, held.cas)
      if (!held.value.equals(expected)) return held.value
      known = { bytes: held.value, cas: held.cas }
    }
    this.hold()
    const [stored, held] = await Promise.all([this.send(SET, name, extras, value, known.cas), this.send(GET, name)])
    return this.outcome(name, stored, held, value)
  }

  /** What a write and the GET sent right behind it say: stored, or what the item holds now. */
  private outcome(name: string, written: CasReply, held: CasReply, value: Buffer): true | Buffer | null {
    if (written.status === 0) {
      this.remember(name, Buffer.from(value), written.cas)
      return true
    }
    if (written.status !== EXISTS && written.status !== NOT_FOUND) throw new Error(`memcached refused a compare-and-set of ${name} (status ${written.status})`)
    if (held.status === NOT_FOUND) {
      this.known.delete(name)
      return null
    }
    this.remember(name, held.value, held.cas)
    return held.value
  }

  private remember(name: string, bytes: Buffer, cas: Buffer): void {
    this.known.delete(name)
    this.known.set(name, { bytes, cas })
    if (this.known.size > MAX_KNOWN) this.known.delete(this.known.keys().next().value!)
  }

  /** Send one request on the connection memjs routes `name` to; answers its reply (status 0, 1 or 2) or rejects. */
  private send(opcode: number, name: string, extras: Buffer = EMPTY, value: Buffer = EMPTY, cas?: Buffer): Promise<CasReply> {
    const c = this.connection
    c.incrSeq()
    const seq = c.seq
    const request = binaryRequest({ opcode, opaque: seq, cas }, name, extras, value)
    return new Promise((resolve, reject) => {
      c.perform(name, request, seq, (error, response) => {
        if (error !== null || response === null) return reject(error ?? new Error(`memcached gave no reply for ${name}`))
        const { status } = response.header
        if (status > EXISTS) return reject(new Error(`memcached answered status ${status} for ${name}`))
        resolve({ status, cas: Buffer.from(response.header.cas), value: status === 0 && opcode === GET ? Buffer.from(response.val) : EMPTY })
      })
    })
  }
}

/** A request of the binary protocol: the 24-byte header (magic, opcode, lengths, opaque, CAS), then extras, key and value. */
function binaryRequest({ opcode, opaque, cas }: { opcode: number; opaque: number; cas?: Buffer }, key: string, extras: Buffer, value: Buffer): Buffer {
  const keyBytes = Buffer.from(key, 'latin1')
  const request = Buffer.alloc(24 + extras.length + keyBytes.length + value.length)
  writeHeader(request, 0, {
    opcode,
    keyLength: keyBytes.length,
    extrasLength: extras.length,
    bodyLength: extras.length + keyBytes.length + value.length,
    opaque,
  })
  cas?.copy(request, 16)
  extras.copy(request, 24)
  keyBytes.copy(request, 24 + extras.length)
  value.copy(request, 24 + extras.length + keyBytes.length)
  return request
}

/**
 * Write the 24-byte header of a request at `at` in `request` (zero-filled): magic, opcode, key and
 * extras lengths, total body length and opaque; data type, vbucket and CAS stay zero.
 */
export function writeHeader(
  request: Buffer,
  at: number,
  { opcode, keyLength, extrasLength, bodyLength, opaque }: { opcode: number; keyLength: number; extrasLength: number; bodyLength: number; opaque: number },
): void {
  request.writeUInt8(0x80, at)
  request.writeUInt8(opcode, at + 1)
  request.writeUInt16BE(keyLength, at + 2)
  request.writeUInt8(extrasLength, at + 4)
  request.writeUInt32BE(bodyLength, at + 8)
  request.writeUInt32BE(opaque, at + 12)
}

const EMPTY = Buffer.alloc(0)
/** Items whose CAS value is kept (see CasClient): the marks one process writes. */
const MAX_KNOWN = 1000
