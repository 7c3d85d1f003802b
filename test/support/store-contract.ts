/** runStoreContract() on mocha's globals: the Store contract of src/testing.ts as every store test here runs it. */
import { runStoreContract as registerContract, type ContractFactory, type ContractSubject, type StoreCapabilities } from '../../src/testing.js'

export type { ContractFactory, ContractSubject, StoreCapabilities }

/** Register the contract suite for one store under `describe(name)`, with mocha's test functions. */
export function runStoreContract(name: string, factory: ContractFactory, capabilities: StoreCapabilities = {}): void {
  registerContract({ describe, it, beforeEach, afterEach }, name, factory, capabilities)
}
