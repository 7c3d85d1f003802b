/** Real redis-server / memcached / Redis Cluster / PostgreSQL / dynalite processes on free loopback ports, shared by every suite of a run. */
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const HOST = '127.0.0.1'
const START_TIMEOUT_MS = 10_000

/** One server process we started; every helper keeps the same port so clients can reconnect. */
export interface ServerHandle {
  readonly name: string
  readonly host: string
  readonly port: number
  /** Current process id (changes on `restart()`). */
  readonly pid: number
  /** `host:port`, the form memjs and redis-cli take. */
  readonly address: string
  /** True between `pause()` and `resume()`. */
  readonly paused: boolean
  /** True while the process runs (paused or not). */
  readonly running: boolean
  /** SIGTERM, wait for exit (SIGKILL after 3 s), remove the temp dir. */
  stop(): Promise<void>
  /**
   * SIGSTOP, resolved once every thread of the server is stopped: the port stays open, requests
   * hang (a stalled server). Without the wait, a worker thread can still answer for as long as the
   * thread that takes the signal is not scheduled, which on a loaded machine is milliseconds.
   */
  pause(): Promise<void>
  /** SIGCONT: undo `pause()`. */
  resume(): void
  /** SIGKILL and wait for the exit: connections are refused afterwards. */
  kill(): Promise<void>
  /** Stop if running, then start again on the same port (data is gone, config kept). */
  restart(): Promise<void>
}

/** A redis-server process. */
export interface RedisServer extends ServerHandle {
  /** `redis://127.0.0.1:<port>` */
  readonly url: string
}

/** A memcached process. */
export interface MemcachedServer extends ServerHandle {
  /** Largest item the server accepts (its `-I`), in bytes. */
  readonly itemSize: number
}

/** Three masters covering all 16384 slots, no replicas. */
export interface RedisCluster extends ServerHandle {
  readonly nodes: readonly RedisServer[]
  /** Startup nodes for `new Cluster(...)`. */
  readonly startupNodes: readonly { host: string; port: number }[]
}

// ---------------------------------------------------------------------------------------------
// process bookkeeping: everything we spawn is tracked so that it is killed when the run ends

const live = new Set<ChildProcess>()
const tempDirs = new Set<string>()

function killAllSync(): void {
  for (const child of live) {
    try {
      // SIGKILL also ends a SIGSTOPped process; exit handlers cannot wait for SIGTERM.
      child.kill('SIGKILL')
    } catch {
      // already gone
    }
  }
  live.clear()
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true })
  tempDirs.clear()
}

// Safety net for crashes, `--bail` and runs without the root hook: never leave a server behind.
process.once('exit', killAllSync)
// SIGINT is left to mocha, which exits (and so runs the handler above); a bare SIGTERM/SIGHUP would not.
for (const signal of ['SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    killAllSync()
    process.kill(process.pid, signal)
  })
}

/** Stop every server started in this process. Safe to call repeatedly. */
export async function stopAllServers(): Promise<void> {
  const handles = [...singletons.values()]
  singletons.clear()
  const settled = await Promise.allSettled(handles.map(async (h) => (await h).stop()))
  void settled
  killAllSync()
}

// A root-level `after` registered while mocha loads the spec files that import this module:
// the servers go away when the whole run ends, not when one suite does.
if (typeof globalThis.after === 'function') {
  globalThis.after(async function stopTestServers() {
    this.timeout?.(15_000)
    await stopAllServers()
  })
}

// ---------------------------------------------------------------------------------------------
// ports and readiness

/** A TCP port that is free on the loopback right now (optionally also port + offset). */
export async function freePort(alsoFreeAtOffset?: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    // Cluster nodes also bind port + 10000 for the bus, so draw from a range where that fits.
    const port = alsoFreeAtOffset === undefined ? await ephemeralPort() : 20_000 + Math.floor(Math.random() * 20_000)
    if (!(await isFree(port))) continue
    if (alsoFreeAtOffset !== undefined && !(await isFree(port + alsoFreeAtOffset))) continue
    return port
  }
  throw new Error('could not find a free loopback port after 50 attempts')
}

function ephemeralPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, HOST, () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))))
    })
  })
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, HOST, () => server.close(() => resolve(true)))
  })
}

