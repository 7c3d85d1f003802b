/** Redis, memcached, PostgreSQL and dynalite for the benchmark: test/support/servers.ts when it exists (Redis and memcached: else our own throwaway servers on free loopback ports). */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import net from 'node:net'
import { fileURLToPath } from 'node:url'

export interface Endpoint {
  host: string
  port: number
}

export interface Service {
  name: 'redis' | 'memcached' | 'postgres' | 'dynamodb'
  endpoint?: Endpoint
  /** How a client names it: `postgres://…` for PostgreSQL, `http://…` for dynalite. */
  url?: string
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

/** Empty the service between variants, so every server child starts from a cold store (PostgreSQL and dynalite: each server uses its own prefix instead). */
export async function flush(service: Service): Promise<void> {
  if (!service.endpoint || (service.name !== 'redis' && service.name !== 'memcached')) return
  const reply = await sendCommand(service.endpoint, service.name === 'redis' ? 'FLUSHALL\r\n' : 'flush_all\r\n')
  if (!/^\+?OK/.test(reply)) throw new Error(`${service.name} flush failed: ${reply}`)
}

/** Number of keys in Redis (DBSIZE). */
export async function redisKeyCount(endpoint: Endpoint): Promise<number> {
  return Number((await sendCommand(endpoint, 'DBSIZE\r\n')).slice(1))
}

/** Items held by memcached (`stats` curr_items). */
export function memcachedItemCount(endpoint: Endpoint, timeoutMs = 10_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(endpoint.port, endpoint.host)
    let data = ''
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error('stats timed out')))
    socket.on('connect', () => socket.write('stats\r\n'))
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1')
      if (!data.endsWith('END\r\n')) return
      socket.end()
      resolve(Number(/^STAT curr_items (\d+)/m.exec(data)?.[1] ?? NaN))
    })
    socket.on('error', reject)
  })
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

type Getter = () => Promise<Endpoint & { connectionString?: string; endpoint?: string }>

/** Start (or borrow) the Redis, memcached, PostgreSQL and dynalite servers the requested variants need. */
export async function startServices(names: Service['name'][]): Promise<Service[]> {
  const supportPath = fileURLToPath(new URL('../support/servers.ts', import.meta.url))
  let support: {
    getRedis?: Getter
    startMemcached?: (options: { memoryMb: number }) => ReturnType<Getter>
    getPostgres?: Getter
    getDynalite?: Getter
  } = {}
  if (existsSync(supportPath)) {
    const specifier = '../support/servers.js'
    support = (await import(specifier).catch(() => ({}))) as typeof support
  }
  const services: Service[] = []
  for (const name of names) {
    // memcached with room for the 100,000-entry invalidation sections (the tests' shared one has 64 MB).
    const getter =
      name === 'redis'
        ? support.getRedis
        : name === 'memcached'
          ? support.startMemcached && (() => support.startMemcached!({ memoryMb: 1024 }))
          : name === 'postgres'
            ? support.getPostgres
            : support.getDynalite
    try {
      if (getter) {
        const server = await getter()
        const url = name === 'postgres' ? server.connectionString : name === 'dynamodb' ? server.endpoint : undefined
        services.push({ name, endpoint: { host: server.host, port: server.port }, url, source: 'test/support/servers.ts' })
        continue
      }
    } catch (error) {
      const reason = (error as Error).message.split('\n')[0]
      if (name === 'postgres' || name === 'dynamodb') {
        services.push({ name, skipped: `${name} unavailable: ${reason}` })
        continue
      }
      console.error(`[bench] test/support/servers.ts could not start ${name} (${reason}); starting one here`)
    }
    if (name === 'postgres' || name === 'dynamodb') {
      services.push({ name, skipped: `${name} unavailable: test/support/servers.ts does not start it` })
      continue
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
