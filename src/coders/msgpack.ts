/** msgpackCoder(): entries as MessagePack (msgpackr), bodies as native binary, no base64. */
import { Packr } from 'msgpackr'
import { CorruptEntryError, fromWire, toWire } from '../entry.js'
import type { Coder, Entry } from '../types.js'

/**
 * Encode entries as MessagePack maps. Records/structures are off, so any process (or another
 * MessagePack reader) decodes an entry on its own, without shared state.
 */
export function msgpackCoder(): Coder {
  const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, bundleStrings: false })
  return {
    name: 'msgpack',
    encode(entry: Entry): Uint8Array {
      return packr.pack(toWire(entry))
    },
    decode(bytes: Uint8Array): Entry {
      let value: unknown
      try {
        value = packr.unpack(bytes instanceof Buffer ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
      } catch (error) {
        throw new CorruptEntryError(`not MessagePack (${(error as Error).message})`)
      }
      return fromWire(value, (raw) => {
        if (!(raw instanceof Uint8Array)) throw new CorruptEntryError('body is not binary')
        return raw
      })
    },
  }
}
