/** The hand-written example store (examples/custom-store) passes the published contract (cachet/testing), which runs under node:test too. */
import { expect } from 'chai'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import { mapStore } from '../../examples/custom-store/store.js'
import { runStoreContract } from '../../src/testing.js'

runStoreContract({ describe, it, beforeEach, afterEach }, 'mapStore() from examples/custom-store', () => {
  let clock = 1_700_000_000_000
  const store = mapStore({ now: () => clock })
  return {
    store,
    advance(ms) {
      clock += ms
    },
    cleanup: () => store.close?.(),
  }
})

describe('examples/custom-store', function () {
  describe('when its sources are read', function () {
    it('should import cachet only through its public entry points (src/index.ts, src/testing.ts)', async function () {
      for (const file of ['examples/custom-store/store.ts', 'examples/custom-store/app.ts', 'test/stores/custom-store.test.ts']) {
        const source = await readFile(file, 'utf8')
        const internal = [...source.matchAll(/from '((?:\.\.\/)+src\/[^']+)'/g)].map((m) => m[1]).filter((p) => !/src\/(index|testing)\.js$/.test(p))
        expect(internal, file).to.deep.equal([])
      }
    })
  })
})

describe('runStoreContract() from cachet/testing', function () {
  this.timeout(60_000)

  /** Run test/support/node-test-contract.ts under `node --test`: exit code and the TAP summary. */
  async function underNodeTest(store: 'memory' | 'broken') {
    const args = ['--import', 'tsx', '--test', '--test-reporter=tap', 'test/support/node-test-contract.ts']
    const env = { ...process.env, CONTRACT_STORE: store, NODE_OPTIONS: '' }
    try {
      const { stdout } = await promisify(execFile)(process.execPath, args, { env, timeout: 50_000 })
      return { code: 0, stdout }
    } catch (error) {
      const failed = error as { code?: number; stdout?: string }
      return { code: failed.code ?? -1, stdout: failed.stdout ?? '' }
    }
  }

  const count = (stdout: string, what: string) => Number(new RegExp(`^# ${what} (\\d+)$`, 'm').exec(stdout)?.[1] ?? NaN)

  describe('when run by node:test', function () {
    it('should pass every test for the memory store', async function () {
      const { code, stdout } = await underNodeTest('memory')
      expect(count(stdout, 'fail'), stdout).to.equal(0)
      expect(count(stdout, 'pass')).to.be.greaterThan(20)
      expect(code).to.equal(0)
    })

    it('should fail for a store whose delete() does not delete', async function () {
      const { code, stdout } = await underNodeTest('broken')
      expect(count(stdout, 'fail'), stdout).to.be.greaterThan(0)
      expect(stdout).to.include('not ok')
      expect(stdout).to.match(/not ok \d+ - should remove one key and leave the others/)
      expect(code).to.not.equal(0)
    })
  })
})
