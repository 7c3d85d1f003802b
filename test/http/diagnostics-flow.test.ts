/** The request flow publishes on the diagnostics channels of src/diagnostics.ts, and does no work for them when nobody listens. */
import diagnostics from 'node:diagnostics_channel'
import { expect } from 'chai'
import { INVALIDATE_CHANNEL, REQUEST_CHANNEL, STORE_READ_CHANNEL, STORE_WRITE_CHANNEL } from '../../src/diagnostics.js'
import { closeAll, setup, storeFactories } from '../support/app.js'

const memory = storeFactories[0]

describe('diagnostics_channel events from the request flow', function () {
  afterEach(closeAll)

  it('should trace each request with its outcome, and publish store reads, writes and invalidations', async () => {
    const outcomes: unknown[] = []
    const reads: unknown[] = []
    const writes: unknown[] = []
    const invalidations: unknown[] = []
    const onEnd = (message: unknown) => outcomes.push(message)
    const onRead = (message: unknown) => reads.push(message)
    const onWrite = (message: unknown) => writes.push(message)
    const onInvalidate = (message: unknown) => invalidations.push(message)
    diagnostics.subscribe(`tracing:${REQUEST_CHANNEL}:asyncEnd`, onEnd)
    diagnostics.subscribe(STORE_READ_CHANNEL, onRead)
    diagnostics.subscribe(STORE_WRITE_CHANNEL, onWrite)
    diagnostics.subscribe(INVALIDATE_CHANNEL, onInvalidate)
    try {
      const h = await setup(memory)
      h.O.headers = { 'Cache-Control': 'max-age=60' }
      await h.get('/posts/1').expect('X-Cache', 'MISS')
      await h.get('/posts/1').expect('X-Cache', 'HIT')
      await h.agent.post('/posts/1').expect(200)
      await h.cache.invalidate('posts:*')
      const seen = outcomes.map((m) => (m as { outcome: string }).outcome)
      expect(seen).to.deep.equal(['MISS', 'HIT', 'BYPASS'])
      expect((outcomes[0] as { key: string; stored: boolean }).key).to.match(/^posts:1:GET#/)
      expect((outcomes[0] as { stored: boolean }).stored).to.equal(true)
      expect(writes.map((m) => (m as { outcome: string }).outcome)).to.deep.equal(['landed'])
      expect(reads.map((m) => (m as { outcome: string }).outcome).slice(0, 2)).to.deep.equal(['miss', 'hit'])
      expect(invalidations).to.deep.include({ pattern: 'posts:*', removed: 0 })
    } finally {
      diagnostics.unsubscribe(`tracing:${REQUEST_CHANNEL}:asyncEnd`, onEnd)
      diagnostics.unsubscribe(STORE_READ_CHANNEL, onRead)
      diagnostics.unsubscribe(STORE_WRITE_CHANNEL, onWrite)
      diagnostics.unsubscribe(INVALIDATE_CHANNEL, onInvalidate)
    }
  })

  it('should read no clock for them on 100 hits when nobody listens', async () => {
    const h = await setup(memory)
    h.O.headers = { 'Cache-Control': 'max-age=60' }
    await h.get('/quiet').expect('X-Cache', 'MISS')
    const now = performance.now
    let calls = 0
    performance.now = function counted(this: typeof performance) {
      calls++
      return now.call(this)
    }
    try {
      for (let i = 0; i < 100; i++) await h.get('/quiet').expect('X-Cache', 'HIT')
    } finally {
      performance.now = now
    }
    expect(calls).to.equal(0)
  })
})
