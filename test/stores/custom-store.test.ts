/** The hand-written example store (examples/custom-store) passes the same contract as the built-in ones. */
import { mapStore } from '../../examples/custom-store/store.js'
import { runStoreContract } from '../support/store-contract.js'

runStoreContract('mapStore() from examples/custom-store', () => {
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