/** Send `request` on a fresh connection; resolve true when the reply starts with `expected`. */
function probe(port: number, request: string, expected: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, HOST)
    let reply = ''
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(500, () => done(false))
    socket.once('error', () => done(false))
    socket.once('connect', () => socket.write(request))
    socket.on('data', (chunk) => {
      reply += chunk.toString('latin1')
      if (reply.length >= expected.length) done(reply.startsWith(expected))
    })
  })
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

// ---------------------------------------------------------------------------------------------
// one process

interface ProcessSpec {
  name: string
  command: string
  args: (port: number, dir: string) => string[]
  ready: (port: number) => Promise<boolean>
  install: string
  /** Environment of the process (default: this process's). */
  env?: NodeJS.ProcessEnv
}

class Proc implements ServerHandle {
  readonly host = HOST
  private child: ChildProcess | undefined
  private output = ''
  private isPaused = false

  constructor(
    private readonly spec: ProcessSpec,
    readonly port: number,
    readonly dir: string,
  ) {}

  get name() {
    return this.spec.name
  }
  get address() {
    return `${HOST}:${this.port}`
  }
  get pid() {
    return this.child?.pid ?? -1
  }
  get paused() {
    return this.isPaused
  }
  get running() {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  async start(): Promise<void> {
    const args = this.spec.args(this.port, this.dir)
    const child = spawn(this.spec.command, args, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'], env: this.spec.env })
    this.child = child
    this.output = ''
    live.add(child)
    const keep = (chunk: Buffer) => {
      // Only the tail matters for an error message.
      this.output = (this.output + chunk.toString()).slice(-4000)
    }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    let spawnError: Error | undefined
    child.once('error', (error) => {
      spawnError = error
    })
    child.once('exit', () => live.delete(child))

    const deadline = Date.now() + START_TIMEOUT_MS
    while (Date.now() < deadline) {
      if (spawnError || !this.running) break
      if (await this.spec.ready(this.port)) return
      await sleep(50)
    }
    child.kill('SIGKILL')
    const reason = spawnError
      ? `${spawnError.message}`
      : this.running
        ? `not ready after ${START_TIMEOUT_MS} ms`
        : `exited with ${child.exitCode ?? child.signalCode}`
    throw new Error(
      `could not start ${this.spec.name} (${this.spec.command} ${args.join(' ')}): ${reason}.` +
        `${this.output ? `\nits output:\n${this.output}` : ''}\n${this.spec.install}` +
        (process.env.CI === 'true' ? '' : '\n(the store suites need real servers; they are never skipped)'),
    )
  }

  async pause(): Promise<void> {
    if (!this.running || this.isPaused) return
    this.child!.kill('SIGSTOP')
    this.isPaused = true
    const deadline = Date.now() + START_TIMEOUT_MS
    while (!allThreadsStopped(this.pid)) {
      if (Date.now() > deadline) throw new Error(`${this.name} (pid ${this.pid}) did not stop within ${START_TIMEOUT_MS} ms of SIGSTOP`)
      await sleep(1)
    }
    await laterRun()
  }

  resume(): void {
    if (!this.running || !this.isPaused) return
    this.child!.kill('SIGCONT')
    this.isPaused = false
  }

  async kill(): Promise<void> {
    await this.end('SIGKILL')
  }

  async stop(): Promise<void> {
    await this.end('SIGTERM')
  }

  async restart(): Promise<void> {
    await this.end('SIGTERM')
    await this.start()
  }

  private async end(signal: NodeJS.Signals): Promise<void> {
    const child = this.child
    if (!child || !this.running) return
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
    if (this.isPaused) {
      // A stopped process does not act on SIGTERM until it is continued.
      child.kill('SIGCONT')
      this.isPaused = false
    }
    child.kill(signal)
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000)
    await exited
    clearTimeout(timer)
    live.delete(child)
  }
}

function tempDir(name: string): string {
  const dir = mkdtempSync(join(tmpdir(), `cachet-${name}-`))
  tempDirs.add(dir)
  return dir
}

const REDIS_INSTALL = 'redis-server must be on PATH (Debian/Ubuntu: apt-get install redis-server).'
const MEMCACHED_INSTALL = 'memcached must be on PATH (Debian/Ubuntu: apt-get install memcached).'

function redisSpec(extra: (port: number) => string[] = () => []): ProcessSpec {
  return {
    name: 'redis-server',
    command: 'redis-server',
    // No persistence at all, loopback only, its own directory for any file it still writes.
    args: (port, dir) => [
      '--port',
      String(port),
      '--bind',
      HOST,
      '--save',
      '',
      '--appendonly',
      'no',
      '--dir',
      dir,
      '--daemonize',
      'no',
      '--loglevel',
      'warning',
      ...extra(port),
    ],
    ready: (port) => probe(port, 'PING\r\n', '+PONG'),
    install: REDIS_INSTALL,
  }
}

function redisHandle(proc: Proc): RedisServer {
  return Object.assign(proc, { url: `redis://${HOST}:${proc.port}` }) as Proc & RedisServer
}

/** Start a fresh redis-server (not shared). */
export async function startRedis(): Promise<RedisServer> {
  const proc = new Proc(redisSpec(), await freePort(), tempDir('redis'))
  await proc.start()
  return redisHandle(proc)
}

/** Parse memcached's `-I` syntax (`1m`, `512k`, bytes) into bytes. */
function parseItemSize(size: string): number {
  const match = /^(\d+)([kKmM]?)$/.exec(size)
  if (!match) throw new TypeError(`memcached itemSize must look like '1m' or '512k', got ${JSON.stringify(size)}`)
  const unit = match[2].toLowerCase()
  return Number(match[1]) * (unit === 'm' ? 1024 * 1024 : unit === 'k' ? 1024 : 1)
}

// memcached refuses to run as root unless told which user to run as (containers often run as root).
const asRoot = () => (process.getuid?.() === 0 ? ['-u', 'root'] : [])

/** Start a fresh memcached (not shared). `itemSize` is its `-I` (default `2m`, so 1 MB values fit). */
export async function startMemcached(options: { itemSize?: string; memoryMb?: number } = {}): Promise<MemcachedServer> {
  const itemSize = options.itemSize ?? '2m'
  const spec: ProcessSpec = {
    name: 'memcached',
    command: 'memcached',
    // -U 0: no UDP listener; -I: largest item; -m: memory cap so a runaway test cannot eat the box.
    args: (port) => ['-l', HOST, '-p', String(port), '-U', '0', '-I', itemSize, '-m', String(options.memoryMb ?? 64), '-t', '2', ...asRoot()],
    ready: (port) => probe(port, 'version\r\n', 'VERSION'),
    install: MEMCACHED_INSTALL,
  }
  const proc = new Proc(spec, await freePort(), tempDir('memcached'))
  await proc.start()
  return Object.assign(proc, { itemSize: parseItemSize(itemSize) }) as Proc & MemcachedServer
}

/** Start a fresh 3-master Redis Cluster (not shared) and wait until `cluster_state:ok`. */
export async function startRedisCluster(): Promise<RedisCluster> {
  const nodes: RedisServer[] = []
  const spec = redisSpec((port) => ['--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '3000'])
  try {
    for (let i = 0; i < 3; i++) {
      const proc = new Proc(spec, await freePort(10_000), tempDir('redis-cluster'))
      await proc.start()
      nodes.push(redisHandle(proc))
    }
    await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => n.address), '--cluster-replicas', '0', '--cluster-yes'], { timeout: START_TIMEOUT_MS })
    await waitForCluster(nodes)
  } catch (error) {
    await Promise.allSettled(nodes.map((n) => n.kill()))
    throw new Error(`could not start a Redis Cluster: ${(error as Error).message}\n${REDIS_INSTALL} redis-cli is needed too.`)
  }

