/** Record the commands Redis servers run (MONITOR), with a drain that makes the record complete. */
import { Redis } from 'ioredis'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

export interface CommandMonitor {
  /** Each command's arguments, name first, in the order each server ran them. */
  readonly commands: string[][]
  /** Upper-case command names, in the same order. */
  names(): string[]
  /**
   * Wait until every command sent before this call is in `commands`: MONITOR output arrives
   * asynchronously, so a marker is sent through each server and awaited on every monitor.
   */
  drain(): Promise<string[][]>
  /** Drain, then close the monitors; resolves the commands. */
  stop(): Promise<string[][]>
}

/**
 * Monitor the servers on `ports` (127.0.0.1), on connections of their own. With
 * `scripts: false`, commands that Lua scripts run are left out (only what clients send).
 */
export async function monitorRedis(ports: readonly number[], options: { scripts?: boolean } = {}): Promise<CommandMonitor> {
  const commands: string[][] = []
  const markers = new Set<string>()
  const monitors = await Promise.all(
    ports.map(async (port) => {
      const monitor = await startMonitor(port)
      monitor.on('monitor', (_time: string, args: string[], source: string) => {
        const name = String(args[0]).toUpperCase()
        if (name === 'ECHO' && String(args[1]).startsWith('monitor-drain-')) markers.add(`${port} ${args[1]}`)
        else if (options.scripts !== false || !/lua/i.test(source)) commands.push(args.map(String))
      })
      return monitor
    }),
  )
  let closed = false
  const self: CommandMonitor = {
    commands,
    names: () => commands.map((args) => args[0].toUpperCase()),
    async drain() {
      const marker = `monitor-drain-${Date.now()}-${Math.random().toString(36).slice(2)}`
      await Promise.all(
        ports.map(async (port) => {
          const client = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 })
          client.on('error', () => {})
          try {
            await client.echo(marker)
          } finally {
            client.disconnect()
          }
        }),
      )
      const until = Date.now() + 5000
      while (!ports.every((port) => markers.has(`${port} ${marker}`))) {
        if (Date.now() > until) throw new Error('MONITOR did not report the drain marker within 5 s')
        await sleep(5)
      }
      return commands
    },
    async stop() {
      if (!closed) {
        await self.drain()
        closed = true
        await Promise.all(monitors.map((m) => m.disconnect()))
      }
      return commands
    },
  }
  return self
}

/**
 * A connection in MONITOR mode. ioredis marks a connection as monitoring one microtask after
 * MONITOR's OK; a monitor line that arrives in the same read as the OK finds no command waiting
 * and fails the connection ("Command queue state error"). Such a line predates the monitor, so a
 * fresh attempt loses nothing the caller asked to see.
 */
async function startMonitor(port: number): Promise<Redis> {
  for (let attempt = 1; ; attempt++) {
    const monitor = new Redis(port, '127.0.0.1', { monitor: true, lazyConnect: true })
    try {
      await new Promise<void>((resolve, reject) => {
        monitor.once('error', reject)
        monitor.once('monitoring', () => resolve())
        monitor.connect().catch(reject)
      })
      // A server stopped under a test is that test's finding, not noise here.
      monitor.on('error', () => {})
      return monitor
    } catch (error) {
      monitor.disconnect()
      if (attempt >= 5 || !/Command queue state error/.test((error as Error).message)) throw error
    }
  }
}
