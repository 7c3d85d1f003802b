/** Spawning and talking to a server child (test/bench/server.ts), pinned to its own CPU when taskset is available. */
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { Command, Reply } from './protocol.js'

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url))
const serverPath = fileURLToPath(new URL('./server.ts', import.meta.url))

export interface ServerOptions {
  delayMs?: number
  redis?: string
  memcached?: string
  /** `postgres://…` of the PostgreSQL server. */
  postgres?: string
  /** `http://…` of the DynamoDB-compatible server. */
  dynamodb?: string
  maxEntries?: number
  exposeGc?: boolean
  /** Write a CPU profile of the server into this directory (node --cpu-prof). */
  cpuProfDir?: string
  /** CPU to pin the server to (taskset -c); undefined: no pinning. */
  cpu?: number
  /** cachet's built entry file to load; undefined: src/index.ts through tsx. */
  cachet?: string
}

export interface ServerHandle {
  port: number
  pid: number
  request<T extends Reply['type']>(command: Command, expect: T): Promise<Extract<Reply, { type: T }>>
  stop(): Promise<void>
}

export type Started = { handle: ServerHandle } | { skipped: string }

export function serverCommand(variant: string, bodyBytes: number, options: ServerOptions): string[] {
  const node = [
    process.execPath,
    ...(options.exposeGc ? ['--expose-gc'] : []),
    ...(options.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', options.cpuProfDir] : []),
    '--import',
    'tsx',
    serverPath,
    variant,
    String(bodyBytes),
    '--delay',
    String(options.delayMs ?? 5),
    ...(options.redis ? ['--redis', options.redis] : []),
    ...(options.memcached ? ['--memcached', options.memcached] : []),
    ...(options.postgres ? ['--postgres', options.postgres] : []),
    ...(options.dynamodb ? ['--dynamodb', options.dynamodb] : []),
    ...(options.maxEntries ? ['--max-entries', String(options.maxEntries)] : []),
    ...(options.cachet ? ['--cachet', options.cachet] : []),
  ]
  return options.cpu === undefined ? node : ['taskset', '-c', String(options.cpu), ...node]
}

export function startServer(variant: string, bodyBytes: number, options: ServerOptions): Promise<Started> {
  const [command, ...args] = serverCommand(variant, bodyBytes, options)
  const child: ChildProcess = spawn(command, args, { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  let nextId = 1
  const pending = new Map<number, (reply: Reply) => void>()
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  // A send to a child that just died emits 'error' (EPIPE); the exit handling below covers it.
  child.on('error', (error) => console.error(`[bench] ${variant}: ${error.message}`))

  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${variant}: server did not start within 20 s`))
    }, 20_000)
    child.once('exit', (code) => {
      clearTimeout(timer)
      for (const settle of pending.values()) settle({ type: 'error', message: `server exited with code ${code}` })
      reject(new Error(`${variant}: server exited with code ${code} before it was ready`))
    })
    child.on('message', (message: Reply & { id?: number }) => {
      if (message.id !== undefined) {
        pending.get(message.id)?.(message)
        pending.delete(message.id)
        return
      }
      clearTimeout(timer)
      if (message.type === 'skip') return resolve({ skipped: message.reason })
      if (message.type === 'error') return reject(new Error(`${variant}: ${message.message}`))
      if (message.type !== 'ready') return
      const handle: ServerHandle = {
        port: message.port,
        pid: message.pid,
        request(command, expect) {
          return new Promise((done, fail) => {
            if (!child.connected) return fail(new Error(`${variant}: server is gone (exit code ${child.exitCode})`))
            const id = nextId++
            pending.set(id, (reply) => {
              if (reply.type === expect) done(reply as Extract<Reply, { type: typeof expect }>)
              else fail(new Error(`${variant}: ${command.type} → ${reply.type === 'error' ? reply.message : reply.type}`))
            })
            child.send({ ...command, id })
          })
        },
        async stop() {
          if (child.exitCode !== null || child.signalCode !== null) return
          if (child.connected) child.send({ type: 'stop', id: nextId++ }, (error) => error && child.kill('SIGKILL'))
          else child.kill('SIGKILL')
          const killer = setTimeout(() => child.kill('SIGKILL'), 10_000)
          await exited
          clearTimeout(killer)
        },
      }
      resolve({ handle })
    })
  })
}
