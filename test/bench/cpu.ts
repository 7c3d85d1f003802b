/** CPU used by other processes while we measure (Linux /proc), so contention from other work on the machine is visible and avoidable. */
import { execFileSync } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'

const clockTicks = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

/** Busy jiffies of the whole machine (all CPUs), or undefined off Linux. */
function machineBusy(): number | undefined {
  try {
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number)
    const [user, nice, system, , , irq, softirq, steal] = fields
    return user + nice + system + irq + softirq + (steal ?? 0)
  } catch {
    return undefined
  }
}

/** utime + stime jiffies of one process (all its threads); 0 when it is gone. */
function processBusy(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return Number(fields[11]) + Number(fields[12])
  } catch {
    return 0
  }
}

/** The pid listening on a loopback TCP port (for Redis/memcached), via `ss`. */
export function pidListeningOn(port: number): number | undefined {
  try {
    const out = execFileSync('ss', ['-ltnpH', `sport = :${port}`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
    const match = /pid=(\d+)/.exec(out)
    return match ? Number(match[1]) : undefined
  } catch {
    return undefined
  }
}

/**
 * The children of these processes, from /proc: PostgreSQL forks a backend per connection, whose
 * CPU is the service's, not other work on the machine.
 */
export function childrenOf(parents: number[]): number[] {
  if (parents.length === 0) return []
  let entries: string[]
  try {
    entries = readdirSync('/proc')
  } catch {
    return []
  }
  const children: number[] = []
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      // Fields after the parenthesised name: state ppid …
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (parents.includes(ppid)) children.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return children
}

export interface CpuSample {
  /** CPU cores used by processes other than ours, on average over the window. */
  foreign: number
  /** CPU cores used by our processes (runner, server, services). */
  own: number
  /** CPU cores used by each of the pids asked about, in the same order. */
  perPid: number[]
}

/** Start a window; the returned function ends it. Resolves undefined where /proc is not available. */
export function cpuWindow(ownPids: number[]): () => CpuSample | undefined {
  const start = performance.now()
  const busy0 = machineBusy()
  const own0 = ownPids.map(processBusy)
  return () => {
    const busy1 = machineBusy()
    if (busy0 === undefined || busy1 === undefined) return undefined
    const seconds = (performance.now() - start) / 1000
    const perPid = ownPids.map((pid, i) => Math.max(0, processBusy(pid) - own0[i]))
    const own = perPid.reduce((sum, ticks) => sum + ticks, 0)
    return {
      foreign: Math.max(0, busy1 - busy0 - own) / clockTicks / seconds,
      own: own / clockTicks / seconds,
      perPid: perPid.map((ticks) => ticks / clockTicks / seconds),
    }
  }
}

/**
 * Wait until other processes use less than `threshold` cores (sampled over 0.5 s), for at most
 * `maxWaitMs`. Resolves the milliseconds waited and the last sample.
 */
export async function waitForQuiet(ownPids: number[], threshold: number, maxWaitMs: number): Promise<{ waitedMs: number; sample?: CpuSample }> {
  const start = performance.now()
  for (;;) {
    const end = cpuWindow(ownPids)
    await new Promise((resolve) => setTimeout(resolve, 500))
    const sample = end()
    const waitedMs = performance.now() - start
    if (!sample || sample.foreign < threshold || waitedMs >= maxWaitMs) return { waitedMs, sample }
  }
}
