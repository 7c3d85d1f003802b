/** Bytes as the stores handle them: a Uint8Array seen as a Buffer without a copy, and the byte-for-byte comparison of compare-and-set. */

/** `value` as a Buffer over the same memory (no copy). */
export function asBuffer(value: Uint8Array): Buffer {
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)
}

/** Whether what a key holds (`null`: nothing) is exactly `expected` (`null`: nothing), byte for byte. */
export function sameBytes(held: Uint8Array | null, expected: Uint8Array | null): boolean {
  return held === null || expected === null ? held === expected : asBuffer(held).equals(expected)
}