  const first = nodes[0]
  const cluster: RedisCluster = {
    name: 'redis-cluster',
    host: HOST,
    nodes,
    startupNodes: nodes.map((n) => ({ host: n.host, port: n.port })),
    get port() {
      return first.port
    },
    get pid() {
      return first.pid
    },
    get address() {
      return first.address
    },
    get paused() {
      return nodes.some((n) => n.paused)
    },
    get running() {
      return nodes.every((n) => n.running)
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()))
    },
    async pause() {
      await Promise.all(nodes.map((n) => n.pause()))
    },
    resume() {
      for (const n of nodes) n.resume()
    },
    async kill() {
      await Promise.all(nodes.map((n) => n.kill()))
    },
    async restart() {
      // nodes-<port>.conf stays in each node's dir, so the same cluster comes back (empty).
      await Promise.all(nodes.map((n) => n.stop()))
      await Promise.all(nodes.map((n) => (n as unknown as Proc).start()))
      await waitForCluster(nodes)
    },
  }
  return cluster
}

async function waitForCluster(nodes: readonly RedisServer[]): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS
  while (Date.now() < deadline) {
    const infos = await Promise.all(
      nodes.map((n) =>
        run('redis-cli', ['-h', n.host, '-p', String(n.port), 'cluster', 'info']).then(
          (r) => r.stdout,
          () => '',
        ),
      ),
    )
    if (infos.every((info) => /cluster_state:ok/.test(info) && /cluster_slots_ok:16384/.test(info))) return
    await sleep(100)
  }
  throw new Error(`cluster_state did not become ok within ${START_TIMEOUT_MS} ms`)
}

