/** A spy on what a memjs client sends: every binary-protocol request each of its servers writes, parsed back into opcode and key. */
import memjs from 'memjs'

/** One request as it went to a server: `get` covers GET and the quiet GETKQ a batch sends. */
export interface SentRequest {
  op: string
  key: string
  /** The expiry field of a SET or ADD. */
  expires?: number
}

const OPS: Record<number, string> = { 0x00: 'get', 0x0d: 'get', 0x01: 'set', 0x02: 'add', 0x04: 'delete' }
const NOOP = 0x0a

/**
 * Record every request `client` writes to its servers: `sent` lists them (NOOPs left out), and
 * `writes` counts the writes handed to the servers (one per request memjs sends, one per batch).
 */
export function spyOnWire(client: memjs.Client): { sent: SentRequest[]; counts: { writes: number } } {
  const sent: SentRequest[] = []
  const counts = { writes: 0 }
  for (const server of (client as unknown as { servers: { write(blob: Buffer): void }[] }).servers) {
    const original = server.write.bind(server)
    server.write = (blob: Buffer) => {
      counts.writes++
      sent.push(...parse(blob))
      original(blob)
    }
  }
  return { sent, counts }
}

/** The requests in `blob`: 24-byte headers, each followed by extras, key and value. */
function parse(blob: Buffer): SentRequest[] {
  const found: SentRequest[] = []
  for (let at = 0; at + 24 <= blob.length;) {
    const opcode = blob.readUInt8(at + 1)
    const keyLength = blob.readUInt16BE(at + 2)
    const extrasLength = blob.readUInt8(at + 4)
    const bodyLength = blob.readUInt32BE(at + 8)
    const key = blob.toString('latin1', at + 24 + extrasLength, at + 24 + extrasLength + keyLength)
    const op = OPS[opcode] ?? `0x${opcode.toString(16)}`
    const expires = (op === 'set' || op === 'add') && extrasLength >= 8 ? blob.readUInt32BE(at + 28) : undefined
    if (opcode !== NOOP) found.push(expires === undefined ? { op, key } : { op, key, expires })
    at += 24 + bodyLength
  }
  return found
}
