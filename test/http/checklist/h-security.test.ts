/** test/CHECKLIST.md H (items 57–58): poisoning, limits, store failures and tampering, on every store. */
import { createHash } from 'node:crypto'
import http, { type IncomingMessage, type ServerResponse } from 'node:http'
import v8 from 'node:v8'
import vm from 'node:vm'
import { expect } from 'chai'
import express from 'express'
import { jsonCoder } from '../../../src/coders/json.js'
import { CorruptEntryError } from '../../../src/entry.js'
import type { ResponseEntry } from '../../../src/types.js'
import { responseEntry } from '../../support/entries.js'
import {
  closeAll,
  eventually,
  isMemory,
  landed,
  rawRequest,
  storeHolds,
  rawValues,
  setup,
  sleep,
  storeFactories,
  wireRequest,
  type Harness,
} from '../../support/app.js'

const CC60 = { 'Cache-Control': 'max-age=60' }
const MiB = 1024 * 1024

/**
 * Live memory after full collections: heap plus Buffers (RSS alone moves with garbage not yet
 * collected). Two collections: V8 releases the memory of dead Buffers in the background after a
 * collection, and the next one waits for that, so Buffers that died before the first no longer
 * count (after one, growth while streaming read 0–17 MB on a correct cache, after two under 1 MB).
 */
let collect: (() => void) | undefined
function liveBytes(): number {
  if (collect === undefined) {
    v8.setFlagsFromString('--expose-gc')
    collect = vm.runInNewContext('gc') as () => void
  }
  collect()
  collect()
  const m = process.memoryUsage()
  return m.heapUsed + m.arrayBuffers
}

/** The storage key of GET `path` (no query) on the harness's own Host. */
const keyOf = (h: Harness, path: string) => `${path.slice(1).split('/').join(':')}:GET#${h.host}`

/** A well-formed stored response with the given headers, stored now on the harness clock. */
const entry = (h: Harness, headers: string[], body = 'tampered'): ResponseEntry => responseEntry(body, headers, h.clock.now())

/** Stream GET `path` without buffering it: length and SHA-256 of the body, and the head. */
function streamed(port: number, path: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; length: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        const hash = createHash('sha256')
        let length = 0
        res.on('data', (chunk: Buffer) => {
          length += chunk.length
          hash.update(chunk)
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, length, sha256: hash.digest('hex') }))
        res.on('error', reject)
      })
      .on('error', reject)
  })
}

/** Chunk `i` of the big body: 64 KiB whose bytes depend on their position. */
function bigChunk(i: number): Buffer {
  const chunk = Buffer.alloc(64 * 1024)
  for (let j = 0; j < chunk.length; j += 1024) chunk.fill((i * 31 + j / 1024) & 0xff, j, j + 1024)
  return chunk
}

