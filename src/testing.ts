/** cachet/testing: the Store contract suite, for any test runner (mocha, node:test, vitest, jest). */
import { randomBytes } from 'node:crypto'
// node:assert, so the suite brings no assertion library and works under every runner.
import assert from 'node:assert/strict'
import { compilePattern, RECORD_PREFIX } from './pattern.js'
import type { Store } from './types.js'
import { asBuffer } from './stores/bytes.js'

/**
 * The test runner's functions the contract registers its tests with: mocha's globals,
 * `node:test`'s exports or vitest's all fit.
 *
 * @example
 * import { describe, it, beforeEach, afterEach } from 'node:test'
 * runStoreContract({ describe, it, beforeEach, afterEach }, 'myStore()', () => ({ store: myStore() }))
 */
export interface TestFunctions {
  /** Register a group of tests. */
  describe(name: string, body: () => void): unknown
  /** Register one test; the contract's test bodies take no callback (they return promises). */
  it(name: string, body: () => Promise<void>): unknown
  /** Run before every test of the enclosing group. */
  beforeEach(body: () => Promise<void>): unknown
  /** Run after every test of the enclosing group. */
  afterEach(body: () => Promise<void>): unknown
}

/** What a factory hands the contract: a fresh, empty store and ways to look behind it. */
export interface ContractSubject {
  store: Store
  /**
   * Move the store's clock forward (a memory store built with an injected `now`). Without it the
   * ttl test waits in real time.
   * @default undefined (the ttl test waits `capabilities.ttl.waitMs` in real time)
   */
  advance?(ms: number): unknown
  /**
   * Write a key outside this store's prefix straight into the backend, and tell whether it is
   * still there; used to prove `clear()` only removes the store's own keys.
   * @default undefined (only a sibling store from the factory is checked)
   */
  foreign?: { put(): Promise<void>; exists(): Promise<boolean> }
  /** Release the store (and whatever the factory opened for it). @default undefined (nothing to release) */
  cleanup?(): unknown
}

/** What a store can do; the contract tests each capability it declares and the refusal of the rest. */
export interface StoreCapabilities {
  /**
   * `'glob'`: any pattern (`*` anywhere), exactly. `'namespaces'`: exactly the forms the
   * middleware sends (`*`, `<segments>:*`, `<primary>#*`, `<path>?*`, literal keys); every other
   * pattern must either reject with an Error naming it (removing nothing) or remove at least
   * every key it matches (a store may widen a pattern, never narrow it).
   * @default 'glob'
   */
  patterns?: 'glob' | 'namespaces'
  /**
   * `deleteMatching` resolves the exact number removed for wildcard patterns.
   * @default true
   */
  counts?: boolean
  /**
   * The real-time ttl test (used when the subject has no `advance`): the ttl set, and how long
   * to wait before the key must be gone.
   * @default { ms: 300, waitMs: 700 }
   */
  ttl?: { ms: number; waitMs: number }
  /**
   * The store has the optional `getMany`, and the contract tests it.
   * @default false
   */
  getMany?: boolean
  /**
   * Wildcard deletions (`deleteMatching`, `clear`) leave the cache's own records, keys starting
   * `cachet~` (tag and purge marks): then `clear()` and `invalidate('*')` also reach writes in
   * flight in other processes. A literal `delete` still removes one.
   * @default false
   */
  keepsRecords?: boolean
  /**
   * The store has the optional `setIf` (compare-and-set), and the contract tests it, including
   * that concurrent read-modify-write rounds through it lose no update.
   * @default false
   */
  setIf?: boolean
}

/** Makes a fresh, empty store for each test (and, once per test, a sibling on the same backend). */
export type ContractFactory = () => ContractSubject | Promise<ContractSubject>

const bytes = (text: string) => new TextEncoder().encode(text)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * Register the contract suite for one store under `describe('<name>: the Store contract')`, with
 * the test functions of your runner. Every test gets a fresh subject from `factory` and calls its
 * `cleanup()` afterwards. When the subject has no `advance`, the ttl test waits in real time
 * (`capabilities.ttl.waitMs`): give the runner a per-test timeout above that.
 *
 * @example
 * // mocha (globals)
 * runStoreContract({ describe, it, beforeEach, afterEach }, 'myStore()', () => ({ store: myStore() }))
 */
