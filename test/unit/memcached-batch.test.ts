/** GetBatch's reading of replies, on a scripted memjs server: values, silence, error statuses and connection errors. */
import assert from 'node:assert/strict'
import { canBatch, GetBatch, type MemjsRouting } from '../../src/stores/memcached-batch.js'

type Handler = ((reply: Reply) => void) & { quiet?: boolean }
interface Reply {
  header: { opcode: number; status: number }
  key: Buffer
  extras: Buffer
  val: Buffer
}

/** A memjs-shaped client with one server that records what is written and lets the test answer. */
function scripted() {
  const written: Buffer[] = []
  const handlers = new Map<number, Handler>()
  const errors = new Map<number, (error: Error) => void>()
  const server = {
    onResponse: (seq: number, handler: Handler) => void handlers.set(seq, handler),
    onError: (seq: number, handler: (error: Error) => void) => void errors.set(seq, handler),
    write: (request: Buffer) => void written.push(request),
  }
  const client: MemjsRouting = {
    seq: 0,
    incrSeq() {
      this.seq++
    },
    server: () => server,
    servers: [server],
  }
  const reply = (opcode: number, status: number, key = '', val = '') => {
    const handler = handlers.get(client.seq)!
    handler({ header: { opcode, status }, key: Buffer.from(key), extras: Buffer.alloc(4), val: Buffer.from(val) })
  }
  return { client, written, handlers, errors, reply }
}

const GETKQ = 0x0d
const NOOP = 0x0a

/** What a settled promise came to, without waiting for one that has not. */
async function outcome<T>(promise: Promise<T>): Promise<{ value: T } | { error: Error } | 'pending'> {
  const pending = Symbol('pending')
  const result = await Promise.race([
    promise.then(
      (value) => ({ value }),
      (error: Error) => ({ error }),
    ),
    new Promise<typeof pending>((resolve) => setImmediate(() => resolve(pending))),
  ])
  return result === pending ? 'pending' : (result as { value: T } | { error: Error })
}

describe('GetBatch', function () {
  it('should send nothing until flushed, then one request of a GETKQ per distinct key and a NOOP', function () {
    const { client, written, handlers } = scripted()
    const batch = new GetBatch(client)
    void batch.get('a')
    void batch.get('bb')
    void batch.get('a')
    assert.equal(written.length, 0)
    batch.flush()
    assert.equal(written.length, 1)
    const request = written[0]
    const ops: [number, string][] = []
    for (let at = 0; at < request.length; at += 24 + request.readUInt32BE(at + 8)) {
      assert.equal(request.readUInt32BE(at + 12), client.seq, 'every part carries the handler’s opaque')
      ops.push([request.readUInt8(at + 1), request.toString('latin1', at + 24, at + 24 + request.readUInt16BE(at + 2))])
    }
    assert.deepEqual(ops, [
      [GETKQ, 'a'],
      [GETKQ, 'bb'],
      [NOOP, ''],
    ])
    assert.equal(handlers.get(client.seq)!.quiet, true, 'memjs keeps a quiet handler until the reply without a body')
    batch.flush()
    assert.equal(written.length, 1, 'an empty flush sends nothing')
  })

  it('should answer the keys memcached sent back and, at the NOOP, every other one as absent', async function () {
    const { client, reply } = scripted()
    const batch = new GetBatch(client)
    const [a, b, c] = ['a', 'b', 'c'].map((name) => batch.get(name))
    batch.flush()
    reply(GETKQ, 0, 'b', 'B')
    assert.equal(await outcome(a), 'pending')
    assert.equal(String(((await outcome(b)) as { value: { value: Buffer } }).value.value), 'B')
    reply(NOOP, 0)
    assert.deepEqual(await outcome(a), { value: { value: null } })
    assert.deepEqual(await outcome(c), { value: { value: null } })
  })

  it('should fail every key still open on an error status, so that none reads as absent', async function () {
    const { client, reply } = scripted()
    const batch = new GetBatch(client)
    const [a, b] = ['a', 'b'].map((name) => batch.get(name))
    batch.flush()
    reply(GETKQ, 0, 'a', 'A')
    reply(GETKQ, 0x82, '', '')
    assert.equal(String(((await outcome(a)) as { value: { value: Buffer } }).value.value), 'A')
    const failed = await outcome(b)
    assert.ok(typeof failed === 'object' && 'error' in failed && /status 130/.test(failed.error.message), JSON.stringify(failed))
  })

  it('should fail every key still open when the connection fails', async function () {
    const { client, errors } = scripted()
    const batch = new GetBatch(client)
    const a = batch.get('a')
    batch.flush()
    errors.get(client.seq)!(new Error('socket timed out waiting on response.'))
    const failed = await outcome(a)
    assert.ok(typeof failed === 'object' && 'error' in failed && /timed out/.test(failed.error.message))
  })

  it('should send the keys still open to `retry`, one by one, when the connection fails and a retry is given', async function () {
    const { client, errors, reply } = scripted()
    const retried: string[] = []
    const batch = new GetBatch(client, async (name) => {
      retried.push(name)
      return { value: Buffer.from(name.toUpperCase()) }
    })
    const [a, b] = ['a', 'b'].map((name) => batch.get(name))
    batch.flush()
    reply(GETKQ, 0, 'a', 'first')
    errors.get(client.seq)!(new Error('connection reset'))
    assert.equal(String((await a).value), 'first')
    assert.equal(String((await b).value), 'B')
    assert.deepEqual(retried, ['b'])
  })

  it('should fail a key no server can take (memjs failover put them all to sleep)', async function () {
    const { client } = scripted()
    const batch = new GetBatch({ ...client, server: () => null, incrSeq: client.incrSeq })
    const a = batch.get('a')
    batch.flush()
    const failed = await outcome(a)
    assert.ok(typeof failed === 'object' && 'error' in failed && /No servers/.test(failed.error.message))
  })

  it('should drive only clients with memjs’s routing and server calls', function () {
    assert.equal(canBatch(scripted().client), true)
    assert.equal(canBatch({ get() {}, servers: [] }), false)
    const { client } = scripted()
    assert.equal(canBatch({ ...client, servers: [{ write() {} }] }), false)
  })
})
