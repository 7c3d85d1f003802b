/** The diagnostics_channel events (src/diagnostics.ts): what each helper publishes, and that it does nothing unheard. */
import { expect } from 'chai'
import diagnostics from 'node:diagnostics_channel'
import {
  INVALIDATE_CHANNEL,
  REQUEST_CHANNEL,
  STORE_READ_CHANNEL,
  STORE_WRITE_CHANNEL,
  endRequest,
  publishInvalidate,
  publishStoreRead,
  publishStoreWrite,
  startRequest,
  storeCallStarted,
  type RequestMessage,
} from '../../src/diagnostics.js'

const TRACING_EVENTS = ['start', 'end', 'asyncStart', 'asyncEnd', 'error'] as const

/** Subscribe to a plain channel; `stop()` unsubscribes. */
function listen(name: string) {
  const seen: unknown[] = []
  const onMessage = function onMessage(message: unknown) {
    seen.push(message)
  }
  diagnostics.subscribe(name, onMessage)
  return { seen, stop: () => diagnostics.unsubscribe(name, onMessage) }
}

/** Subscribe to every event of the request tracing channel, recording `[event, snapshot, same object]`. */
function listenToRequests() {
  const events: Array<{ event: string; message: RequestMessage; snapshot: Record<string, unknown> }> = []
  const handlers = TRACING_EVENTS.map((event) => {
    const onEvent = function onEvent(message: unknown) {
      events.push({ event, message: message as RequestMessage, snapshot: { ...(message as object) } })
    }
    diagnostics.subscribe(`tracing:${REQUEST_CHANNEL}:${event}`, onEvent)
    return [event, onEvent] as const
  })
  return {
    events,
    stop: () => handlers.forEach(([event, onEvent]) => diagnostics.unsubscribe(`tracing:${REQUEST_CHANNEL}:${event}`, onEvent)),
  }
}

/** Count calls of `performance.now()` while `run` runs: a helper that builds no message reads no clock. */
function clockReads(run: () => void): number {
  const original = performance.now
  let reads = 0
  performance.now = function countedNow(this: typeof performance) {
    reads++
    return original.call(this)
  }
  try {
    run()
  } finally {
    performance.now = original
  }
  return reads
}

/** An object whose every property read is counted. */
function counted<T extends object>(fields: T): { value: T; reads: () => number } {
  let reads = 0
  const value = {} as T
  for (const [name, field] of Object.entries(fields)) {
    Object.defineProperty(value, name, {
      enumerable: true,
      get() {
        reads++
        return field
      },
    })
  }
  return { value, reads: () => reads }
}

describe('diagnostics channels', () => {
  describe('when their names are read', () => {
    it('should be the documented names', () => {
      expect([REQUEST_CHANNEL, STORE_READ_CHANNEL, STORE_WRITE_CHANNEL, INVALIDATE_CHANNEL]).to.deep.equal([
        'cachet:request',
        'cachet:store:read',
        'cachet:store:write',
        'cachet:invalidate',
      ])
    })
  })
})

