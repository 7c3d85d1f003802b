/** `npm run demo`: MISS → HIT → 304 → invalidate → MISS on the embedded memory store, printed step by step. */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { createApp } from './invalidate/app.js'

interface Reply {
  status: number
  cache: string
  etag: string | undefined
  body: string
}

function call(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          cache: String(res.headers['x-cache'] ?? '-'),
          etag: res.headers.etag,
          body: Buffer.concat(chunks).toString(),
        }),
      )
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function main(): Promise<void> {
  const { app, cache, stats } = createApp()
  const server = http.createServer(app).listen(0, '127.0.0.1')
  await new Promise((resolve) => server.once('listening', resolve))
  const { port } = server.address() as AddressInfo
  const show = (step: string, r: Reply) => console.log(`${step.padEnd(34)} ${String(r.status).padEnd(4)} X-Cache: ${r.cache.padEnd(7)} ${r.body.slice(0, 48)}`)
  const expectCache = (r: Reply, want: string, status: number) => {
    if (r.cache !== want || r.status !== status) throw new Error(`expected ${status} ${want}, got ${r.status} ${r.cache}`)
  }

  console.log(`cachet demo on http://127.0.0.1:${port} (memory store)\n`)
  const first = await call(port, 'GET', '/posts')
  show('GET /posts', first)
  expectCache(first, 'MISS', 200)

  const second = await call(port, 'GET', '/posts')
  show('GET /posts again', second)
  expectCache(second, 'HIT', 200)

  const conditional = await call(port, 'GET', '/posts', { 'If-None-Match': second.etag ?? '' })
  show('GET /posts with If-None-Match', conditional)
  expectCache(conditional, 'HIT', 304)

  const created = await call(port, 'POST', '/posts', { 'Content-Type': 'application/json' }, JSON.stringify({ title: 'Second post' }))
  show('POST /posts (invalidates posts:*)', created)

  const after = await call(port, 'GET', '/posts')
  show('GET /posts after the write', after)
  expectCache(after, 'MISS', 200)
  if (!after.body.includes('Second post')) throw new Error('the new post is missing after invalidation')

  const { hits, misses, bypasses, stores, entries } = cache.stats()
  console.log(
    `\nhandler ran ${stats.listRenders}× for 4 reads · stats: hits ${hits}, misses ${misses}, bypasses ${bypasses}, stores ${stores}, entries ${entries}`,
  )
  server.close()
  await cache.close()
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
