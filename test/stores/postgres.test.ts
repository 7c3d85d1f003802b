/** postgresStore() on a real PostgreSQL: the Store contract, schema, index use, locks, HTTP, and a paused, killed or slow server. */
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import net from 'node:net'
import pg from 'pg'
import { postgresStore, type PostgresQuery } from '../../src/stores/postgres.js'
import { createApp, type Post } from '../../examples/postgres/app.js'
import { runStoreContract } from '../support/store-contract.js'
import { cachingResumes, expectSharedBlog } from '../support/shared-store.js'
import { closeAll, landed, setup, storeFactories, type Harness } from '../support/app.js'
import { startProxy, type FaultProxy } from '../support/proxy.js'
import { getPostgres, startPostgres, type PostgresServer } from '../support/servers.js'

const CC60 = { 'Cache-Control': 'max-age=60' }
const memory = storeFactories.find((factory) => factory.name === 'memory')!
const unique = () => `t${randomUUID().slice(0, 8)}:`
const bytes = (text: string) => Buffer.from(text)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A store on `pool` under `prefix` whose every statement is recorded in `statements`. */
function spying(pool: pg.Pool, prefix: string) {
  const statements: (string | PostgresQuery)[] = []
  const spy = postgresStore(
    {
      pool: {
        query: (statement: string | PostgresQuery, values?: unknown[]) => (statements.push(statement), pool.query(statement as string, values)),
        connect: () => pool.connect(),
        end: async () => {},
      },
    },
    { prefix },
  )
  return { spy, statements }
}

