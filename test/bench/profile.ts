/** Summarise a V8 .cpuprofile (from node --cpu-prof): top functions by self time. */
import { readFileSync } from 'node:fs'
import path from 'node:path'

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number }
  children?: number[]
}

interface CpuProfile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
  startTime: number
  endTime: number
}

export interface ProfileLine {
  name: string
  location: string
  selfMs: number
  /** Share of the non-idle time. */
  percent: number
}

export interface ProfileSummary {
  file: string
  totalMs: number
  busyMs: number
  top: ProfileLine[]
  /** Self time by origin: cachet's src/, each package, Node internals, native code and GC. */
  groups: { group: string; selfMs: number; percent: number }[]
}

const IDLE = new Set(['(idle)', '(program)'])

export function summariseProfile(file: string, root: string, limit = 20): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const selfUs = new Map<string, { name: string; location: string; us: number }>()
  let totalUs = 0
  let idleUs = 0
  for (let i = 0; i < profile.samples.length; i++) {
    const us = profile.timeDeltas[i + 1] ?? 0
    const node = byId.get(profile.samples[i])
    if (!node) continue
    const { functionName, url, lineNumber } = node.callFrame
    const name = functionName || '(anonymous)'
    totalUs += us
    if (IDLE.has(name)) idleUs += us
    // tsx-transpiled TypeScript reports line 1 (no source maps in profiles): name the file only.
    const file = url ? shorten(url, root) : ''
    const location = file && !file.endsWith('.ts') ? `${file}:${lineNumber + 1}` : file
    const key = `${name} ${location}`
    const line = selfUs.get(key) ?? { name, location, us: 0 }
    line.us += us
    selfUs.set(key, line)
  }
  const busyUs = totalUs - idleUs
  const groups = new Map<string, number>()
  for (const line of selfUs.values()) {
    if (IDLE.has(line.name)) continue
    const group = groupOf(line.name, line.location)
    groups.set(group, (groups.get(group) ?? 0) + line.us)
  }
  const top = [...selfUs.values()]
    .filter((line) => !IDLE.has(line.name))
    .sort((a, b) => b.us - a.us)
    .slice(0, limit)
    .map((line) => ({ name: line.name, location: line.location, selfMs: line.us / 1000, percent: (100 * line.us) / busyUs }))
  return {
    file,
    totalMs: totalUs / 1000,
    busyMs: busyUs / 1000,
    top,
    groups: [...groups].sort((a, b) => b[1] - a[1]).map(([group, us]) => ({ group, selfMs: us / 1000, percent: (100 * us) / busyUs })),
  }
}

function groupOf(name: string, location: string): string {
  if (name === '(garbage collector)') return 'GC'
  if (location.startsWith('src/')) return 'cachet (src/)'
  if (location.startsWith('~/')) return `package ${location.slice(2).split('/')[0]}`
  if (location.startsWith('node:')) return 'Node internals (JS)'
  if (location === '') return 'native (syscalls, V8 builtins)'
  return 'other'
}

function shorten(url: string, root: string): string {
  const file = url.startsWith('file://') ? new URL(url).pathname : url
  const relative = path.relative(root, file)
  return relative.startsWith('..') ? file : relative.replace(/^node_modules\//, '~/')
}

export function profileMarkdown(summary: ProfileSummary, title: string): string {
  const lines = [
    `### CPU profile: ${title}`,
    '',
    `\`${summary.file}\`: ${summary.busyMs.toFixed(0)} ms busy of ${summary.totalMs.toFixed(0)} ms sampled (idle/program excluded below).`,
    '',
    `Self time by origin: ${summary.groups
      .slice(0, 8)
      .map((g) => `${g.group} ${g.percent.toFixed(1)} %`)
      .join(', ')}.`,
    '',
    '| self ms | % busy | function | location |',
    '| ---: | ---: | --- | --- |',
    ...summary.top.map((l) => `| ${l.selfMs.toFixed(1)} | ${l.percent.toFixed(1)} | \`${l.name}\` | ${l.location} |`),
  ]
  return lines.join('\n')
}
