/** jsonCoder(): entries as JSON text with the body in base64, readable with redis-cli. */
import { CorruptEntryError, fromWire, toWire } from '../entry.js'
import type { Coder, Entry } from '../types.js'

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

/**
 * Encode entries as UTF-8 JSON; the body is base64 (a third larger than the bytes, not the
 * 3.5× of a JSON array of numbers).
 */
export function jsonCoder(): Coder {
  return {
    name: 'json',
    encode(entry: Entry): Uint8Array {
      const wire = toWire(entry) as unknown as Record<string, unknown>
      if (entry.kind === 'response') wire.b = Buffer.from(entry.body.buffer, entry.body.byteOffset, entry.body.byteLength).toString('base64')
      return Buffer.from(JSON.stringify(wire))
    },
    decode(bytes: Uint8Array): Entry {
      let value: unknown
      try {
        value = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'))
      } catch (error) {
        throw new CorruptEntryError(`not JSON (${(error as Error).message})`)
      }
      return fromWire(value, (raw) => {
        if (typeof raw !== 'string' || raw.length % 4 !== 0 || !BASE64.test(raw)) throw new CorruptEntryError('body is not base64')
        // Memory of its own: Buffer.from(string) puts small results in Node's shared 8 KiB pool,
        // and a decoded entry kept for reuse would pin a whole pool slab.
        const body = Buffer.allocUnsafeSlow(Buffer.byteLength(raw, 'base64'))
        body.write(raw, 'base64')
        return body
      })
    },
  }
}