export function runStoreContract(test: TestFunctions, name: string, factory: ContractFactory, capabilities: StoreCapabilities = {}): void {
  const { describe, it, beforeEach, afterEach } = test
  const patterns = capabilities.patterns ?? 'glob'
  const counts = capabilities.counts ?? true
  const realTtl = capabilities.ttl ?? { ms: 300, waitMs: 700 }

  describe(`${name}: the Store contract`, function () {
    let subject: ContractSubject
    let store: Store
    const extra: ContractSubject[] = []

    beforeEach(async function () {
      subject = await factory()
      store = subject.store
    })

    afterEach(async function () {
      for (const s of [subject, ...extra.splice(0)]) await s?.cleanup?.()
    })

    async function read(key: string): Promise<Buffer | undefined> {
      const value = await store.get(key)
      if (value === undefined || value === null) return undefined
      assert.ok(value instanceof Uint8Array, 'get() resolves a Uint8Array')
      return asBuffer(value)
    }

    async function put(...keys: string[]): Promise<void> {
      for (const key of keys) await store.set(key, bytes(`value of ${key}`), 60_000)
    }

    /** Keys (of `keys`) still readable. */
    async function surviving(keys: string[]): Promise<string[]> {
      const left: string[] = []
      for (const key of keys) if ((await read(key)) !== undefined) left.push(key)
      return left
    }

    async function rejection(action: () => unknown): Promise<Error> {
      try {
        await action()
      } catch (error) {
        return error as Error
      }
      throw new Error('expected the call to throw or reject, it succeeded')
    }

    describe('get()', function () {
      it('should miss on a key that was never set', async function () {
        assert.equal(await read('never:GET'), undefined)
      })
    })

    describe('set() then get()', function () {
      it('should round-trip all 256 byte values', async function () {
        const value = Uint8Array.from({ length: 256 }, (_, i) => i)
        await store.set('bytes:GET', value, 60_000)
        assert.equal((await read('bytes:GET'))!.equals(value), true)
      })

      it('should round-trip empty bytes as empty bytes, not a miss', async function () {
        await store.set('empty:GET', new Uint8Array(0), 60_000)
        const value = await read('empty:GET')
        assert.notEqual(value, undefined)
        assert.equal(value!.length, 0)
      })

      it('should round-trip 1 MB of random bytes', async function () {
        const value = randomBytes(1_000_000)
        await store.set('large:GET', value, 60_000)
        assert.equal((await read('large:GET'))!.equals(value), true)
      })

      it('should round-trip a view into a larger buffer without its neighbours', async function () {
        const backing = Uint8Array.from([9, 9, 1, 2, 3, 9, 9])
        await store.set('view:GET', backing.subarray(2, 5), 60_000)
        assert.deepEqual([...(await read('view:GET'))!], [1, 2, 3])
      })

      it('should replace the value on overwrite', async function () {
        await store.set('over:GET', bytes('first'), 60_000)
        await store.set('over:GET', bytes('second'), 60_000)
        assert.equal((await read('over:GET'))!.toString(), 'second')
      })

      it('should keep keys of 2 KB with spaces and unicode apart and readable', async function () {
        const head = `long path ü 🚀 ${'x'.repeat(2048)}`
        const a = `${head}:a:GET?q=1 2`
        const b = `${head}:b:GET?q=1 2`
        await store.set(a, bytes('A'), 60_000)
        await store.set(b, bytes('B'), 60_000)
        assert.equal((await read(a))!.toString(), 'A')
        assert.equal((await read(b))!.toString(), 'B')
        await store.delete(a)
        assert.equal(await read(a), undefined)
        assert.equal((await read(b))!.toString(), 'B')
      })
    })

    if (capabilities.getMany === true)
      describe('getMany()', function () {
        it('should answer what get() answers for each key, in order, repeats and misses included', async function () {
          assert.equal(typeof store.getMany, 'function', 'the store has getMany()')
          const large = randomBytes(200_000)
          await store.set('many:a:GET', bytes('A'), 60_000)
          await store.set('many:large:GET', large, 60_000)
          await store.set('many:empty:GET', new Uint8Array(0), 60_000)
          const keys = ['many:a:GET', 'many:none:GET', 'many:large:GET', 'many:a:GET', 'many:empty:GET', `many:ü ${'x'.repeat(600)}:GET`]
          const found = await store.getMany!(keys)
          assert.equal(found.length, keys.length)
          const text = found.map((v) => (v === undefined || v === null ? null : asBuffer(v)))
          assert.equal(text[0]!.toString(), 'A')
          assert.equal(text[1], null)
          assert.equal(text[2]!.equals(large), true)
          assert.equal(text[3]!.toString(), 'A')
          assert.equal(text[4]!.length, 0)
          assert.equal(text[5], null)
          await store.delete('many:a:GET')
          const again = await store.getMany!(['many:a:GET', 'many:large:GET'])
          assert.equal(again[0] ?? null, null)
          assert.equal(Buffer.from(again[1]!).equals(large), true)
          assert.deepEqual([...(await store.getMany!([]))], [])
        })
      })

    if (capabilities.setIf === true)
      describe('setIf()', function () {
        const text = (value: Uint8Array | null | true | undefined) =>
          value === true ? true : value === null || value === undefined ? null : asBuffer(value).toString()

        it('should store over nothing only when it expects nothing, and answer what is held otherwise', async function () {
          assert.equal(typeof store.setIf, 'function', 'the store has setIf()')
          assert.equal(await store.setIf!('cas:GET', null, bytes('first'), 60_000), true)
          assert.equal((await read('cas:GET'))!.toString(), 'first')
          assert.equal(text(await store.setIf!('cas:GET', null, bytes('second'), 60_000)), 'first')
          assert.equal((await read('cas:GET'))!.toString(), 'first')
        })

        it('should replace the value only while it holds the bytes expected', async function () {
          await store.set('cas:GET', bytes('first'), 60_000)
          assert.equal(text(await store.setIf!('cas:GET', bytes('other'), bytes('second'), 60_000)), 'first')
          assert.equal((await read('cas:GET'))!.toString(), 'first')
          assert.equal(await store.setIf!('cas:GET', bytes('first'), bytes('second'), 60_000), true)
          assert.equal((await read('cas:GET'))!.toString(), 'second')
          await store.delete('cas:GET')
          assert.equal(text(await store.setIf!('cas:GET', bytes('second'), bytes('third'), 60_000)), null)
          assert.equal(await read('cas:GET'), undefined)
        })

        it('should tell empty bytes from nothing, and work on the records and on keys of 2 KB', async function () {
          await store.set('cas:GET', new Uint8Array(0), 60_000)
          assert.equal(text(await store.setIf!('cas:GET', null, bytes('x'), 60_000)), '')
          assert.equal(await store.setIf!('cas:GET', new Uint8Array(0), bytes('x'), 60_000), true)
          for (const key of [`${RECORD_PREFIX}tag:posts`, `long ü ${'x'.repeat(2048)}:GET`]) {
            assert.equal(await store.setIf!(key, null, bytes('1'), 60_000), true)
            assert.equal(await store.setIf!(key, bytes('1'), bytes('2'), 60_000), true)
            assert.equal((await read(key))!.toString(), '2')
          }
        })

        it('should lose no update when rounds of read, change and setIf run at once', async function () {
          const key = `${RECORD_PREFIX}tag:counter`
          const workers = 8
          const rounds = 5
          // Each round adds one to a counter: a plain read-then-set would lose some of them.
          const work = async () => {
            for (let round = 0; round < rounds; round++) {
              let held: Uint8Array | null = (await store.get(key)) ?? null
              for (let attempt = 0; ; attempt++) {
                assert.ok(attempt < 1000, 'setIf settles')
                const next = bytes(String(Number(text(held) ?? '0') + 1))
                const answer = await store.setIf!(key, held, next, 60_000)
                if (answer === true) break
                held = answer
              }
            }
          }
          await Promise.all(Array.from({ length: workers }, work))
          assert.equal((await read(key))!.toString(), String(workers * rounds))
        })
      })

    if (capabilities.keepsRecords === true)
      describe("the cache's records", function () {
        it("should outlive deleteMatching('*') and clear(), and go with delete(key)", async function () {
          const record = `${RECORD_PREFIX}tag:~invalidations`
          await store.set(record, bytes('mark'), 60_000)
          await put('posts:1:GET', 'users:1:GET')
          await store.deleteMatching('*')
          assert.deepEqual(await surviving([record, 'posts:1:GET', 'users:1:GET']), [record])
          await put('posts:1:GET')
          await store.clear?.()
          assert.deepEqual(await surviving([record, 'posts:1:GET']), [record])
          await store.delete(record)
          assert.equal(await read(record), undefined)
        })
      })

    describe('ttl', function () {
      it('should expire an entry after its ttl', async function (this: unknown) {
        // mocha's per-test timeout; other runners take theirs from their own configuration.
        const mocha = this as { timeout?: (ms: number) => void } | undefined
        if (typeof mocha?.timeout === 'function') mocha.timeout(realTtl.waitMs + 10_000)
        if (subject.advance) {
          await store.set('short:GET', bytes('v'), 1000)
          await subject.advance(999)
          assert.notEqual(await read('short:GET'), undefined)
          await subject.advance(2)
          assert.equal(await read('short:GET'), undefined)
          return
        }
        await store.set('short:GET', bytes('v'), realTtl.ms)
        await store.set('long:GET', bytes('v'), 60_000)
        assert.notEqual(await read('short:GET'), undefined)
        await sleep(realTtl.waitMs)
        assert.equal(await read('short:GET'), undefined)
        assert.notEqual(await read('long:GET'), undefined)
      })
    })

    describe('delete()', function () {
      it('should remove one key and leave the others', async function () {
        await put('posts:GET', 'posts:GET?page=2')
        await store.delete('posts:GET')
        assert.deepEqual(await surviving(['posts:GET', 'posts:GET?page=2']), ['posts:GET?page=2'])
      })

      it('should not throw for a missing key', async function () {
        await store.delete('missing:GET')
      })
    })

    describe('deleteMatching()', function () {
      const tree = [
        'GET',
        'posts:GET',
        'posts:GET?page=2',
        'posts:GET#host.example',
        'posts:GET?page=2#accept-encoding=gzip',
        'posts:42:GET',
        'posts:42:GET?a=1&b=2#host.example#accept-encoding=gzip',
        'posts:42:comments:GET',
        'posts:420:GET',
        'postsx:GET',
        'post:GET',
        'users:1:GET',
      ]

      async function check(pattern: string, removed: string[]): Promise<void> {
        await put(...tree)
        const count = await store.deleteMatching(pattern)
        assert.deepEqual(
          await surviving(tree),
          tree.filter((key) => !removed.includes(key)),
          `left after deleteMatching(${JSON.stringify(pattern)})`,
        )
        if (counts) assert.equal(count, removed.length)
        else assert.equal(typeof count, 'number')
      }

      it("should remove every key of the store with '*'", async function () {
        await check('*', tree)
      })

      it("should remove a path and everything below it with 'posts:*'", async function () {
        await check(
          'posts:*',
          tree.filter((key) => key.startsWith('posts:')),
        )
      })

      it("should stop at segment boundaries with 'posts:42:*' (not posts:420)", async function () {
        await check('posts:42:*', ['posts:42:GET', 'posts:42:GET?a=1&b=2#host.example#accept-encoding=gzip', 'posts:42:comments:GET'])
      })

      it("should remove all variants of one primary key with 'posts:GET#*' and keep the primary", async function () {
        await check('posts:GET#*', ['posts:GET#host.example'])
      })

      it("should remove every query string of one path with 'posts:GET?*'", async function () {
        await check('posts:GET?*', ['posts:GET?page=2', 'posts:GET?page=2#accept-encoding=gzip'])
      })

      it('should remove exactly one key for a pattern without wildcard', async function () {
        await check('posts:GET', ['posts:GET'])
      })

      it('should resolve 0 for a literal pattern that matches nothing', async function () {
        await put('posts:GET')
        assert.equal(await store.deleteMatching('nothing:here:GET'), 0)
        assert.deepEqual(await surviving(['posts:GET']), ['posts:GET'])
      })

      it('should reject an empty pattern with a TypeError', async function () {
        const error = await rejection(() => store.deleteMatching(''))
        assert.ok(error instanceof TypeError, `expected a TypeError, got ${error}`)
      })

      describe('when keys contain glob characters ? [ ] \\', function () {
        const odd = ['a?b', 'a?c', 'abc', 'a[b]c', 'a\\c', 'a*c', 'axc']

        it("should match '?' literally in a literal pattern ('a?c' removes a?c, not abc)", async function () {
          await put(...odd)
          assert.equal(await store.deleteMatching('a?c'), 1)
          assert.deepEqual(
            await surviving(odd),
            odd.filter((k) => k !== 'a?c'),
          )
        })

        it("should match '?' literally before a trailing '*' ('a?*' removes a?b and a?c only)", async function () {
          await put(...odd)
          const count = await store.deleteMatching('a?*')
          assert.deepEqual(await surviving(odd), ['abc', 'a[b]c', 'a\\c', 'a*c', 'axc'])
          if (counts) assert.equal(count, 2)
        })

        it("should match '[' ']' and '\\' literally in a literal pattern", async function () {
          await put(...odd)
          assert.equal(await store.deleteMatching('a[b]c'), 1)
          assert.equal(await store.deleteMatching('a\\c'), 1)
          assert.deepEqual(await surviving(odd), ['a?b', 'a?c', 'abc', 'a*c', 'axc'])
        })

        if (patterns === 'glob') {
          it("should treat '[b]' as literal text next to a '*' ('a[b]*' does not remove abc)", async function () {
            await put(...odd)
            assert.equal(await store.deleteMatching('a[b]*'), 1)
            assert.deepEqual(await surviving(odd), ['a?b', 'a?c', 'abc', 'a\\c', 'a*c', 'axc'])
          })

          it("should treat '\\' as literal text next to a '*' ('a\\*' removes only a\\c)", async function () {
            await put(...odd)
            assert.equal(await store.deleteMatching('a\\*'), 1)
            assert.deepEqual(await surviving(odd), ['a?b', 'a?c', 'abc', 'a[b]c', 'a*c', 'axc'])
          })

          it("should not let '?' stand for one character ('?bc' removes nothing)", async function () {
            await put(...odd)
            assert.equal(await store.deleteMatching('?bc*'), 0)
            assert.deepEqual(await surviving(odd), odd)
          })
        }
      })

      if (patterns === 'glob') {
        describe('when the wildcard is not at the end', function () {
          it("should match across segments with 'posts:*:GET'", async function () {
            await check('posts:*:GET', ['posts:42:GET', 'posts:42:comments:GET', 'posts:420:GET'])
          })

          it("should match a partial segment with 'posts:4*'", async function () {
            await check('posts:4*', ['posts:42:GET', 'posts:42:GET?a=1&b=2#host.example#accept-encoding=gzip', 'posts:42:comments:GET', 'posts:420:GET'])
          })

          it("should match a suffix with '*:GET'", async function () {
            await check(
              '*:GET',
              tree.filter((key) => key.endsWith(':GET')),
            )
          })
        })
      } else {
        describe('when the pattern is not one of the supported forms', function () {
          for (const pattern of ['posts:*:GET', 'posts:4*', '*:GET', 'a*c', 'a[b]*', 'posts:GET?page=*', 'posts:GET#h#*', '*posts:']) {
            it(`should either reject ${JSON.stringify(pattern)} with an Error naming it and remove nothing, or remove every key it matches`, async function () {
              await put(...tree)
              let error: Error | undefined
              try {
                await store.deleteMatching(pattern)
              } catch (caught) {
                error = caught as Error
              }
              if (error !== undefined) {
                assert.ok(error.message.includes(JSON.stringify(pattern)), error.message)
                assert.deepEqual(await surviving(tree), tree)
              } else {
                // Widened (more removed than asked) is allowed; a key it matches surviving is not.
                const matches = compilePattern(pattern)
                assert.deepEqual((await surviving(tree)).filter(matches), [], `left after deleteMatching(${JSON.stringify(pattern)})`)
              }
            })
          }
        })
      }

      it('should match a 2 KB unicode segment followed by :*', async function () {
        const segment = `long ü 🚀 ${'y'.repeat(2048)}`
        const keys = [`${segment}:GET`, `${segment}:GET?x=1`, `${segment}x:GET`]
        await put(...keys)
        await store.deleteMatching(`${segment}:*`)
        assert.deepEqual(await surviving(keys), [`${segment}x:GET`])
      })
    })

    describe('clear()', function () {
      it('should remove every key of this store', async function () {
        assert.equal(typeof store.clear, 'function', 'clear() is part of the contract for cachet stores')
        await put('posts:GET', 'a?b', 'GET')
        await store.clear!()
        assert.deepEqual(await surviving(['posts:GET', 'a?b', 'GET']), [])
      })

      it('should leave keys of another store, and keys outside its prefix, alone', async function () {
        const sibling = await factory()
        extra.push(sibling)
        await put('posts:GET')
        await sibling.store.set('posts:GET', bytes('sibling'), 60_000)
        await subject.foreign?.put()
        await store.clear!()
        assert.equal(await read('posts:GET'), undefined)
        const left = await sibling.store.get('posts:GET')
        assert.equal(Buffer.from(left!).toString(), 'sibling')
        if (subject.foreign) assert.equal(await subject.foreign.exists(), true, 'foreign key survives')
      })
    })
  })
}