// ---------------------------------------------------------------------------------------------
// shared singletons: started on first use, healed (resumed / restarted) on every later use

const singletons = new Map<string, Promise<ServerHandle>>()

async function shared<T extends ServerHandle>(name: string, start: () => Promise<T>): Promise<T> {
  let pending = singletons.get(name) as Promise<T> | undefined
  if (!pending) {
    pending = start()
    singletons.set(name, pending)
    // A failed start is not cached: the next suite tries again and fails loudly too.
    pending.catch(() => singletons.delete(name))
  }
  const handle = await pending
  // A suite that paused or killed the server must not break the suites that follow it.
  if (handle.paused) handle.resume()
  if (!handle.running) await handle.restart()
  return handle
}

/** The shared redis-server of this test run. */
export function getRedis(): Promise<RedisServer> {
  return shared('redis', startRedis)
}

/** The shared memcached of this test run (`-I 2m`). */
export function getMemcached(): Promise<MemcachedServer> {
  return shared('memcached', () => startMemcached())
}

/** A second shared memcached, for two-server stores (`-I 2m`). */
export function getMemcached2(): Promise<MemcachedServer> {
  return shared('memcached-2', () => startMemcached())
}

/** The shared 3-master Redis Cluster of this test run. */
export function getRedisCluster(): Promise<RedisCluster> {
  return shared('redis-cluster', startRedisCluster)
}

/**
 * Resolve in a later run of the event loop. pause() may find the server stopped at once, and the
 * caller would then go on in the run that sent its last commands: memcachedStore() lets reads of
 * one run share a GET, and a read there could join one sent, and answered, before the stop.
 */
function laterRun(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

/**
 * Whether every thread of `pid` is in the stopped state ('T' in /proc/<pid>/task/<tid>/stat).
 * Where /proc is missing (not Linux), there is nothing to read: the signal is taken as delivered.
 */
function allThreadsStopped(pid: number): boolean {
  let tids: string[]
  try {
    tids = readdirSync(`/proc/${pid}/task`)
  } catch {
    return true
  }
  return tids.every((tid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      // The state follows the parenthesised command name, which may itself hold spaces or ')'.
      return stat[stat.lastIndexOf(')') + 2] === 'T'
    } catch {
      return true // the thread has exited
    }
  })
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: a postmaster and its backends, one process group

/** A PostgreSQL cluster (trust auth, user and database `postgres`, fsync off, loopback only). */
export interface PostgresServer extends ServerHandle {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  readonly connectionString: string
}

const POSTGRES_INSTALL = 'PostgreSQL must be installed (Debian/Ubuntu: apt-get install postgresql; its binaries live in /usr/lib/postgresql/<version>/bin).'

/** The newest /usr/lib/postgresql/<version>/bin, or the directory of `initdb` on PATH. */
function postgresBin(): string {
  const root = '/usr/lib/postgresql'
  const versions = existsSync(root) ? readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'postgres'))) : []
  versions.sort((a, b) => Number(b) - Number(a))
  if (versions.length > 0) return join(root, versions[0], 'bin')
  for (const dir of (process.env.PATH ?? '').split(':')) if (dir && existsSync(join(dir, 'postgres'))) return dir
  throw new Error(`could not find the postgres binaries. ${POSTGRES_INSTALL}`)
}

/**
 * initdb, pg_ctl and postgres refuse to run as root: as root, run them as the `postgres` user
 * (setpriv execs, so the process we spawn is the postmaster itself).
 */
