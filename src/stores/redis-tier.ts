/** The invalidation channel of redisStore's local tier: one pub/sub subscriber per store, with a heartbeat that proves it is still current. */
import createDebug from 'debug'
import { ChangeLog, type LogMark } from './local-tier.js'

const debug = createDebug('cachet:redis')

/** The subscriber connection as the channel uses it (an ioredis `Redis`). */
export interface RedisSubscriber {
  readonly status: string
  subscribe(channel: string): Promise<unknown>
  ping(): Promise<unknown>
  quit(): Promise<unknown>
  disconnect(): void
  on(event: 'message', listener: (channel: string, message: string) => void): unknown
  on(event: 'ready' | 'close' | 'end', listener: () => void): unknown
  on(event: 'error', listener: (error: Error) => void): unknown
  once(event: 'end', listener: () => void): unknown
}

/**
 * ioredis options for the subscriber: no offline queue and no resending of commands after a
 * reconnect (a PING answered on a new connection proves nothing about the old one), and no
 * automatic resubscription (the channel subscribes itself once the connection is ready, and only
 * then trusts copies again).
 */
export const SUBSCRIBER_OPTIONS = {
  // The channel sends nothing before it is ready, so a lazy connection would never open.
  lazyConnect: false,
  enableOfflineQueue: false,
  autoResendUnfulfilledCommands: false,
  autoResubscribe: false,
  maxRetriesPerRequest: 1,
}

/** The pub/sub channel of a prefix. */
export function channelOf(prefix: string): string {
  return `cachet:invalidate:${prefix}`
}

/** A change as published: `k` one key, `p` every key matching a pattern. */
export function message(kind: 'k' | 'p', keyOrPattern: string): string {
  // JSON keeps any string exact, lone surrogates included.
  return JSON.stringify([kind, keyOrPattern])
}

/**
 * Listens on the prefix's channel and tells whether a local copy may be served. A copy is
 * trusted only while (1) the subscription is up and has been since the copy was fetched (every
 * disconnect starts a new session of the change log), (2) a PING sent on the subscriber within
 * the last `2 × heartbeat` ms has been answered: Redis answers a PING after every message it
 * published before it, so a write whose PUBLISH ran before that PING was sent has been seen.
 */
export class InvalidationChannel {
  readonly log = new ChangeLog()
  private subscribed = false
  /** When the newest answered PING (or the SUBSCRIBE) was sent. */
  private confirmedAt = -Infinity
  private readonly timer: NodeJS.Timeout
  private closed = false

  constructor(
    private readonly subscriber: RedisSubscriber,
    private readonly channel: string,
    private readonly heartbeat: number,
    private readonly now: () => number,
    /** Drop local copies of a key or pattern (a change arrived) or all of them (`undefined`). */
    private readonly drop: (pattern: string | undefined, literal: boolean) => void,
  ) {
    subscriber.on('error', (error) => debug('invalidation channel error: %s', error.message))
    subscriber.on('message', (from, text) => {
      if (from === channel) this.receive(text)
    })
    const down = () => this.down()
    subscriber.on('close', down)
    subscriber.on('end', down)
    subscriber.on('ready', () => this.subscribe())
    if (subscriber.status === 'ready') this.subscribe()
    this.timer = setInterval(() => this.ping(), heartbeat)
    this.timer.unref?.()
  }

  /** Whether a copy fetched under `mark` may be served now without asking Redis. */
  trusts(mark: LogMark, at: number): boolean {
    return this.subscribed && mark.session === this.log.session && at - this.confirmedAt <= 2 * this.heartbeat
  }

  /** A mark to fetch under: trustworthy only while subscribed and heard from recently. */
  mark(): LogMark {
    return this.log.mark(this.subscribed && this.now() - this.confirmedAt <= 2 * this.heartbeat)
  }

  async close(): Promise<void> {
    this.closed = true
    clearInterval(this.timer)
    this.down()
    if (this.subscriber.status === 'end') return
    const ended = new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.subscriber.disconnect()
        resolve()
      }, 1000)
      this.subscriber.once('end', () => {
        clearTimeout(timer)
        resolve()
      })
    })
    await this.subscriber.quit().catch(() => this.subscriber.disconnect())
    await ended
  }

  private receive(text: string): void {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      parsed = undefined
    }
    if (!Array.isArray(parsed) || (parsed[0] !== 'k' && parsed[0] !== 'p') || typeof parsed[1] !== 'string') {
      // Not ours, or garbled: nothing can be trusted that it might have named.
      debug('invalidation channel: unreadable message, dropping every local copy')
      this.log.reset()
      this.drop(undefined, false)
      return
    }
    const literal = parsed[0] === 'k'
    this.log.note(parsed[1], literal)
    this.drop(parsed[1], literal)
  }

  private subscribe(): void {
    if (this.closed) return
    const session = this.log.session
    const sentAt = this.now()
    this.subscriber.subscribe(this.channel).then(
      () => {
        // A disconnect meanwhile makes this subscription answer for a connection that is gone.
        if (this.closed || session !== this.log.session) return
        this.log.reset()
        this.subscribed = true
        this.confirmedAt = sentAt
        debug('invalidation channel %s: subscribed', this.channel)
      },
      (error: Error) => debug('invalidation channel %s: subscribe failed: %s', this.channel, error.message),
    )
  }

  private down(): void {
    if (this.subscribed) debug('invalidation channel %s: down, local copies are checked with Redis again', this.channel)
    this.subscribed = false
    this.log.reset()
  }

  private ping(): void {
    if (!this.subscribed) return
    const session = this.log.session
    const sentAt = this.now()
    this.subscriber.ping().then(
      () => {
        if (session === this.log.session && sentAt > this.confirmedAt) this.confirmedAt = sentAt
      },
      () => undefined,
    )
  }
}
