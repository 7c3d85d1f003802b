/** jsonCoder(): entries as JSON text with the body in base64, readable with redis-cli. */
import { CorruptEntryError, fromWire, toWire } from '../entry.js'
import type { Coder, Entry } from '../types.js'

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

/**
 * Encode entries as UTF-8 JSON; the body is base64 (a third larger than the bytes, not the
 * 3.5× of a JSON array of numbers).
 *
 * Values stored by `createCache()` / `cached()` keep their types through a tagged form: plain
 * objects, arrays, strings, finite numbers, booleans and `null` are written as JSON; `Date`,
 * `bigint`, `Map`, `Set`, `Buffer`, `Uint8Array`, `undefined` (also inside objects and arrays),
 * `NaN`, `±Infinity` and `-0` are written as `{"$t": "<Type>", "v": …}`, and an object of the
 * value's own that has a `$t` key is wrapped as `{"$t": "Object", "v": …}`, so decoding
 * gives back exactly what was stored. Any other object (a class instance) is written as its
 * `toJSON()` result when it has one, else as its own enumerable properties, and comes back as a
 * plain object. Functions, symbols and cycles cannot be encoded: such a value is not stored
 * and the error goes to `onError`.
 */
export function jsonCoder(): Coder {
  return {
    name: 'json',
    encode(entry: Entry): Uint8Array {
      const wire = toWire(entry) as unknown as Record<string, unknown>
      if (entry.kind === 'response') wire.b = Buffer.from(entry.body.buffer, entry.body.byteOffset, entry.body.byteLength).toString('base64')
      if (entry.kind === 'value' && 'd' in wire) wire.d = tag(wire.d, new Set())
      return Buffer.from(JSON.stringify(wire))
    },
    decode(bytes: Uint8Array): Entry {
      let value: unknown
      try {
        value = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'))
      } catch (error) {
        throw new CorruptEntryError(`not JSON (${(error as Error).message})`)
      }
      return fromWire(
        value,
        (raw) => {
          if (typeof raw !== 'string' || raw.length % 4 !== 0 || !BASE64.test(raw)) throw new CorruptEntryError('body is not base64')
          // Memory of its own: Buffer.from(string) puts small results in Node's shared 8 KiB pool,
          // and a decoded entry kept for reuse would pin a whole pool slab.
          const body = Buffer.allocUnsafeSlow(Buffer.byteLength(raw, 'base64'))
          body.write(raw, 'base64')
          return body
        },
        untag,
      )
    },
  }
}

/** A value as a JSON-safe tree, with the types JSON lacks tagged (see jsonCoder()). */
function tag(value: unknown, seen: Set<object>): unknown {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value
    case 'number':
      if (Number.isFinite(value) && !Object.is(value, -0)) return value
      return { $t: 'Number', v: Object.is(value, -0) ? '-0' : String(value) }
    case 'bigint':
      return { $t: 'BigInt', v: value.toString() }
    case 'undefined':
      return { $t: 'undefined' }
    case 'function':
    case 'symbol':
      throw new TypeError(`jsonCoder cannot encode a ${typeof value}`)
  }
  if (value === null) return null
  const object = value as object
  if (seen.has(object)) throw new TypeError('jsonCoder cannot encode a cycle')
  seen.add(object)
  try {
    if (object instanceof Date) return { $t: 'Date', v: Number.isNaN(object.getTime()) ? null : object.toISOString() }
    if (object instanceof Uint8Array) {
      const base64 = Buffer.from(object.buffer, object.byteOffset, object.byteLength).toString('base64')
      return { $t: Buffer.isBuffer(object) ? 'Buffer' : 'Uint8Array', v: base64 }
    }
    if (Array.isArray(object)) return object.map((item) => tag(item, seen))
    if (object instanceof Map) return { $t: 'Map', v: [...object].map(([k, v]) => [tag(k, seen), tag(v, seen)]) }
    if (object instanceof Set) return { $t: 'Set', v: [...object].map((item) => tag(item, seen)) }
    const proto = Object.getPrototypeOf(object)
    if (proto !== Object.prototype && proto !== null && typeof (object as { toJSON?: unknown }).toJSON === 'function') {
      return tag((object as { toJSON(): unknown }).toJSON(), seen)
    }
    const out: Record<string, unknown> = {}
    for (const key of Object.keys(object)) setOwn(out, key, tag((object as Record<string, unknown>)[key], seen))
    return Object.hasOwn(object, '$t') ? { $t: 'Object', v: out } : out
  } finally {
    seen.delete(object)
  }
}

/** Undo tag(); anything malformed is a CorruptEntryError. */
function untag(raw: unknown): unknown {
  if (raw === null || typeof raw !== 'object') return raw
  if (Array.isArray(raw)) return raw.map(untag)
  const o = raw as Record<string, unknown>
  if (!Object.hasOwn(o, '$t')) return plain(o)
  const v = o.v
  switch (o.$t) {
    case 'undefined':
      return undefined
    case 'Number':
      if (v === 'NaN' || v === 'Infinity' || v === '-Infinity' || v === '-0') return Number(v)
      break
    case 'BigInt':
      if (typeof v === 'string' && /^-?\d+$/.test(v)) return BigInt(v)
      break
    case 'Date':
      if (v === null) return new Date(NaN)
      if (typeof v === 'string' && !Number.isNaN(Date.parse(v))) return new Date(v)
      break
    case 'Buffer':
    case 'Uint8Array':
      if (typeof v === 'string' && v.length % 4 === 0 && BASE64.test(v)) {
        const bytes = Buffer.from(v, 'base64')
        return o.$t === 'Buffer' ? bytes : new Uint8Array(bytes)
      }
      break
    case 'Map':
      if (Array.isArray(v) && v.every((pair) => Array.isArray(pair) && pair.length === 2)) {
        return new Map((v as [unknown, unknown][]).map(([k, item]) => [untag(k), untag(item)]))
      }
      break
    case 'Set':
      if (Array.isArray(v)) return new Set(v.map(untag))
      break
    case 'Object':
      if (v !== null && typeof v === 'object' && !Array.isArray(v)) return plain(v as Record<string, unknown>)
      break
  }
  throw new CorruptEntryError(`value has a bad ${String(o.$t)} tag`)
}

/** A plain object of the decoded properties; `__proto__` stays an own property, never a prototype. */
function plain(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const key of Object.keys(o)) setOwn(out, key, untag(o[key]))
  return out
}

function setOwn(out: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true })
  else out[key] = value
}
