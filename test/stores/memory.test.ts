/** memoryStore() against the shared Store contract, on an injected clock. */
import { memoryStore } from '../../src/stores/memory.js'
import { runStoreContract } from '../support/store-contract.js'

runStoreContract('memoryStore()', () => {
  let clock = 1_700_000_000_000
  const store = memoryStore({ now: () => clock })
  return {
    store,
    async advance(ms) {
      clock += ms
      // lru-cache memoises "now" for ttlResolution (default 1 ms) on a timer, so an injected
      // clock is only read again after that timer fires. Remove this wait once memoryStore
      // passes ttlResolution: 0 to lru-cache.
      await new Promise((resolve) => setTimeout(resolve, 5))
    },
    cleanup: () => store.close?.(),
  }
})
