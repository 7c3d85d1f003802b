/** runStoreContract() on mocha's globals: the Store contract of src/testing.ts as every store test here runs it, plus checks for this package's own stores. */
import assert from 'node:assert/strict'
import { runStoreContract as registerContract, type ContractFactory, type ContractSubject, type StoreCapabilities } from '../../src/testing.js'

export type { ContractFactory, ContractSubject, StoreCapabilities }

/** What this package's own stores promise beyond the contract, which a custom store need not. */
export interface OwnChecks {
  /** The methods that refuse a value that is not bytes with a TypeError naming the method. */
  rejectsNonBytes?: ('set' | 'setIf')[]
}

/** Register the contract suite for one store under `describe(name)`, with mocha's test functions. */
export function runStoreContract(name: string, factory: ContractFactory, capabilities: StoreCapabilities = {}, own: OwnChecks = {}): void {
  registerContract({ describe, it, beforeEach, afterEach }, name, factory, capabilities)
  if (!own.rejectsNonBytes?.length) return
  describe(`${name}: values that are not bytes`, function () {
    for (const method of own.rejectsNonBytes!) {
      it(`should be refused by ${method}() with a TypeError that names ${method}`, async function () {
        const subject = await factory()
        try {
          const { store } = subject
          const write = method === 'set' ? () => store.set('k', 'text' as never, 60_000) : () => store.setIf!('k', null, 'text' as never, 60_000)
          await assert.rejects(
            async () => write(),
            (error: Error) => {
              assert.ok(error instanceof TypeError, `expected a TypeError, got ${String(error)}`)
              assert.match(error.message, new RegExp(`^\\w+Store\\.${method} expects bytes, got `))
              return true
            },
          )
          assert.equal((await store.get('k')) ?? undefined, undefined, 'nothing written')
        } finally {
          await subject.cleanup?.()
        }
      })
    }
  })
}