describe('postgresStore()', function () {
  let server: PostgresServer
  let pool: pg.Pool

  before(async function () {
    this.timeout(60_000)
    server = await getPostgres()
    pool = new pg.Pool({ connectionString: server.connectionString, max: 4 })
    pool.on('error', () => {}) // idle connections end with the server at the end of the run
  })
  after(async function () {
    await pool?.end()
  })
  afterEach(closeAll)

  describe('with a pool you own', function () {
    runStoreContract(
      'postgresStore({ pool })',
      () => {
        const prefix = unique()
        const store = postgresStore({ pool }, { prefix })
        return {
          store,
          foreign: {
            put: async () =>
              void (await pool.query(`INSERT INTO cachet (key, value, expires_at) VALUES ($1, 'x', now() + interval '1 minute')`, [`foreign-${prefix}`])),
            exists: async () => (await pool.query('SELECT 1 FROM cachet WHERE key = $1', [`foreign-${prefix}`])).rowCount === 1,
          },
          async cleanup() {
            await store.clear()
            await pool.query('DELETE FROM cachet WHERE key = $1', [`foreign-${prefix}`])
            await store.close()
          },
        }
      },
      { getMany: true, keepsRecords: true, setIf: true },
      { rejectsNonBytes: ['set', 'setIf'] },
    )
  })

  describe('with a connection string (the store opens its own pool)', function () {
    runStoreContract(
      'postgresStore({ connectionString })',
      () => {
        const store = postgresStore({ connectionString: server.connectionString, prefix: unique(), table: 'own_pool' })
        return {
          store,
          async cleanup() {
            await store.clear()
            await store.close()
          },
        }
      },
      { getMany: true, keepsRecords: true, setIf: true },
    )

    it('should end the pool it opened on close(), and never a pool it was given', async function () {
      const own = postgresStore({ connectionString: server.connectionString })
      await own.set('k', bytes('v'), 60_000)
      await own.close()
      await assert.rejects(own.get('k'), /closed/)
      const given = postgresStore({ pool })
      await given.close()
      assert.equal((await pool.query('SELECT 1 AS one')).rows[0].one, 1)
    })
  })

  describe('schema', function () {
    it('should create an UNLOGGED table, its expires_at index and the locks table on first use', async function () {
      const table = `s_${randomUUID().slice(0, 8)}`
      const store = postgresStore({ pool }, { table })
      await store.set('k', bytes('v'), 60_000)
      const { rows } = await pool.query(`SELECT relname, relpersistence FROM pg_class WHERE relname IN ($1, $2, $3) ORDER BY relname`, [
        table,
        `${table}_locks`,
        `${table}_expires_at`,
      ])
      assert.deepEqual(rows, [
        { relname: table, relpersistence: 'u' },
        { relname: `${table}_expires_at`, relpersistence: 'u' },
        { relname: `${table}_locks`, relpersistence: 'u' },
      ])
      await store.close()
    })

    it('should create the schema once when several stores start together', async function () {
      const table = `c_${randomUUID().slice(0, 8)}`
      const stores = Array.from({ length: 4 }, () => postgresStore({ connectionString: server.connectionString, table }))
      await Promise.all(stores.map((store, i) => store.set(`k${i}`, bytes('v'), 60_000)))
      for (const store of stores) await store.close()
      assert.equal((await pool.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n, 4)
    })

    it('should use a table created by a migration with createTable: false, and fail clearly without one', async function () {
      const missing = postgresStore({ pool }, { table: `m_${randomUUID().slice(0, 8)}`, createTable: false })
      await assert.rejects(missing.get('k'), /does not exist/)
      const store = postgresStore({ pool }, { table: 'cachet', createTable: false, prefix: unique() })
      await store.set('k', bytes('v'), 60_000)
      assert.equal((await store.get('k'))?.toString(), 'v')
      await store.clear()
    })
  })

  describe('deleteMatching()', function () {
    for (const pattern of ['posts:*', 'posts:*:GET', 'po%_s:*']) {
      it(`should find ${JSON.stringify(pattern)} through the primary key index (an Index Cond), with LIKE characters literal`, async function () {
        const store = postgresStore({ pool }, { prefix: unique() })
        await store.set('posts:1:GET', bytes('x'), 60_000)
        await store.set('po%_s:1:GET', bytes('x'), 60_000)
        await store.set('poxys:1:GET', bytes('x'), 60_000)
        const statements: { text: string; values: unknown[] }[] = []
        const spy = postgresStore(
          {
            pool: {
              query: (text: string, values?: unknown[]) => (statements.push({ text, values: values ?? [] }), pool.query(text, values)),
              connect: () => pool.connect(),
              end: async () => {},
            },
          },
          { prefix: store.prefix },
        )
        assert.equal(await spy.deleteMatching(pattern), 1)
        assert.notEqual(await store.get('poxys:1:GET'), undefined)
        const batch = statements.at(-1)!
        // Planned as the store's statements are: with the values bound (pg's unnamed statements).
        const client = await pool.connect()
        try {
          await client.query('BEGIN')
          await client.query('SET LOCAL enable_seqscan = off') // a tiny table would otherwise be scanned anyway
          const plan = (await client.query(`EXPLAIN ${batch.text}`.replace(/\$(\d)/g, (_, n) => client.escapeLiteral(String(batch.values[n - 1]))))).rows
            .map((row) => row['QUERY PLAN'])
            .join('\n')
          assert.match(plan, /Index Cond: \(\(key >= '.*'::text\) AND \(key < '.*'::text\) AND \(key > ''::text\)\)/)
        } finally {
          await client.query('ROLLBACK')
          client.release()
        }
        await store.clear()
      })
    }

    it('should delete more keys than one batch holds, in batches', async function () {
      const store = postgresStore({ pool }, { prefix: unique(), batchSize: 7 })
      for (let i = 0; i < 30; i++) await store.set(`posts:${i}:GET`, bytes('x'), 60_000)
      await store.set('users:GET', bytes('x'), 60_000)
      assert.equal(await store.deleteMatching('posts:*'), 30)
      assert.equal(await store.clear(), 1)
    })
  })

  describe('expiry and locks', function () {
    it('should sweep expired rows in batches of batchSize', async function () {
      const store = postgresStore({ pool }, { table: `x_${randomUUID().slice(0, 8)}`, batchSize: 3 })
      for (let i = 0; i < 5; i++) await store.set(`k${i}`, bytes('v'), 1)
      await store.set('long', bytes('v'), 60_000)
      await sleep(20)
      assert.equal(await store.get('k0'), undefined)
      assert.deepEqual([await store.sweep(), await store.sweep(), await store.sweep()], [3, 2, 0])
      assert.notEqual(await store.get('long'), undefined)
      await store.close()
    })

    it('should hand a lock to one holder across pools, release it by token, and take it over once expired', async function () {
      const prefix = unique()
      const one = postgresStore({ pool }, { prefix })
      const two = postgresStore({ connectionString: server.connectionString, prefix })
      const token = await one.lock('posts:GET', 60_000)
      assert.equal(typeof token, 'string')
      assert.equal(await two.lock('posts:GET', 60_000), null)
      assert.equal(await two.unlock('posts:GET', 'other'), false)
      assert.equal(await one.unlock('posts:GET', token!), true)
      assert.notEqual(await two.lock('short', 1), null)
      await sleep(20)
      assert.notEqual(await one.lock('short', 60_000), null)
      await two.close()
    })
  })

  describe('setIf()', function () {
    it('should set only over what it expects across pools, an expired row counting as nothing', async function () {
      const prefix = unique()
      const one = postgresStore({ pool }, { prefix })
      const two = postgresStore({ connectionString: server.connectionString, prefix })
      assert.equal(await one.setIf('mark', null, bytes('1'), 1), true)
      await sleep(20)
      assert.equal(await two.setIf('mark', bytes('1'), bytes('2'), 60_000), null)
      assert.equal(await two.setIf('mark', null, bytes('2'), 60_000), true)
      assert.deepEqual(await one.setIf('mark', null, bytes('3'), 60_000), bytes('2'))
      assert.equal(await one.setIf('mark', bytes('2'), bytes('3'), 60_000), true)
      assert.deepEqual(await two.get('mark'), bytes('3'))
      await one.clear()
      await two.close()
    })

    it('should lose no update when two pools count together', async function () {
      const prefix = unique()
      const stores = [postgresStore({ pool }, { prefix }), postgresStore({ connectionString: server.connectionString, prefix })]
      const add = async (store: (typeof stores)[number]) => {
        for (let round = 0; round < 10; round++) {
          let held = (await store.get('counter')) ?? null
          for (;;) {
            const answer = await store.setIf('counter', held, bytes(String(Number(held?.toString() ?? '0') + 1)), 60_000)
            if (answer === true) break
            held = answer
          }
        }
      }
      await Promise.all([...stores, ...stores].map(add))
      assert.deepEqual(await stores[0].get('counter'), bytes('40'))
      await stores[0].clear()
      await stores[1].close()
    })

    it('should write with one named prepared statement when it stores, and read as get() does when it does not', async function () {
      const store = postgresStore({ pool }, { prefix: unique() })
      const { spy, statements } = spying(pool, store.prefix)
      assert.equal(await spy.setIf('mark', null, bytes('1'), 60_000), true)
      assert.equal(await spy.setIf('mark', bytes('1'), bytes('2'), 60_000), true)
      assert.equal(statements.length, 2)
      assert.deepEqual(await spy.setIf('mark', bytes('1'), bytes('3'), 60_000), bytes('2'))
      assert.equal(statements.length, 4)
      for (const statement of statements) assert.match((statement as PostgresQuery).name ?? '', /^cachet_/, 'a named prepared statement')
      assert.match((statements[3] as PostgresQuery).text, /^SELECT/)
      await store.clear()
    })
  })

  describe('getMany()', function () {
    it('should read 3 keys in one query, answering an expired key and a missing one as missing', async function () {
      const store = postgresStore({ pool }, { prefix: unique() })
      await store.set('a:GET', bytes('A'), 60_000)
      await store.set('old:GET', bytes('old'), 1)
      await sleep(20)
      const { spy, statements } = spying(pool, store.prefix)
      const found = await spy.getMany(['a:GET', 'old:GET', 'none:GET'])
      assert.equal(statements.length, 1)
      assert.match((statements[0] as PostgresQuery).name ?? '', /^cachet_/, 'a named prepared statement, as get() is')
      assert.deepEqual(found, [bytes('A'), undefined, undefined])
      assert.deepEqual(await spy.getMany([]), [])
      assert.equal(statements.length, 1, 'no query for no keys')
      await store.clear()
    })

    it('should read with plain SQL text under prepare: false, keys with array-literal characters included', async function () {
      const store = postgresStore({ pool }, { prefix: unique(), prepare: false })
      const odd = ['a"b\\c,{d}:GET', 'NULL', ' spaced :GET ']
      for (const key of odd) await store.set(key, bytes(key), 60_000)
      assert.deepEqual(await store.getMany(['none:GET', ...odd, odd[0]]), [undefined, ...odd.map(bytes), bytes(odd[0])])
      await store.clear()
    })
  })

  describe('options', function () {
    it('should name the option and show the value of a bad one', function () {
      assert.throws(() => postgresStore({ pool: {} as never }), /option "pool" must be a pg Pool, got an object \(Object\)/)
      assert.throws(() => postgresStore({ connectionString: 'mysql://x' }), /option "connectionString" must be a postgres:\/\/ URL string, got "mysql:\/\/x"/)
      assert.throws(() => postgresStore({ pool }, { table: 'x"; DROP TABLE y; --' }), /option "table" must be an identifier.*got "x\\"; DROP TABLE y; --"/)
      assert.throws(() => postgresStore({ pool, batchSize: 0 }), /option "batchSize" must be a positive integer, got 0/)
      assert.throws(() => postgresStore({ pool }, { createTable: 'yes' as never }), /option "createTable" must be a boolean, got "yes"/)
    })
  })

  describe('behind responseCache', function () {
    it('should answer MISS then HIT, and MISS again after invalidate(posts:*)', async function () {
      const store = postgresStore({ pool }, { prefix: unique() })
      const h = await setup(memory, { store, realTime: true })
      h.O.headers = CC60
      await h.get('/posts').expect(200).expect('X-Cache', 'MISS')
      await landed(h, 'posts:GET')
      await h.get('/posts').expect(200, 'v1').expect('X-Cache', 'HIT')
      assert.equal(await h.cache.invalidate('posts:*'), 1)
      await h.get('/posts').expect(200, 'v2').expect('X-Cache', 'MISS')
      assert.equal(h.O.calls, 2)
    })
  })

  describe('what a read sends and receives', function () {
    let counter: ByteCounter
    let counted: pg.Pool

    before(async function () {
      counter = await countBytes(server.port)
      // One connection: every statement below runs on it, and pg_prepared_statements shows its own.
      counted = new pg.Pool({ connectionString: `postgres://postgres@127.0.0.1:${counter.port}/postgres`, max: 1 })
      counted.on('error', () => {})
    })
    after(async function () {
      await counted?.end()
      await counter?.close()
    })

    /** Bytes each way per get(), over `reads` gets of `key` after a first one. */
    async function perRead(store: ReturnType<typeof postgresStore>, key: string, expected: Buffer, reads = 5) {
      assert.deepEqual(await store.get(key), expected)
      counter.reset()
      for (let i = 0; i < reads; i++) assert.deepEqual(await store.get(key), expected)
      return { sent: counter.sent / reads, received: counter.received / reads }
    }

    it('should receive a 100 KB value as base64 (at most 1.4 × its size per read), not as hex text (2 ×)', async function () {
      const store = postgresStore({ pool: counted }, { prefix: unique() })
      const value = randomBytes(100_000)
      await store.set('big', value, 60_000)
      const { received } = await perRead(store, 'big', value)
      assert.ok(received >= value.length, `a read received ${received} B, less than the value`)
      assert.ok(received <= 1.4 * value.length, `a read received ${received} B for a ${value.length} B value`)
      // Empty and short values come back exactly too.
      await store.set('empty', Buffer.alloc(0), 60_000)
      assert.deepEqual(await store.get('empty'), Buffer.alloc(0))
      await store.set('short', Buffer.from([0, 255, 10, 13]), 60_000)
      assert.deepEqual(await store.get('short'), Buffer.from([0, 255, 10, 13]))
      await store.clear()
    })

    it('should parse its read once per connection (a named prepared statement): a later read sends less than the SQL text', async function () {
      const store = postgresStore({ pool: counted }, { prefix: unique() })
      await store.set('k', bytes('v'), 60_000)
      const { sent } = await perRead(store, 'k', bytes('v'))
      const statements = (await counted.query('SELECT name, statement FROM pg_prepared_statements')).rows as { name: string; statement: string }[]
      const read = statements.find((row) => /FROM "cachet" WHERE key = \$1 AND expires_at > clock_timestamp\(\)/.test(row.statement))
      assert.ok(read, `the read is a prepared statement of the connection (it has ${JSON.stringify(statements.map((row) => row.name))})`)
      assert.ok(sent < Buffer.byteLength(read.statement), `a read sent ${sent} B, its SQL text is ${Buffer.byteLength(read.statement)} B`)
      await store.clear()
    })

    it('should prepare nothing with prepare: false, and validate the option', async function () {
      const client = await counted.connect()
      try {
        await client.query('DEALLOCATE ALL')
      } finally {
        client.release()
      }
      const store = postgresStore({ pool: counted }, { prefix: unique(), prepare: false })
      await store.set('k', bytes('v'), 60_000)
      const { sent } = await perRead(store, 'k', bytes('v'))
      assert.equal((await counted.query('SELECT count(*)::int AS n FROM pg_prepared_statements')).rows[0].n, 0)
      assert.ok(sent > 100, `each read sends its SQL text (${sent} B)`)
      assert.throws(() => postgresStore({ pool }, { prepare: 'yes' as never }), /postgresStore option "prepare" must be true or false, got "yes"/)
      await store.clear()
    })
  })

  describe('faults (storeTimeout 200 ms)', function () {
    this.timeout(60_000)
    let own: PostgresServer
    let proxy: FaultProxy

    before(async function () {
      own = await startPostgres()
      proxy = await startProxy(own.port)
    })
    after(async function () {
      proxy?.latency(0)
      await proxy?.close()
      await own?.stop()
    })

    async function rig(): Promise<{ h: Harness; errors: Error[]; close(): Promise<void> }> {
      const errors: Error[] = []
      const store = postgresStore(
        { connectionString: `postgres://postgres@127.0.0.1:${proxy.port}/postgres` },
        { prefix: unique(), poolOptions: { connectionTimeoutMillis: 1000 } },
      )
      const h = await setup(memory, {
        store,
        realTime: true,
        options: { storeTimeout: '200ms', onError: (error) => void errors.push(error) },
      })
      h.O.headers = CC60
      await h.get('/warm').expect('X-Cache', 'MISS')
      await landed(h, 'warm:GET')
      return { h, errors, close: () => h.close() }
    }

    /** Five requests during the fault: each answered 200 by the origin (a hanging store would never answer). */
    async function servedUncached(h: Harness): Promise<void> {
      const before = h.O.calls
      for (let i = 0; i < 5; i++) await h.get(`/fault/${i}`).timeout(5000).expect(200)
      assert.equal(h.O.calls, before + 5)
    }

    for (const fault of ['paused (SIGSTOP)', 'killed', 'slow (1 s per packet)'] as const) {
      it(`should serve requests uncached while the server is ${fault}, then cache again`, async function () {
        const { h, errors } = await rig()
        if (fault === 'paused (SIGSTOP)') await own.pause()
        else if (fault === 'killed') await own.kill()
        else proxy.latency(1000)
        try {
          await servedUncached(h)
          assert.ok(errors.length > 0, 'the store errors reach onError')
        } finally {
          if (fault === 'paused (SIGSTOP)') own.resume()
          else if (fault === 'killed') await own.restart()
          else proxy.latency(0)
        }
        await cachingResumes(h)
      })
    }
  })

  describe('examples/postgres', function () {
    it('should share one table between two processes: a HIT in the other, and a POST invalidating both', async function () {
      const prefix = unique()
      const posts: Post[] = [{ id: 1, title: 'Hello' }]
      const one = createApp(postgresStore({ pool }, { prefix }), posts)
      const two = createApp(postgresStore({ pool }, { prefix }), posts)
      await expectSharedBlog(one, two)
    })
  })
})

interface ByteCounter {
  port: number
  /** Bytes from the client to PostgreSQL since the last reset. */
  sent: number
  /** Bytes from PostgreSQL to the client since the last reset. */
  received: number
  reset(): void
  close(): Promise<void>
}

/** A loopback TCP relay to `port` that counts the bytes each way. */
async function countBytes(port: number): Promise<ByteCounter> {
  const sockets = new Set<net.Socket>()
  const counter = { port: 0, sent: 0, received: 0 }
  const relay = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1')
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on('error', () => {})
      socket.on('close', () => sockets.delete(socket))
    }
    client.on('data', (chunk: Buffer) => {
      counter.sent += chunk.length
      upstream.write(chunk)
    })
    upstream.on('data', (chunk: Buffer) => {
      counter.received += chunk.length
      client.write(chunk)
    })
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
  })
  await new Promise<void>((resolve) => relay.listen(0, '127.0.0.1', resolve))
  counter.port = (relay.address() as net.AddressInfo).port
  return Object.assign(counter, {
    reset() {
      counter.sent = 0
      counter.received = 0
    },
    close() {
      for (const socket of sockets) socket.destroy()
      return new Promise<void>((resolve) => relay.close(() => resolve()))
    },
  })
}
