/** Redis and memcached for the benchmark: test/support/servers.ts when it exists, else our own throwaway servers on free loopback ports. */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import net from 'node:net'
import { fileURLToPath } from 'node:url'

export interface Endpoint {
  host: string
  port: number
}

export interface Service {
  name: 'redis' | 'memcached'
  endpoint?: Endpoint
  /** Why there is no endpoint. */
  skipped?: string
  /** Where it came from: test/support/servers.ts or a server started here. */
  source?: string
}

const owned: ChildProcess[] = []
// Never leave a server behind, even when the runner dies on an error or a signal.
process.on('exit', () => owned.forEach((child) => child.kill('SIGTERM')))

/** Send one plain-text command and resolve the first reply line. */
export function sendCommand(endpoint: Endpoint, command: string, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(endpoint.port, endpoint.host)
    let data = ''
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error(`${command.trim()} timed out`)))
    socket.on('connect', () => socket.write(command))
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1')
      const end = data.indexOf('\r\n')
      if (end >= 0) {
        socket.end()
        resolve(data.slice(0, end))
      }
    })
    socket.on('error', reject)
  })
}

/** Empty the service between variants, so every server child starts from a cold store. */
export async function flush(service: Service): Promise<void> {
  if (!service.endpoint) return
  const reply = await sendCommand(service.endpoint, service.name === 'redis' ? 'FLUSHALL\r\n' : 'flush_all\r\n')
  if (!/^\+?OK/.test(reply)) throw new Error(`${service.name} flush failed: ${reply}`)
}

/** Number of keys in Redis (DBSIZE). */
export async function redisKeyCount(endpoint: Endpoint): Promise<number> {
  return Number((await sendCommand(endpoint, 'DBSIZE\r\n')).slice(1))
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

async function waitForPort(endpoint: Endpoint, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(endpoint.port, endpoint.host)
      socket.on('connect', () => {
        socket.destroy()
        resolve(true)
      })
      socket.on('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`nothing listens on ${endpoint.host}:${endpoint.port}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

async function startOwn(name: Service['name']): Promise<Endpoint> {
  const port = await freePort()
  const args =
    name === 'redis'
      ? ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']
      : ['-l', '127.0.0.1', '-p', String(port), '-U', '0', '-m', '2048', ...(process.getuid?.() === 0 ? ['-u', 'root'] : [])]
  const child = spawn(name === 'redis' ? 'redis-server' : 'memcached', args, { stdio: 'ignore' })
  owned.push(child)
  const failed = new Promise<never>((_, reject) => child.once('error', reject))
  const endpoint = { host: '127.0.0.1', port }
  await Promise.race([waitForPort(endpoint, 5000), failed])
  return endpoint
}

type Getter = () => Endpoint | Promise<Endpoint>

/** Start (or borrow) the Redis and memcached servers the requested variants need. */
export async function startServices(names: Service['name'][]): Promise<Service[]> {
  const supportPath = fileURLToPath(new URL('../support/servers.ts', import.meta.url))
  let support: { getRedis?: Getter; getMemcached?: Getter } = {}
  if (existsSync(supportPath)) {
    const specifier = '../support/servers.js'
    support = (await import(specifier).catch(() => ({}))) as typeof support
  }
  const services: Service[] = []
  for (const name of names) {
    const getter = name === 'redis' ? support.getRedis : support.getMemcached
    try {
      if (getter) {
        const { host, port } = await getter()
        services.push({ name, endpoint: { host, port }, source: 'test/support/servers.ts' })
        continue
      }
    } catch (error) {
      console.error(`[bench] test/support/servers.ts could not start ${name} (${(error as Error).message}); starting one here`)
    }
    try {
      services.push({ name, endpoint: await startOwn(name), source: `${name === 'redis' ? 'redis-server' : 'memcached'} started by the benchmark` })
    } catch (error) {
      services.push({ name, skipped: `${name} unavailable: ${(error as Error).message}` })
    }
  }
  return services
}

/** Stop the servers started here (test/support/servers.ts stops its own at exit). */
export async function stopServices(): Promise<void> {
  await Promise.all(
    owned.map(
      (child) =>
        new Promise<void>((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null) return resolve()
          child.once('exit', () => resolve())
          child.kill('SIGTERM')
        }),
    ),
  )
  owned.length = 0
}

/**
 * Run `work` while Redis logs every command it executes (SLOWLOG with a 0 µs threshold), and
 * report the longest single command: how long Redis was blocked at a time. The server's
 * slowlog settings are restored afterwards.
 */
export async function longestRedisCommand<T>(endpoint: Endpoint, work: () => Promise<T>): Promise<{ result: T; longestMs: number; logged: number }> {
  const { Redis } = await import('ioredis')
  const client = new Redis(endpoint.port, endpoint.host, { maxRetriesPerRequest: 1 })
  try {
    const [, threshold] = (await client.config('GET', 'slowlog-log-slower-than')) as string[]
    const [, maxLen] = (await client.config('GET', 'slowlog-max-len')) as string[]
    await client.config('SET', 'slowlog-max-len', '1000000')
    await client.config('SET', 'slowlog-log-slower-than', '0')
    await client.slowlog('RESET')
    try {
      const result = await work()
      // Each entry: [id, unix time, microseconds, [command and arguments], ...].
      const entries = (await client.slowlog('GET', 1_000_000)) as [number, number, number, string[]][]
      const longest = entries.reduce((most, entry) => Math.max(most, Number(entry[2])), 0)
      return { result, longestMs: longest / 1000, logged: entries.length }
    } finally {
      await client.config('SET', 'slowlog-log-slower-than', threshold)
      await client.config('SET', 'slowlog-max-len', maxLen)
      await client.slowlog('RESET')
    }
  } finally {
    client.disconnect()
  }
}
