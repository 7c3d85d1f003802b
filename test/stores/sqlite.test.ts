/** sqliteStore() on real SQLite files: the Store contract, sharing one file, bounds, the index, HTTP, and a locked file. */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { sqliteStore, type SqliteDatabase } from '../../src/stores/sqlite.js'
import { createApp, type Post } from '../../examples/sqlite/app.js'
import { runStoreContract } from '../support/store-contract.js'
import { expectSharedBlog } from '../support/shared-store.js'
import { closeAll, landed, setup, storeFactories } from '../support/app.js'

const dirs: string[] = []
/** A fresh file name in a temp dir removed after the suite. */
function tempFile(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cachet-sqlite-'))
  dirs.push(dir)
  return join(dir, 'cache.db')
}
const bytes = (text: string) => Buffer.from(text)
const CC60 = { 'Cache-Control': 'max-age=60' }
const memory = storeFactories.find((factory) => factory.name === 'memory')!

/** A clock the contract can move. */
function clock() {
  let t = Date.now()
  return { now: () => t, advance: (ms: number) => void (t += ms) }
}

/** A Database whose statements record their SQL and parameters as they run. */
function recording(db: Database.Database) {
  const runs: { sql: string; params: unknown[] }[] = []
  const spy: SqliteDatabase = {
    prepare(sql: string) {
      const statement = db.prepare(sql)
      const record = (method: 'run' | 'get' | 'all') =>
        function recorded(...params: unknown[]) {
          runs.push({ sql, params })
          return (statement[method] as (...args: unknown[]) => unknown)(...params)
        }
      return { run: record('run'), get: record('get'), all: record('all') } as never
    },
    exec: (sql: string) => db.exec(sql),
    pragma: (source: string, options?: { simple?: boolean }) => db.pragma(source, options),
    transaction: ((fn: never) => db.transaction(fn)) as never,
    close: () => db.close(),
    get open() {
      return db.open
    },
  }
  return { spy, runs }
}

