/** A loopback TCP proxy for fault tests: put it between a store client and its server, then add latency, stall or reset. */
import net from 'node:net'
import { once } from 'node:events'

export interface FaultProxy {
  /** The port clients connect to, on 127.0.0.1. */
  readonly port: number
  /** `127.0.0.1:<port>` */
  readonly address: string
  /** Connections currently open through the proxy. */
  readonly open: number
  /** Connections reset so far (by `reset()` or by `refuse`). */
  readonly resets: number
  /** Connections accepted so far. */
  readonly accepted: number
  /** Delay every chunk, in both directions, by `ms` (order is kept). 0 turns it off. */
  latency(ms: number): void
  /** While on, accepted bytes are held and not forwarded: the server seems to hang. Off releases them. */
  stall(on: boolean): void
  /**
   * While on, only the server's bytes are held: requests reach the server and run, their replies
   * wait in the proxy (a `reset()` meanwhile loses them). Off releases them.
   */
  holdReplies(on: boolean): void
  /** Reset (TCP RST) every open connection now. */
  reset(): void
  /** While on, new connections are reset as soon as they are accepted. */
  refuse(on: boolean): void
  /** Reset everything and stop listening. */
  close(): Promise<void>
}

interface Settings {
  latency: number
  stalled: boolean
  holdReplies: boolean
}

/** One direction of one connection: chunks are released in order, each no earlier than its time. */
class Pipe {
  private queue: { at: number; chunk: Buffer }[] = []
  private timer: NodeJS.Timeout | undefined
  private lastAt = 0

  constructor(
    private readonly from: net.Socket,
    private readonly to: net.Socket,
    private readonly settings: Settings,
    /** True for the server → client direction. */
    private readonly replies: boolean,
  ) {
    from.on('data', (chunk: Buffer) => {
      // Never earlier than the chunk before it, so a latency change cannot reorder bytes.
      const at = Math.max(Date.now() + settings.latency, this.lastAt)
      this.lastAt = at
      this.queue.push({ at, chunk })
      this.pump()
    })
  }

  pump(): void {
    if (this.timer !== undefined || this.settings.stalled || (this.replies && this.settings.holdReplies)) return
    const now = Date.now()
    while (this.queue.length > 0 && this.queue[0].at <= now) {
      const { chunk } = this.queue.shift()!
      if (!this.to.destroyed) this.to.write(chunk)
    }
    if (this.queue.length > 0) {
      this.timer = setTimeout(() => {
        this.timer = undefined
        this.pump()
      }, this.queue[0].at - now)
    }
  }

  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    this.queue = []
    this.from.removeAllListeners('data')
  }
}

interface Connection {
  client: net.Socket
  server: net.Socket
  pipes: Pipe[]
}

/** Start a proxy on a free 127.0.0.1 port that forwards to `targetPort` on 127.0.0.1. */
export async function startProxy(targetPort: number): Promise<FaultProxy> {
  const settings: Settings = { latency: 0, stalled: false, holdReplies: false }
  const connections = new Set<Connection>()
  let refusing = false
  let resets = 0
  let accepted = 0

  const resetSocket = (socket: net.Socket) => {
    // resetAndDestroy (Node ≥ 16.17) sends RST; older versions fall back to destroy (FIN).
    const s = socket as net.Socket & { resetAndDestroy?: () => void }
    if (socket.destroyed) return
    if (typeof s.resetAndDestroy === 'function' && socket.readyState === 'open') s.resetAndDestroy()
    else socket.destroy()
  }

  const drop = (c: Connection) => {
    if (!connections.delete(c)) return
    for (const pipe of c.pipes) pipe.dispose()
    resetSocket(c.client)
    resetSocket(c.server)
  }

  const server = net.createServer({ pauseOnConnect: false }, (client) => {
    accepted++
    client.on('error', () => {})
    if (refusing) {
      resets++
      resetSocket(client)
      return
    }
    const upstream = net.connect({ host: '127.0.0.1', port: targetPort })
    upstream.on('error', () => {})
    const c: Connection = { client, server: upstream, pipes: [] }
    connections.add(c)
    c.pipes.push(new Pipe(client, upstream, settings, false), new Pipe(upstream, client, settings, true))
    const end = () => drop(c)
    client.once('close', end)
    upstream.once('close', end)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const port = (server.address() as net.AddressInfo).port

  return {
    port,
    address: `127.0.0.1:${port}`,
    get open() {
      return connections.size
    },
    get resets() {
      return resets
    },
    get accepted() {
      return accepted
    },
    latency(ms) {
      if (!(ms >= 0)) throw new TypeError(`latency must be ≥ 0 ms, got ${ms}`)
      settings.latency = ms
    },
    stall(on) {
      settings.stalled = on
      if (!on) for (const c of connections) for (const pipe of c.pipes) pipe.pump()
    },
    holdReplies(on) {
      settings.holdReplies = on
      if (!on) for (const c of connections) for (const pipe of c.pipes) pipe.pump()
    },
    reset() {
      for (const c of [...connections]) {
        resets++
        drop(c)
      }
    },
    refuse(on) {
      refusing = on
    },
    async close() {
      refusing = true
      for (const c of [...connections]) drop(c)
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
