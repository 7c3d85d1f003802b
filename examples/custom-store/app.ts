/** The app of examples/basic on the hand-written mapStore() of ./store.ts: any object with the Store methods plugs in. */
import type { AddressInfo } from 'node:net'
import { responseCache } from '../../src/index.js'
import { createApp as createBasicApp } from '../basic/app.js'
import { mapStore } from './store.js'

/** examples/basic's app, cached in a mapStore(). */
export function createApp() {
  return createBasicApp(responseCache({ store: mapStore() }))
}

// `tsx examples/custom-store/app.ts` serves it on PORT (default 3000), loopback only.
if (import.meta.url === `file://${process.argv[1]}`) {
  const { app } = createApp()
  const server = app.listen(Number(process.env.PORT ?? 3000), '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo
    console.log(`http://127.0.0.1:${port}/time (X-Cache shows MISS, then HIT)`)
  })
}