describe('sqliteStore()', function () {
  after(function () {
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  })
  afterEach(closeAll)

  describe('with a path (the store opens the file)', function () {
    runStoreContract(
      'sqliteStore({ path })',
      () => {
        const time = clock()
        const path = tempFile()
        const store = sqliteStore({ path }, { prefix: 'a:', now: time.now })
        const foreign = new Database(path)
        return {
          store,
          advance: time.advance,
          foreign: {
            put: async () =>
              void foreign
                .prepare('INSERT INTO cachet (key, value, expires, accessed, size) VALUES (?, ?, ?, ?, 1)')
                .run('b:x', bytes('x'), time.now() + 60_000, 0),
            exists: async () => foreign.prepare('SELECT 1 FROM cachet WHERE key = ?').get('b:x') !== undefined,
          },
          cleanup() {
            foreign.close()
            store.close()
          },
        }
      },
      { getMany: true, keepsRecords: true, setIf: true },
      { rejectsNonBytes: ['set', 'setIf'] },
    )
  })

  describe('with a database you opened', function () {
    let db: Database.Database
    before(function () {
      db = new Database(tempFile())
      db.pragma('journal_mode = WAL')
    })
    after(function () {
      db.close()
    })

    let n = 0
    runStoreContract(
      'sqliteStore({ database })',
      () => {
        const store = sqliteStore({ database: db }, { prefix: `p${n++}:`, table: 'shared_cache' })
        return {
          store,
          cleanup() {
            store.clear()
            store.close()
          },
        }
      },
      { getMany: true, keepsRecords: true, setIf: true },
    )

    it('should leave the database open on close()', function () {
      const store = sqliteStore({ database: db })
      store.close()
      assert.equal(db.open, true)
    })
  })

  describe('when two connections share one file (two processes)', function () {
    it("should see each other's writes, deletes and locks, and keep entries across a reopen", async function () {
      const path = tempFile()
      const one = sqliteStore({ path })
      const two = sqliteStore({ path })
      one.set('posts:GET', bytes('one'), 60_000)
      assert.equal(two.get('posts:GET')?.toString(), 'one')
      const token = await two.lock('posts:GET', 60_000)
      assert.equal(typeof token, 'string')
      assert.equal(await one.lock('posts:GET', 60_000), null)
      assert.equal(await one.unlock('posts:GET', 'not-the-token'), false)
      assert.equal(await two.unlock('posts:GET', token!), true)
      assert.notEqual(await one.lock('posts:GET', 60_000), null)
      one.close()
      two.close()
      const reopened = sqliteStore({ path })
      assert.equal(reopened.get('posts:GET')?.toString(), 'one')
      assert.equal(reopened.deleteMatching('posts:*'), 1)
      reopened.close()
    })

    it('should let a lock be taken again once its ttl has passed', async function () {
      const time = clock()
      const store = sqliteStore({ path: tempFile() }, { now: time.now })
      assert.notEqual(await store.lock('k', 1000), null)
      assert.equal(await store.lock('k', 1000), null)
      time.advance(1001)
      assert.notEqual(await store.lock('k', 1000), null)
      store.close()
    })
  })

  describe('when the table is bounded', function () {
    it('should evict the least recently read entry past maxEntries', function () {
      const time = clock()
      const store = sqliteStore({ path: tempFile() }, { maxEntries: 3, now: time.now })
      for (const key of ['a', 'b', 'c']) {
        store.set(key, bytes(key), 60_000)
        time.advance(10)
      }
      store.get('a') // a is now the most recently read
      time.advance(10)
      store.set('d', bytes('d'), 60_000)
      assert.deepEqual(
        ['a', 'b', 'c', 'd'].filter((key) => store.get(key) !== undefined),
        ['a', 'c', 'd'],
      )
      assert.deepEqual(store.stats(), { entries: 3, bytes: 3 })
      store.close()
    })

    it('should evict past maxBytes', function () {
      const time = clock()
      const store = sqliteStore({ path: tempFile() }, { maxBytes: 1000, now: time.now })
      for (let i = 0; i < 10; i++) {
        store.set(`k${i}`, Buffer.alloc(300), 60_000)
        time.advance(10)
      }
      assert.ok(store.stats().bytes <= 1000, `bytes ${store.stats().bytes}`)
      assert.notEqual(store.get('k9'), undefined)
      assert.equal(store.get('k0'), undefined)
      store.close()
    })
  })

  describe('expiry', function () {
    it('should sweep expired rows in batches of sweepBatch', function () {
      const time = clock()
      const store = sqliteStore({ path: tempFile() }, { sweepBatch: 3, now: time.now })
      for (let i = 0; i < 7; i++) store.set(`k${i}`, bytes('v'), 1000)
      store.set('long', bytes('v'), 60_000)
      time.advance(1001)
      assert.equal(store.get('k0'), undefined)
      assert.equal(store.stats().entries, 8) // expired on read, still on disk
      assert.deepEqual([store.sweep(), store.sweep(), store.sweep(), store.sweep()], [3, 3, 1, 0])
      assert.equal(store.stats().entries, 1)
      store.close()
    })
  })

  describe('getMany()', function () {
    it('should answer synchronously, reading 3 keys with one statement, an expired key and a missing one as missing', function () {
      const time = clock()
      const db = new Database(tempFile())
      const { spy, runs } = recording(db)
      const store = sqliteStore({ database: spy }, { now: time.now })
      store.set('a:GET', bytes('A'), 60_000)
      store.set('old:GET', bytes('old'), 1000)
      time.advance(1001)
      runs.length = 0
      const found = store.getMany(['a:GET', 'old:GET', 'none:GET'])
      assert.ok(Array.isArray(found), 'an array, not a promise')
      assert.deepEqual(found, [bytes('A'), undefined, undefined])
      assert.equal(runs.length, 1)
      assert.match(runs[0].sql, /WHERE key IN \(\?, \?, \?\)/)
      assert.deepEqual(store.getMany([]), [])
      const many = Array.from({ length: 20 }, (_, i) => `k${i}:GET`)
      runs.length = 0
      assert.deepEqual(store.getMany([...many, 'a:GET']), [...many.map(() => undefined), bytes('A')])
      assert.equal(runs.length, 2, '21 keys in statements of 16 and 5')
      store.close()
      db.close()
    })

    it('should count as a read of each entry it finds when evicting the least recently read', function () {
      const time = clock()
      const store = sqliteStore({ path: tempFile() }, { maxEntries: 3, now: time.now })
      for (const key of ['a', 'b', 'c']) {
        store.set(key, bytes(key), 60_000)
        time.advance(10)
      }
      store.getMany(['a', 'none'])
      time.advance(10)
      store.set('d', bytes('d'), 60_000)
      assert.deepEqual(
        ['a', 'b', 'c', 'd'].filter((key) => store.get(key) !== undefined),
        ['a', 'c', 'd'],
      )
      store.close()
    })
  })

  describe('setIf()', function () {
    it('should answer synchronously across two connections, an expired row counting as nothing', function () {
      const time = clock()
      const path = tempFile()
      const one = sqliteStore({ path }, { now: time.now })
      const two = sqliteStore({ path }, { now: time.now })
      assert.equal(one.setIf('mark', null, bytes('1'), 1000), true)
      const held = two.setIf('mark', null, bytes('2'), 1000)
      assert.ok(Buffer.isBuffer(held), 'a Buffer, not a promise')
      assert.equal(held.toString(), '1')
      assert.equal(two.setIf('mark', bytes('1'), bytes('2'), 1000), true)
      assert.equal(one.get('mark')?.toString(), '2')
      time.advance(1001)
      assert.equal(one.setIf('mark', bytes('2'), bytes('3'), 1000), null)
      assert.equal(two.setIf('mark', null, bytes('3'), 1000), true)
      assert.equal(one.get('mark')?.toString(), '3')
      one.close()
      two.close()
    })

    it("should read and write with the store's own statements", function () {
      const db = new Database(tempFile())
      const { spy, runs } = recording(db)
      const store = sqliteStore({ database: spy })
      store.set('mark', bytes('1'), 60_000)
      runs.length = 0
      assert.equal(store.setIf('mark', bytes('1'), bytes('2'), 60_000), true)
      assert.match(runs[0].sql, /^SELECT value, expires FROM "cachet" WHERE key = \?$/)
      assert.match(runs[1].sql, /^INSERT INTO "cachet"/)
      assert.deepEqual(runs[1].params.slice(0, 2), ['cachet:mark', bytes('2')])
      store.close()
      db.close()
    })

    it('should take the write lock before it reads: with another connection writing, even an answer that writes nothing waits', function () {
      const path = tempFile()
      const store = sqliteStore({ path }, { busyTimeout: 0 })
      store.set('mark', bytes('1'), 60_000)
      const blocker = new Database(path)
      blocker.exec('BEGIN IMMEDIATE')
      try {
        assert.throws(() => store.setIf('mark', bytes('other'), bytes('2'), 60_000), /locked|busy/i)
        assert.equal(store.get('mark')?.toString(), '1', 'WAL: reads go on past a writer')
      } finally {
        blocker.exec('ROLLBACK')
        blocker.close()
      }
      assert.equal(store.setIf('mark', bytes('1'), bytes('2'), 60_000), true)
      store.close()
    })

    it('should keep the table within maxEntries when it stores', function () {
      const time = clock()
      const store = sqliteStore({ path: tempFile() }, { maxEntries: 2, now: time.now })
      for (const key of ['a', 'b', 'c']) {
        assert.equal(store.setIf(key, null, bytes(key), 60_000), true)
        time.advance(10)
      }
      assert.equal(store.stats().entries, 2)
      assert.equal(store.get('a'), undefined)
      store.close()
    })
  })

  describe('deleteMatching() and the index', function () {
    for (const [pattern, how] of [
      ['posts:*', 'a range on the primary key'],
      ['posts:*:GET', 'the range of its literal head, then GLOB'],
    ] as const) {
      it(`should search ${JSON.stringify(pattern)} through ${how}, never scan the table`, function () {
        const db = new Database(tempFile())
        const { spy, runs } = recording(db)
        const store = sqliteStore({ database: spy })
        for (let i = 0; i < 50; i++) store.set(`posts:${i}:GET`, bytes('x'), 60_000)
        store.set('users:1:GET', bytes('x'), 60_000)
        runs.length = 0
        assert.equal(store.deleteMatching(pattern), 50)
        assert.equal(runs.length, 1)
        const plan = db.prepare(`EXPLAIN QUERY PLAN ${runs[0].sql}`).all(...runs[0].params) as { detail: string }[]
        const details = plan.map((row) => row.detail).join('\n')
        assert.match(details, /SEARCH cachet USING (COVERING )?INDEX sqlite_autoindex_cachet_1 \(key>\? AND key<\?\)/)
        assert.doesNotMatch(details, /SCAN cachet/)
        store.close()
        db.close()
      })
    }
  })

  describe('options', function () {
    it('should name the option and show the value of a bad one', function () {
      assert.throws(() => sqliteStore({ path: '' }), /option "path" must be a non-empty file name, got ""/)
      assert.throws(() => sqliteStore({ database: {} as never }), /option "database" must be a better-sqlite3 Database, got an object \(Object\)/)
      assert.throws(() => sqliteStore({ path: tempFile() }, { table: 'x; DROP TABLE y' }), /option "table" must be an identifier.*got "x; DROP TABLE y"/)
      assert.throws(() => sqliteStore({ path: tempFile() }, { maxEntries: 0 }), /option "maxEntries" must be a positive integer or Infinity, got 0/)
      assert.throws(() => sqliteStore({ path: tempFile(), busyTimeout: -1 }), /option "busyTimeout" must be an integer of at least 0, got -1/)
      assert.throws(() => sqliteStore({} as never), /needs a "path".*or a "database"/)
    })
  })

  describe('behind responseCache', function () {
    it('should answer MISS then HIT, and MISS again after invalidate(posts:*)', async function () {
      const h = await setup(memory, { store: sqliteStore({ path: tempFile() }), realTime: true })
      h.O.headers = CC60
      await h.get('/posts').expect(200).expect('X-Cache', 'MISS')
      await landed(h, 'posts:GET')
      await h.get('/posts').expect(200, 'v1').expect('X-Cache', 'HIT')
      assert.equal(await h.cache.invalidate('posts:*'), 1)
      await h.get('/posts').expect(200, 'v2').expect('X-Cache', 'MISS')
      assert.equal(h.O.calls, 2)
    })

    {
      it('should serve requests uncached while another connection holds a write transaction, and cache again after', async function () {
        const path = tempFile()
        const errors: Error[] = []
        const h = await setup(memory, {
          store: sqliteStore({ path }, { busyTimeout: 20 }),
          options: { storeTimeout: '200ms', onError: (error) => void errors.push(error) },
          realTime: true,
        })
        h.O.headers = CC60
        await h.get('/warm').expect('X-Cache', 'MISS')
        await landed(h, 'warm:GET')
        const blocker = new Database(path)
        blocker.exec('BEGIN IMMEDIATE')
        try {
          // Each request is bounded by the 20 ms busy_timeout (a store stuck behind the lock would hold it for good).
          for (let i = 0; i < 4; i++) await h.get(`/locked/${i}`).timeout(5000).expect(200).expect('X-Cache', 'MISS')
          await h.get('/locked/0').timeout(5000).expect(200).expect('X-Cache', 'MISS')
          assert.equal(h.store.get(`warm:GET#${h.host}`) instanceof Uint8Array, true, 'WAL: reads go on past a writer')
          assert.equal(h.O.calls, 6)
          const deadline = Date.now() + 3000
          while (!errors.some((error) => /SQLITE_BUSY|locked/.test(`${(error as { code?: string }).code} ${error.message}`))) {
            if (Date.now() > deadline) throw new Error(`no SQLITE_BUSY reported: ${errors.map(String)}`)
            await new Promise((resolve) => setTimeout(resolve, 10))
          }
        } finally {
          blocker.exec('ROLLBACK')
          blocker.close()
        }
        // The cache skips a failing store for a cool-down (its circuit breaker): wait for a HIT.
        const until = Date.now() + 30_000
        for (let n = 0; ; n++) {
          if (Date.now() > until) throw new Error('caching did not resume within 30 s')
          await h.get(`/after/${n}`).expect(200)
          if ((await h.get(`/after/${n}`).expect(200)).headers['x-cache'] === 'HIT') break
          await new Promise((resolve) => setTimeout(resolve, 100))
        }
      })
    }
  })

  describe('examples/sqlite', function () {
    it('should share one file between two processes: a HIT in the other, and a POST invalidating both', async function () {
      const path = tempFile()
      const posts: Post[] = [{ id: 1, title: 'Hello' }]
      const one = createApp(sqliteStore({ path }, { prefix: 'blog:' }), posts)
      const two = createApp(sqliteStore({ path }, { prefix: 'blog:' }), posts)
      await expectSharedBlog(one, two)
    })
  })
})
