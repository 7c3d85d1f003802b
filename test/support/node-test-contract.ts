/**
 * The published Store contract (src/testing.ts) under node:test instead of mocha:
 * `CONTRACT_STORE=memory|broken node --import tsx --test test/support/node-test-contract.ts`.
 * `broken` is a memory store whose delete() forgets to delete, so the run must fail.
 */
import { afterEach, beforeEach, describe, it } from 'node:test'
import { memoryStore } from '../../src/index.js'
import { runStoreContract } from '../../src/testing.js'
import type { Store } from '../../src/index.js'

const which = process.env.CONTRACT_STORE ?? 'memory'

runStoreContract({ describe, it, beforeEach, afterEach }, `${which} store under node:test`, function makeSubject() {
  let clock = 1_700_000_000_000
  const memory = memoryStore({ now: () => clock })
  const store: Store = which === 'broken' ? { ...memory, delete: function forget() {} } : memory
  return {
    store,
    async advance(ms: number) {
      clock += ms
      // lru-cache reads an injected clock again only after its ttlResolution timer fires.
      await new Promise((resolve) => setTimeout(resolve, 5))
    },
    cleanup: () => memory.close?.(),
  }
})