async function asPostgresUser(): Promise<{ prefix: string[]; uid?: number; gid?: number }> {
  if (process.getuid?.() !== 0) return { prefix: [] }
  const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])]).catch(() => {
    throw new Error(`running as root, and there is no "postgres" user to run PostgreSQL as. ${POSTGRES_INSTALL}`)
  })
  return {
    prefix: ['setpriv', '--reuid=postgres', '--regid=postgres', '--init-groups', '--'],
    uid: Number(uid.stdout.trim()),
    gid: Number(gid.stdout.trim()),
  }
}

/**
 * The postmaster and its children (backends, background workers), from /proc. Each child calls
 * setsid(), so a process group does not reach them: they are found by parent pid.
 */
function postgresFamily(postmaster: number): number[] {
  const pids = [postmaster]
  let entries: string[]
  try {
    entries = readdirSync('/proc')
  } catch {
    return pids
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      // Fields after the parenthesised name: state ppid …
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(fields[1]) === postmaster) pids.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return pids
}

/** Send `signal` to the postmaster and each of its children; quiet about the ones already gone. */
function signalFamily(postmaster: number, signal: NodeJS.Signals): void {
  for (const pid of postgresFamily(postmaster)) {
    try {
      process.kill(pid, signal)
    } catch {
      // gone
    }
  }
}

const postmasters = new Set<number>()
process.once('exit', () => {
  for (const pid of postmasters) signalFamily(pid, 'SIGKILL')
})

class PostgresProc implements PostgresServer {
  readonly name = 'postgres'
  readonly host = HOST
  private child: ChildProcess | undefined
  private output = ''
  private isPaused = false

  constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly bin: string,
    private readonly user: { prefix: string[] },
  ) {}

  get address() {
    return `${HOST}:${this.port}`
  }
  get connectionString() {
    return `postgres://postgres@${HOST}:${this.port}/postgres`
  }
  get pid() {
    return this.child?.pid ?? -1
  }
  get paused() {
    return this.isPaused
  }
  get running() {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  async start(): Promise<void> {
    const [command, ...args] = [
      ...this.user.prefix,
      join(this.bin, 'postgres'),
      '-D',
      join(this.dir, 'data'),
      '-k',
      this.dir,
      '-h',
      HOST,
      '-p',
      String(this.port),
      '-c',
      'fsync=off',
      '-c',
      'synchronous_commit=off',
      '-c',
      'full_page_writes=off',
      '-c',
      'max_connections=200',
    ]
    const child = spawn(command, args, { cwd: this.dir, stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    this.output = ''
    live.add(child)
    if (child.pid !== undefined) postmasters.add(child.pid)
    const keep = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-4000)
    }
    child.stdout?.on('data', keep)
    child.stderr?.on('data', keep)
    let spawnError: Error | undefined
    child.once('error', (error) => {
      spawnError = error
    })
    child.once('exit', () => live.delete(child))
    const deadline = Date.now() + START_TIMEOUT_MS
    while (Date.now() < deadline) {
      if (spawnError || !this.running) break
      const ready = await run(join(this.bin, 'pg_isready'), ['-h', HOST, '-p', String(this.port), '-t', '1']).then(
        () => true,
        () => false,
      )
      if (ready) return
      await sleep(100)
    }
    await this.end('SIGKILL')
    const reason = spawnError
      ? spawnError.message
      : this.running
        ? `not ready after ${START_TIMEOUT_MS} ms`
        : `exited with ${child.exitCode ?? child.signalCode}`
    throw new Error(
      `could not start postgres (${command} ${args.join(' ')}): ${reason}.${this.output ? `\nits output:\n${this.output}` : ''}\n${POSTGRES_INSTALL}`,
    )
  }

  async pause(): Promise<void> {
    if (!this.running || this.isPaused) return
    // The postmaster first: stopped, it forks no new backend meanwhile.
    process.kill(this.pid, 'SIGSTOP')
    signalFamily(this.pid, 'SIGSTOP')
    this.isPaused = true
    const deadline = Date.now() + START_TIMEOUT_MS
    while (!postgresFamily(this.pid).every((pid) => allThreadsStopped(pid))) {
      if (Date.now() > deadline) throw new Error(`postgres (pid ${this.pid}) and its backends did not stop within ${START_TIMEOUT_MS} ms of SIGSTOP`)
      await sleep(1)
    }
    await laterRun()
  }

  resume(): void {
    if (!this.running || !this.isPaused) return
    signalFamily(this.pid, 'SIGCONT')
    this.isPaused = false
  }

  async kill(): Promise<void> {
    await this.end('SIGKILL')
  }

  /** Fast shutdown (SIGINT: SIGTERM would wait for every client to disconnect). */
  async stop(): Promise<void> {
    await this.end('SIGINT')
  }

  /** The same data directory comes back; UNLOGGED tables are empty after a kill (crash recovery). */
  async restart(): Promise<void> {
    await this.end('SIGINT')
    await this.start()
  }

  private async end(signal: NodeJS.Signals): Promise<void> {
    const child = this.child
    if (!child) return
    const postmaster = child.pid!
    if (this.running) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
      if (this.isPaused) signalFamily(postmaster, 'SIGCONT')
      this.isPaused = false
      // SIGKILL reaches the backends too (a crash); the other signals are the postmaster's to pass on.
      if (signal === 'SIGKILL') signalFamily(postmaster, 'SIGKILL')
      else child.kill(signal)
      const timer = setTimeout(() => signalFamily(postmaster, 'SIGKILL'), 3000)
      await exited
      clearTimeout(timer)
    }
    // Backends left behind by a killed postmaster go too.
    const deadline = Date.now() + 3000
    for (let left = postgresFamily(postmaster).slice(1); left.length > 0 && Date.now() < deadline; left = postgresFamily(postmaster).slice(1)) {
      signalFamily(postmaster, 'SIGKILL')
      await sleep(10)
    }
    postmasters.delete(postmaster)
    live.delete(child)
  }
}