describe('startRequest() / endRequest()', () => {
  describe('when a subscriber listens to the tracing channel', () => {
    it('should publish start and end, then asyncStart and asyncEnd with the outcome, on one object', () => {
      const { events, stop } = listenToRequests()
      try {
        const trace = startRequest('/posts#example.com', 'GET', '/posts')
        expect(trace).to.not.equal(undefined)
        endRequest(trace, 'MISS', { stored: true, cacheStatus: 'cachet; fwd=uri-miss; stored' })
      } finally {
        stop()
      }
      expect(events.map((e) => e.event)).to.deep.equal(['start', 'end', 'asyncStart', 'asyncEnd'])
      expect(new Set(events.map((e) => e.message)).size).to.equal(1)
      expect(events[0].snapshot).to.deep.equal({ key: '/posts#example.com', method: 'GET', route: '/posts' })
      expect(events[1].snapshot).to.deep.equal(events[0].snapshot)
      const { durationMs, ...rest } = events[3].snapshot
      expect(rest).to.deep.equal({
        key: '/posts#example.com',
        method: 'GET',
        route: '/posts',
        outcome: 'MISS',
        stored: true,
        cacheStatus: 'cachet; fwd=uri-miss; stored',
      })
      expect(durationMs).to.be.a('number').and.to.be.at.least(0)
    })

    it('should take the route and reason given at the end, and leave out what was not given', () => {
      const { events, stop } = listenToRequests()
      try {
        endRequest(startRequest('/a#h', 'HEAD'), 'BYPASS', { route: '/a', reason: 'request Cache-Control: no-store' })
        endRequest(startRequest('/b#h', 'GET'), 'HIT')
      } finally {
        stop()
      }
      const ends = events.filter((e) => e.event === 'asyncEnd').map((e) => e.snapshot)
      expect(ends.map(({ durationMs, ...rest }) => rest)).to.deep.equal([
        { key: '/a#h', method: 'HEAD', route: '/a', outcome: 'BYPASS', reason: 'request Cache-Control: no-store' },
        { key: '/b#h', method: 'GET', outcome: 'HIT' },
      ])
      expect(events[0].snapshot).to.deep.equal({ key: '/a#h', method: 'HEAD' })
    })

    it('should publish error before asyncStart when the phase met a failure', () => {
      const { events, stop } = listenToRequests()
      const failure = new Error('store down')
      try {
        endRequest(startRequest('/c#h', 'GET'), 'MISS', { error: failure, stored: false })
      } finally {
        stop()
      }
      expect(events.map((e) => e.event)).to.deep.equal(['start', 'end', 'error', 'asyncStart', 'asyncEnd'])
      expect(events[2].message.error).to.equal(failure)
    })

    it('should publish the outcome once when a request is ended twice', () => {
      const { events, stop } = listenToRequests()
      try {
        const trace = startRequest('/d#h', 'GET')
        endRequest(trace, 'MISS')
        endRequest(trace, 'HIT')
      } finally {
        stop()
      }
      expect(events.filter((e) => e.event === 'asyncEnd').map((e) => e.message.outcome)).to.deep.equal(['MISS'])
    })

    it('should be heard through diagnostics_channel.tracingChannel(REQUEST_CHANNEL)', () => {
      const seen: string[] = []
      const handlers = {
        start: (m: unknown) => seen.push(`start ${(m as RequestMessage).key}`),
        end: () => seen.push('end'),
        asyncStart: () => seen.push('asyncStart'),
        asyncEnd: (m: unknown) => seen.push(`asyncEnd ${(m as RequestMessage).outcome}`),
        error: () => seen.push('error'),
      }
      const channel = diagnostics.tracingChannel(REQUEST_CHANNEL)
      channel.subscribe(handlers)
      try {
        endRequest(startRequest('/e#h', 'GET'), 'STALE')
      } finally {
        channel.unsubscribe(handlers)
      }
      expect(seen).to.deep.equal(['start /e#h', 'end', 'asyncStart', 'asyncEnd STALE'])
    })
  })

  describe('when nobody subscribes', () => {
    it('should return undefined without reading the clock, and endRequest should not read its detail', () => {
      const detail = counted({ stored: true, reason: 'x', route: '/r', cacheStatus: 'c', error: new Error('e') })
      let trace: RequestMessage | undefined = {} as RequestMessage
      const reads = clockReads(() => {
        trace = startRequest('/k#h', 'GET', '/r')
        endRequest(trace, 'HIT', detail.value)
      })
      expect(trace).to.equal(undefined)
      expect(reads).to.equal(0)
      expect(detail.reads()).to.equal(0)
    })

    it('should publish nothing at the end of a request that started unheard', () => {
      const trace = startRequest('/k#h', 'GET')
      const { events, stop } = listenToRequests()
      try {
        endRequest(trace, 'HIT')
      } finally {
        stop()
      }
      expect(events).to.deep.equal([])
    })
  })
})

