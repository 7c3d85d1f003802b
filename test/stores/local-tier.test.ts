/** The local tier's change log and Redis invalidation channel, driven by hand (a fake subscriber and clock). */
import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'
import { ChangeLog } from '../../src/stores/local-tier.js'
import { InvalidationChannel, channelOf, message } from '../../src/stores/redis-tier.js'

/** A subscriber whose replies the test gives: SUBSCRIBE and PING resolve when told to. */
class FakeSubscriber extends EventEmitter {
  status = 'connecting'
  pings: (() => void)[] = []
  subscribes: (() => void)[] = []
  subscribe() {
    return new Promise<unknown>((resolve) => this.subscribes.push(() => resolve(1)))
  }
  ping() {
    return new Promise<unknown>((resolve) => this.pings.push(() => resolve('PONG')))
  }
  async quit() {
    this.status = 'end'
    this.emit('end')
  }
  disconnect() {
    this.status = 'end'
  }
  ready() {
    this.status = 'ready'
    this.emit('ready')
  }
}

const tick = () => new Promise((resolve) => setImmediate(resolve))

describe('ChangeLog', function () {
  describe('when a change arrives while a read is on its way', function () {
    it('should report a change of the key itself, or of a pattern matching it, and not of others', function () {
      const log = new ChangeLog()
      const mark = log.mark(true)
      log.note('users:1:GET', true)
      assert.equal(log.changedSince(mark, 'posts:1:GET'), false)
      log.note('posts:*')
      assert.equal(log.changedSince(mark, 'posts:1:GET'), true)
      assert.equal(log.changedSince(mark, 'users:2:GET'), false)
    })

    it('should treat a key holding * as one key when told it is literal', function () {
      const log = new ChangeLog()
      const mark = log.mark(true)
      log.note('a*', true)
      assert.equal(log.changedSince(mark, 'ab'), false)
      assert.equal(log.changedSince(mark, 'a*'), true)
    })

    it('should report a change for every key once more changes went by than it keeps', function () {
      const log = new ChangeLog()
      const mark = log.mark(true)
      for (let i = 0; i < 300; i++) log.note(`other:${i}:GET`, true)
      assert.equal(log.changedSince(mark, 'posts:1:GET'), true)
    })

    it('should report a change for every key after a reset, and for a mark taken untrustworthy', function () {
      const log = new ChangeLog()
      const mark = log.mark(true)
      assert.equal(log.changedSince(mark, 'k'), false)
      log.reset()
      assert.equal(log.changedSince(mark, 'k'), true)
      assert.equal(log.changedSince(log.mark(false), 'k'), true)
    })
  })
})

describe('InvalidationChannel', function () {
  let t: number
  let sub: FakeSubscriber
  let dropped: (string | undefined)[]
  let channel: InvalidationChannel

  beforeEach(function () {
    t = 1000
    sub = new FakeSubscriber()
    dropped = []
    channel = new InvalidationChannel(
      sub,
      channelOf('p:'),
      50,
      () => t,
      (pattern) => void dropped.push(pattern),
    )
  })

  afterEach(async function () {
    await channel.close()
  })

  async function subscribed(): Promise<void> {
    sub.ready()
    sub.subscribes.shift()!()
    await tick()
  }

  describe('when the subscriber is not subscribed yet', function () {
    it('should trust nothing', async function () {
      const mark = channel.mark()
      assert.equal(channel.trusts(mark, t), false)
      await subscribed()
      assert.equal(channel.trusts(mark, t), false, 'a copy fetched before the subscription')
      assert.equal(channel.trusts(channel.mark(), t), true)
    })
  })

  describe('when a message arrives', function () {
    it('should drop the key and make a read on its way meanwhile untrusted', async function () {
      await subscribed()
      const mark = channel.mark()
      sub.emit('message', channelOf('p:'), message('k', 'posts:1:GET'))
      assert.deepEqual(dropped, ['posts:1:GET'])
      assert.equal(channel.log.changedSince(mark, 'posts:1:GET'), true)
      assert.equal(channel.log.changedSince(mark, 'posts:2:GET'), false)
    })

    it('should drop everything for a message it cannot read', async function () {
      await subscribed()
      const mark = channel.mark()
      sub.emit('message', channelOf('p:'), 'garbage')
      assert.deepEqual(dropped, [undefined])
      assert.equal(channel.trusts(mark, t), false)
    })

    it('should ignore messages of other channels', async function () {
      await subscribed()
      sub.emit('message', channelOf('other:'), message('k', 'posts:1:GET'))
      assert.deepEqual(dropped, [])
    })
  })

  describe('when the heartbeat goes unanswered', function () {
    it('should stop trusting copies 2 × heartbeat after the last answered PING was sent, and trust again once one is answered', async function () {
      await subscribed()
      const mark = channel.mark()
      t += 100
      assert.equal(channel.trusts(mark, t), true, 'at 2 × heartbeat')
      t += 1
      assert.equal(channel.trusts(mark, t), false, 'past 2 × heartbeat')
      // The timer sends PINGs every 50 ms of real time; answer the next one.
      while (sub.pings.length === 0) await new Promise((resolve) => setTimeout(resolve, 10))
      sub.pings.shift()!()
      await tick()
      assert.equal(channel.trusts(mark, t), true)
    })
  })

  describe('when the subscriber disconnects', function () {
    it('should trust no copy taken before, even once it is back', async function () {
      await subscribed()
      const mark = channel.mark()
      sub.emit('close')
      assert.equal(channel.trusts(mark, t), false)
      await subscribed()
      assert.equal(channel.trusts(mark, t), false)
      assert.equal(channel.trusts(channel.mark(), t), true)
    })

    it('should not take a SUBSCRIBE answered after a disconnect for the new connection', async function () {
      sub.ready()
      sub.emit('close')
      sub.subscribes.shift()!()
      await tick()
      assert.equal(channel.trusts(channel.mark(), t), false)
    })
  })
})
