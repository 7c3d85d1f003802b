/** msgpackCoder(): entries as MessagePack (msgpackr), bodies as native binary, no base64. */
import { Packr } from 'msgpackr'
import { CorruptEntryError, fromWire, toWire } from '../entry.js'
import type { Coder, Entry } from '../types.js'

/**
 * Encode entries as MessagePack maps. Records/structures are off, so any process (or another
 * MessagePack reader) decodes an entry on its own, without shared state.
 *
 * Values stored by `createCache()` / `cached()` are a nested MessagePack blob of their own, so
 * they keep their types: `Date`, `Buffer` and `Uint8Array` (and the other typed arrays), `Map`,
 * `Set`, `bigint` (any size), `undefined` (also inside objects and arrays), `NaN`, `±Infinity`,
 * `Error`, `RegExp`. Objects are written as records defined inline in each blob (so a `Map` and a
 * plain object stay distinct); no structure is shared between blobs. Cycles cannot be encoded:
 * such a value is not stored and the error goes to `onError`.
 */
export function msgpackCoder(): Coder {
  const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true, bundleStrings: false })
  const values = new Packr({ useRecords: true, moreTypes: true, useBigIntExtension: true, bundleStrings: false })
  return {
    name: 'msgpack',
    encode(entry: Entry): Uint8Array {
      if (entry.kind === 'value') {
        const wire = toWire(entry)
        if ('d' in wire) wire.d = values.pack(wire.d)
        return packr.pack(wire)
      }
      return packr.pack(toWire(entry))
    },
    decode(bytes: Uint8Array): Entry {
      let value: unknown
      try {
        value = packr.unpack(bytes instanceof Buffer ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
      } catch (error) {
        throw new CorruptEntryError(`not MessagePack (${(error as Error).message})`)
      }
      return fromWire(
        value,
        (raw) => {
          if (!(raw instanceof Uint8Array)) throw new CorruptEntryError('body is not binary')
          return raw
        },
        function unpackValue(raw) {
          if (!(raw instanceof Uint8Array)) throw new CorruptEntryError('value is not binary')
          try {
            return values.unpack(raw instanceof Buffer ? raw : Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength))
          } catch (error) {
            throw new CorruptEntryError(`value is not MessagePack (${(error as Error).message})`)
          }
        },
      )
    },
  }
}