/** Start a fresh PostgreSQL (initdb in a temp dir owned by the user it runs as; not shared). */
export async function startPostgres(): Promise<PostgresServer> {
  const bin = postgresBin()
  const user = await asPostgresUser()
  const dir = tempDir('postgres')
  if (user.uid !== undefined) chownSync(dir, user.uid, user.gid!)
  const data = join(dir, 'data')
  const [command, ...args] = [...user.prefix, join(bin, 'initdb'), '-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--no-sync']
  try {
    await run(command, args, { cwd: dir, timeout: 60_000 })
  } catch (error) {
    throw new Error(`could not initdb (${command} ${args.join(' ')}): ${(error as Error).message}\n${POSTGRES_INSTALL}`)
  }
  const proc = new PostgresProc(await freePort(), dir, bin, user)
  await proc.start()
  return proc
}

/** The shared PostgreSQL of this test run. */
export function getPostgres(): Promise<PostgresServer> {
  return shared('postgres', startPostgres)
}

// ---------------------------------------------------------------------------------------------
// dynalite: DynamoDB's API in a node process

/** A dynalite process (in-memory tables, gone on restart). */
export interface DynamoServer extends ServerHandle {
  /** `http://127.0.0.1:<port>`, the `endpoint` of a DynamoDBClient. */
  readonly endpoint: string
}

/** Start a fresh dynalite (not shared): `node …/dynalite/cli.js` on a free loopback port. */
export async function startDynalite(): Promise<DynamoServer> {
  let cli: string
  try {
    cli = createRequire(import.meta.url).resolve('dynalite/cli.js')
  } catch {
    throw new Error('could not find dynalite: it is a dev dependency (npm install)')
  }
  const spec: ProcessSpec = {
    name: 'dynalite',
    command: process.execPath,
    // Tables become ACTIVE at once.
    args: (port) => [cli, '--host', HOST, '--port', String(port), '--createTableMs', '0', '--deleteTableMs', '0', '--updateTableMs', '0'],
    ready: (port) => probe(port, 'GET / HTTP/1.0\r\n\r\n', 'HTTP/1.'),
    install: 'dynalite is a dev dependency: npm install',
    // Plain node: the test run's NODE_OPTIONS (--import tsx) would not resolve from the temp dir.
    env: { ...process.env, NODE_OPTIONS: '' },
  }
  const proc = new Proc(spec, await freePort(), tempDir('dynalite'))
  await proc.start()
  return Object.assign(proc, { endpoint: `http://${HOST}:${proc.port}` }) as Proc & DynamoServer
}

/** The shared dynalite of this test run. */
export function getDynalite(): Promise<DynamoServer> {
  return shared('dynalite', startDynalite)
}