describe('publishStoreRead()', () => {
  describe('when a subscriber listens', () => {
    it('should publish exactly key, outcome and durationMs', () => {
      const { seen, stop } = listen(STORE_READ_CHANNEL)
      try {
        const t = storeCallStarted()
        expect(t).to.be.above(0)
        publishStoreRead('/posts#h', 'hit', t)
        publishStoreRead('/none#h', 'miss', storeCallStarted())
        publishStoreRead('/down#h', 'error', storeCallStarted())
      } finally {
        stop()
      }
      expect(seen.map((m) => Object.keys(m as object))).to.deep.equal([
        ['key', 'outcome', 'durationMs'],
        ['key', 'outcome', 'durationMs'],
        ['key', 'outcome', 'durationMs'],
      ])
      expect(seen.map((m) => ({ ...(m as object), durationMs: 0 }))).to.deep.equal([
        { key: '/posts#h', outcome: 'hit', durationMs: 0 },
        { key: '/none#h', outcome: 'miss', durationMs: 0 },
        { key: '/down#h', outcome: 'error', durationMs: 0 },
      ])
      for (const m of seen)
        expect((m as { durationMs: number }).durationMs)
          .to.be.a('number')
          .and.at.least(0)
    })
  })

  describe('when nobody subscribes', () => {
    it('should read no clock and publish nothing', () => {
      const reads = clockReads(() => {
        const t = storeCallStarted()
        expect(t).to.equal(0)
        publishStoreRead('/k#h', 'hit', t)
      })
      expect(reads).to.equal(0)
    })
  })

  describe('when the read started before anyone subscribed', () => {
    it('should publish nothing rather than a made-up duration', () => {
      const t = storeCallStarted()
      const { seen, stop } = listen(STORE_READ_CHANNEL)
      try {
        publishStoreRead('/k#h', 'hit', t)
      } finally {
        stop()
      }
      expect(seen).to.deep.equal([])
    })
  })
})

describe('publishStoreWrite()', () => {
  describe('when a subscriber listens', () => {
    it('should publish key, outcome, durationMs and bytes when given', () => {
      const { seen, stop } = listen(STORE_WRITE_CHANNEL)
      try {
        publishStoreWrite('/a#h', 'landed', storeCallStarted(), 512)
        publishStoreWrite('/b#h', 'failed', storeCallStarted())
        publishStoreWrite('/c#h', 'refused', storeCallStarted(), 2_000_000)
      } finally {
        stop()
      }
      expect(seen.map((m) => ({ ...(m as object), durationMs: 0 }))).to.deep.equal([
        { key: '/a#h', outcome: 'landed', bytes: 512, durationMs: 0 },
        { key: '/b#h', outcome: 'failed', durationMs: 0 },
        { key: '/c#h', outcome: 'refused', bytes: 2_000_000, durationMs: 0 },
      ])
      for (const m of seen)
        expect((m as { durationMs: number }).durationMs)
          .to.be.a('number')
          .and.at.least(0)
    })
  })

  describe('when nobody subscribes', () => {
    it('should read no clock and publish nothing', () => {
      const reads = clockReads(() => publishStoreWrite('/k#h', 'landed', storeCallStarted(), 10))
      expect(reads).to.equal(0)
    })
  })
})

describe('publishInvalidate()', () => {
  describe('when a subscriber listens', () => {
    it('should publish the very message given', () => {
      const { seen, stop } = listen(INVALIDATE_CHANNEL)
      const byPattern = { pattern: 'posts:*', removed: 3 }
      const byTags = { tags: ['post:1'], soft: true }
      const failed = { pattern: 'users:*', error: new Error('store down') }
      try {
        publishInvalidate(byPattern)
        publishInvalidate(byTags)
        publishInvalidate(failed)
      } finally {
        stop()
      }
      expect(seen).to.have.length(3)
      expect(seen[0]).to.equal(byPattern)
      expect(seen[1]).to.equal(byTags)
      expect(seen[2]).to.equal(failed)
    })
  })

  describe('when nobody subscribes', () => {
    it('should not read the message', () => {
      const message = counted({ pattern: 'posts:*', removed: 1 })
      publishInvalidate(message.value)
      expect(message.reads()).to.equal(0)
    })
  })
})