for (const s of storeFactories) {
  describe(`checklist H — security and robustness (on ${s.name})`, function () {
    afterEach(closeAll)

    it('57a: X-Forwarded-Host with trust proxy is keyed — a poisoned entry is never served without it, and a constant one keeps its hit rate', async () => {
      const h = await setup(s, { before: (app) => app.set('trust proxy', true) })
      h.O.script = (n, req) => ({ headers: CC60, body: `${(req as express.Request).hostname}-v${n}` })
      await h.get('/p', { 'X-Forwarded-Host': 'evil.test' }).expect(200, 'evil.test-v1')
      const plain = await h.get('/p').expect(200)
      expect(plain.text).not.to.contain('evil.test')
      await h.get('/p').expect(200, plain.text).expect('X-Cache', 'HIT')
      await h.get('/lb', { 'X-Forwarded-Host': 'lb.test', 'X-Forwarded-Proto': 'https' }).expect('X-Cache', 'MISS')
      await h.get('/lb', { 'X-Forwarded-Host': 'lb.test', 'X-Forwarded-Proto': 'https' }).expect('X-Cache', 'HIT')
    })

    it('57a: X-Forwarded-Host reflected by O (raw header, no trust proxy) never reaches a request without it', async () => {
      const h = await setup(s)
      h.O.script = (n, req) => ({ headers: CC60, body: `${req.headers['x-forwarded-host'] ?? 'none'}-v${n}` })
      await h.get('/p', { 'X-Forwarded-Host': 'evil.test' }).expect(200)
      const plain = await h.get('/p').expect(200)
      expect(plain.text).not.to.contain('evil.test')
    })

    for (const [name, value] of [
      ['X-HTTP-Method-Override', 'DELETE'],
      ['X-Original-URL', '/admin'],
      ['X-Rewrite-URL', '/admin'],
    ]) {
      it(`57a: ${name} → BYPASS, not stored`, async () => {
        const h = await setup(s)
        h.O.headers = CC60
        await h
          .get('/p', { [name]: value })
          .expect(200, 'v1')
          .expect('X-Cache', 'BYPASS')
        await h.get('/p').expect(200, 'v2').expect('X-Cache', 'MISS')
        // And a stored entry is not served to it either.
        await h
          .get('/p', { [name]: value })
          .expect(200, 'v3')
          .expect('X-Cache', 'BYPASS')
      })
    }

    it('57b: fat GET — a GET with a JSON body (Content-Length: 13) and express.json() mounted → BYPASS, not stored', async () => {
      const h = await setup(s, { before: (app) => app.use(express.json()) })
      h.O.script = (n, req) => ({ headers: CC60, body: `${JSON.stringify((req as express.Request).body ?? null)}-v${n}` })
      const json = '{"x":"hello"}'
      expect(json.length).to.equal(13)
      const fat = await rawRequest(h.port, '/p', { 'Content-Type': 'application/json', 'Content-Length': '13' }, 'GET', json)
      expect(fat.status).to.equal(200)
      expect(rawValues(fat.rawHeaders, 'x-cache')).to.deep.equal(['BYPASS'])
      expect(fat.body.toString()).to.contain('hello')
      const plain = await h.get('/p').expect(200).expect('X-Cache', 'MISS')
      expect(plain.text).not.to.contain('hello')
      expect(h.O.calls).to.equal(2)
    })

    it('57c: a URL longer than maxKeyLength (4 KiB query) → BYPASS', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      const path = `/p?q=${'x'.repeat(4096)}`
      await h.get(path).expect(200, 'v1').expect('X-Cache', 'BYPASS')
      await h.get(path).expect(200, 'v2').expect('X-Cache', 'BYPASS')
    })

    if (isMemory(s)) {
      it('57d: 10,000 distinct ?q=<n> (memory) — entries ≤ maxEntries, bytes ≤ maxBytes, memory growth bounded', async function () {
        this.timeout(60_000)
        const maxEntries = 200
        const maxBytes = 512 * 1024
        const h = await setup(s, { memory: { maxEntries, maxBytes } })
        const body = Buffer.alloc(4096, 'b')
        h.O.script = () => ({ headers: CC60, body })
        const liveBefore = liveBytes()
        for (let batch = 0; batch < 10_000; batch += 100) {
          await Promise.all(Array.from({ length: 100 }, (_, i) => h.get(`/p?q=${batch + i}`).expect(200)))
          const stats = h.cache.stats()
          expect(stats.entries, `after ${batch + 100}`).to.be.at.most(maxEntries)
          expect(stats.bytes, `after ${batch + 100}`).to.be.at.most(maxBytes)
        }
        expect(h.O.calls).to.equal(10_000)
        expect(h.cache.stats().entries).to.be.above(0)
        // 10,000 × 4 KiB unbounded would be 40 MiB of bodies alone (plus their keys and headers).
        expect(liveBytes() - liveBefore, 'live memory growth').to.be.below(16 * MiB)
      })
    }

    it('57e: O streams 50 MiB with maxBodySize 1 MiB — the client gets it all intact, nothing is stored, memory stays bounded', async function () {
      this.timeout(60_000)
      const chunks = 800 // × 64 KiB = 50 MiB
      const h = await setup(s, {
        options: { maxBodySize: MiB },
        routes(app, O) {
          app.get('/big', (_req: IncomingMessage, res: ServerResponse) => {
            O.calls++
            res.setHeader('Cache-Control', 'max-age=60')
            res.setHeader('Content-Type', 'application/octet-stream')
            let i = 0
            const pump = () => {
              while (i < chunks) {
                if (!res.write(bigChunk(i++))) return void res.once('drain', pump)
              }
              res.end()
            }
            pump()
          })
        },
      })
      const expected = createHash('sha256')
      for (let i = 0; i < chunks; i++) expected.update(bigChunk(i))
      // Live memory after a full collection, sampled while the body streams: RSS also counts
      // garbage not collected yet, which a correct cache leaves behind too (it grew by 43 MB once).
      const liveBefore = liveBytes()
      let peak = liveBefore
      const sampler = setInterval(() => (peak = Math.max(peak, liveBytes())), 25)
      let first
      try {
        first = await streamed(h.port, '/big')
      } finally {
        clearInterval(sampler)
      }
      expect(first.status).to.equal(200)
      expect(first.length).to.equal(50 * MiB)
      expect(first.sha256).to.equal(expected.digest('hex'))
      // Buffering the whole body would hold up to 50 MiB by the end; a bounded capture holds 1 MiB.
      expect(peak - liveBefore, 'live memory growth while streaming').to.be.below(16 * MiB)
      await sleep(20)
      const second = await streamed(h.port, '/big')
      expect(second.headers['x-cache']).to.equal('MISS')
      expect(second.length).to.equal(50 * MiB)
      expect(h.O.calls).to.equal(2)
    })

    it('57f: Vary on X-A/X-B has no delimiter collisions', async () => {
      const h = await setup(s)
      h.O.headers = { ...CC60, Vary: 'X-A, X-B' }
      const variants: Record<string, string>[] = [
        { 'X-A': 'a:b', 'X-B': 'c' },
        { 'X-A': 'a', 'X-B': 'b:c' },
        { 'X-A': 'a&x-b=b' },
        { 'X-A': 'a', 'X-B': 'b' },
        { 'X-A': 'a#b' },
        { 'X-A': 'a', 'X-B': '' },
      ]
      for (const [i, headers] of variants.entries()) {
        await h
          .get('/r', headers)
          .expect(200, `v${i + 1}`)
          .expect('X-Cache', 'MISS')
      }
      for (const [i, headers] of variants.entries()) {
        await h
          .get('/r', headers)
          .expect(200, `v${i + 1}`)
          .expect('X-Cache', 'HIT')
      }
      expect(h.O.calls).to.equal(variants.length)
    })

    if (!isMemory(s)) {
      it('58a: an entry with CR/LF in a stored header value → no injection, no crash: MISS, the entry is deleted, serving goes on', async () => {
        const errors: Error[] = []
        const h = await setup(s, { options: { onError: (error) => void errors.push(error) } })
        h.O.headers = { 'Cache-Control': 'no-store' }
        const bad = entry(h, ['Content-Type', 'text/plain', 'X-Evil', 'a\r\nSet-Cookie: pwn=1\r\n\r\ninjected'])
        await h.created!.putRaw!(keyOf(h, '/r'), jsonCoder().encode(bad), 60_000)
        const res = await rawRequest(h.port, '/r')
        expect(res.status).to.equal(200)
        expect(res.body.toString()).to.equal('v1')
        expect(rawValues(res.rawHeaders, 'x-cache')).to.deep.equal(['MISS'])
        expect(rawValues(res.rawHeaders, 'set-cookie')).to.deep.equal([])
        expect(rawValues(res.rawHeaders, 'x-evil')).to.deep.equal([])
        expect(errors.some((e) => e instanceof CorruptEntryError)).to.equal(true)
        // The corrupt entry is deleted; what the key holds now is at most the marker saying its
        // response was not storable (hit-for-pass).
        await eventually(async () => {
          const left = await h.store.get(keyOf(h, '/r'))
          return left === null || left === undefined || jsonCoder().decode(left).kind === 'pass'
        }, 'the corrupt entry to be deleted')
        await h.get('/r').expect(200, 'v2').expect('X-Cache', 'MISS')
      })

      for (const [label, bytes] of [
        ['truncated', () => Buffer.from('{"v":1,"k":"r","s":200,"h":["Content-Type","te')],
        ['not JSON at all', () => Buffer.from([0xff, 0x00, 0x13, 0x37, 0x80, 0x81])],
        ['another format version', () => Buffer.from('{"v":999,"k":"r"}')],
      ] as const) {
        it(`58b: an unparseable entry (${label}) → MISS, no 500`, async () => {
          const h = await setup(s)
          h.O.headers = CC60
          await h.created!.putRaw!(keyOf(h, '/r'), bytes(), 60_000)
          await h.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
          await sleep(50)
          await h.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
        })
      }

      it('58c: a stalled store (SIGSTOP) → responses come from O within storeTimeout + O latency, never a 500', async function () {
        this.timeout(20_000)
        const h = await setup(s)
        h.O.headers = CC60
        await h.get('/warm').expect(200)
        await landed(h, 'warm:GET') // stored in the server, not only in flight in this process
        const server = h.created!.server!
        await server.pause()
        try {
          for (const path of ['/a', '/warm', '/b', '/a']) {
            const started = Date.now()
            const res = await h.get(path).timeout(3000)
            const elapsed = Date.now() - started
            expect(res.status, path).to.equal(200)
            expect(res.headers['x-cache'], path).to.be.oneOf(['MISS', 'BYPASS'])
            expect(elapsed, `${path} took ${elapsed} ms`).to.be.below(200 + 250)
          }
        } finally {
          server.resume()
        }
      })

      if (s.name === 'redis' || s.name === 'memcached') {
        it('58c: a store that is down (killed) → responses come from O at once, never a 500', async function () {
          this.timeout(20_000)
          const h = await setup(s)
          h.O.headers = CC60
          const server = h.created!.server!
          await server.kill()
          try {
            for (const path of ['/a', '/b', '/a']) {
              const started = Date.now()
              const res = await h.get(path).timeout(3000)
              expect(res.status, path).to.equal(200)
              expect(res.headers['x-cache'], path).to.be.oneOf(['MISS', 'BYPASS'])
              expect(Date.now() - started, path).to.be.below(200 + 250)
            }
          } finally {
            await server.restart()
          }
        })
      }
    }

    it('58d: a 2 KiB URL with spaces → MISS then HIT (memcached keys hashed to ≤ 250 bytes)', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      const base = '/long/path%20with%20spaces?q='
      const path = base + 'a%20b%20'.repeat(Math.floor((2000 - base.length) / 8))
      expect(path.length).to.be.within(1900, 2048)
      await h.get(path).expect(200, 'v1').expect('X-Cache', 'MISS')
      await sleep(20)
      await h.get(path).expect(200, 'v1').expect('X-Cache', 'HIT')
    })

    it('58e: query names __proto__ / constructor do not alter behaviour or crash', async () => {
      const h = await setup(s)
      h.O.headers = CC60
      await h.get('/r?__proto__=1&constructor=2').expect(200, 'v1').expect('X-Cache', 'MISS')
      await h.get('/r?constructor=2&__proto__=1').expect(200, 'v1').expect('X-Cache', 'HIT')
      await h.get('/r?__proto__=2&constructor=2').expect(200, 'v2').expect('X-Cache', 'MISS')
      await h.get('/r?constructor=1').expect(200, 'v3').expect('X-Cache', 'MISS')
      expect(({} as Record<string, unknown>).x).to.equal(undefined)
    })

    it('58e: header names __proto__ / constructor (sent and named in Vary) do not alter behaviour or crash', async () => {
      // A short lockTimeout: a response that fails to store must not hold later requests for long.
      const h = await setup(s, { options: { lockTimeout: '500ms' } })
      h.O.headers = { ...CC60, Vary: 'constructor' }
      const get = async (path: string, lines: string[]) => {
        const res = await wireRequest(h.port, path, lines)
        return { status: res.status, body: res.body.toString(), cache: rawValues(res.rawHeaders, 'x-cache')[0] }
      }
      // Sent as written on the wire: no client library sends a header named __proto__ as given.
      expect(await get('/v', ['constructor: y'])).to.deep.equal({ status: 200, body: 'v1', cache: 'MISS' })
      expect(await get('/v', ['constructor: y'])).to.deep.equal({ status: 200, body: 'v1', cache: 'HIT' })
      expect(await get('/v', ['constructor: z'])).to.deep.equal({ status: 200, body: 'v2', cache: 'MISS' })
      // Absent is absent, not the inherited Object constructor.
      expect(await get('/v', [])).to.deep.equal({ status: 200, body: 'v3', cache: 'MISS' })
      expect(await get('/v', [])).to.deep.equal({ status: 200, body: 'v3', cache: 'HIT' })
      expect(await get('/v', ['constructor: y'])).to.deep.equal({ status: 200, body: 'v1', cache: 'HIT' })
      h.O.headers = { ...CC60, Vary: '__proto__' }
      expect(await get('/p', ['__proto__: x'])).to.deep.equal({ status: 200, body: 'v4', cache: 'MISS' })
      expect(await get('/p', ['__proto__: x'])).to.deep.equal({ status: 200, body: 'v4', cache: 'HIT' })
      expect(h.O.calls).to.equal(4)
      expect(({} as Record<string, unknown>).x).to.equal(undefined)
    })

    it('58f: a cache mounted before an auth middleware never serves an authenticated response to an unauthenticated request', async () => {
      const h = await setup(s, {
        routes(app, O) {
          app.use((req: express.Request, res: express.Response, next: express.NextFunction) => {
            if (req.headers.authorization !== 'Bearer good') return void res.status(401).set('Cache-Control', 'no-store').send('login')
            next()
          })
          app.use(O.handle)
        },
      })
      h.O.script = (n) => ({ headers: CC60, body: `secret-v${n}` })
      await h.get('/me', { Authorization: 'Bearer good' }).expect(200, 'secret-v1')
      await h.get('/me', { Authorization: 'Bearer good' }).expect(200, 'secret-v2')
      const anonymous = await h.get('/me').expect(401)
      expect(anonymous.text).to.equal('login')
      const forged = await h.get('/me', { Authorization: 'Bearer bad' }).expect(401)
      expect(forged.text).to.equal('login')
    })
  })
}
