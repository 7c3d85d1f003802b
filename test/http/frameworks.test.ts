/** cachet under Express 5, Express 4 and connect()/node:http: body APIs, compression, limits, HEAD, errors, X-Cache values. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import { expect } from 'chai'
import compression from 'compression'
import type express from 'express'
import { responseCache, type ResponseCache } from '../../src/middleware.js'
import type { CacheOptions } from '../../src/options.js'
import { memoryStore } from '../../src/stores/memory.js'
import {
  binary,
  connectApp,
  express4App,
  express5App,
  fakeClock,
  Origin,
  rawRequest,
  rawValues,
  serve,
  type Clock,
  type Handler,
  type Served,
} from '../support/app.js'

type Next = (error?: unknown) => void

interface Built {
  served: Served
  cache: ResponseCache
  clock: Clock
  O: Origin
}

/** A framework: mount [before…] → cache → [after…] → routes, on one server. */
interface Framework {
  name: string
  build(options: {
    cache?: Omit<CacheOptions, 'store' | 'now'>
    before?: Handler[]
    after?: Handler[]
    routes: Record<string, Handler>
    /** Leave errors to the framework's own final handler (finalhandler). */
    defaultErrors?: boolean
  }): Promise<Built>
}

const opened: Built[] = []

function make(name: string, create: () => { use(fn: unknown): unknown; get?: unknown }, isConnect = false): Framework {
  return {
    name,
    async build({ cache: cacheOptions, before = [], after = [], routes, defaultErrors = false }) {
      const clock = fakeClock()
      const cache = responseCache({ ...cacheOptions, store: memoryStore({ now: clock.now }), now: clock.now })
      const O = new Origin(clock)
      const app = create()
      for (const fn of before) app.use(fn)
      app.use(cache)
      for (const fn of after) app.use(fn)
      // One dispatcher for every framework: connect has no router, and this keeps the paths identical.
      app.use(function dispatch(req: IncomingMessage, res: ServerResponse, next: Next) {
        const path = ((req as { originalUrl?: string }).originalUrl ?? req.url ?? '/').split('?')[0]
        const route = routes[path]
        if (route === undefined) return next()
        route(req, res, next)
      })
      if (!defaultErrors)
        app.use(function onError(error: Error, _req: IncomingMessage, res: ServerResponse, _next: Next) {
          void error
          res.statusCode = 500
          res.setHeader('Cache-Control', 'max-age=60')
          res.setHeader('Content-Type', 'text/plain')
          res.end('error page')
        })
      const served = await serve(app as unknown as (req: IncomingMessage, res: ServerResponse) => void)
      const built = { served, cache, clock, O }
      opened.push(built)
      void isConnect
      return built
    },
  }
}

const frameworks: Framework[] = [
  make('Express 5', () => express5App()),
  make('Express 4', () => express4App()),
  make('connect + node:http', () => connectApp(), true),
]

afterEach(async function () {
  const all = opened.splice(0)
  await Promise.all(
    all.map(async (b) => {
      await b.served.close()
      await b.cache.close()
    }),
  )
})

/** A plain node:http handler: counted, cacheable, `v<n>`. */
function plain(O: Origin, headers: Record<string, string> = { 'Cache-Control': 'max-age=60' }): Handler {
  return (_req, res) => {
    O.calls++
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v)
    res.setHeader('Content-Type', 'text/plain; charset=utf-8')
    res.end(`v${O.calls}`)
  }
}

const LARGE_TEXT = Array.from({ length: 400 }, (_, i) => `line ${i}: the quick brown fox jumps over the lazy dog\n`).join('')

for (const fw of frameworks) {
  describe(`responseCache() on ${fw.name}`, function () {
    it('should answer MISS, then HIT, then 304 for the HIT’s ETag', async () => {
      const O = new Origin()
      const { served } = await fw.build({ routes: { '/r': plain(O) } })
      await served.agent.get('/r').expect(200, 'v1').expect('X-Cache', 'MISS')
      const hit = await served.agent.get('/r').expect(200, 'v1').expect('X-Cache', 'HIT')
      expect(hit.headers.etag).to.be.a('string')
      const nm = await served.agent.get('/r').set('If-None-Match', hit.headers.etag).expect(304).expect('X-Cache', 'HIT')
      expect(nm.text ?? '').to.equal('')
      expect(O.calls).to.equal(1)
    })

    it('should store a body written with res.write() × N and replay it byte for byte', async () => {
      const O = new Origin()
      const parts = Array.from({ length: 40 }, (_, i) => `part ${i} ${'-'.repeat(i)}\n`)
      const { served } = await fw.build({
        routes: {
          '/stream': (_req, res) => {
            O.calls++
            res.setHeader('Cache-Control', 'max-age=60')
            res.setHeader('Content-Type', 'text/plain')
            let i = 0
            const pump = () => (i < parts.length ? (res.write(parts[i++]), setImmediate(pump)) : res.end())
            pump()
          },
        },
      })
      await served.agent.get('/stream').expect(200, parts.join('')).expect('X-Cache', 'MISS')
      const hit = await served.agent.get('/stream').expect(200, parts.join('')).expect('X-Cache', 'HIT')
      expect(hit.headers['content-length']).to.equal(String(Buffer.byteLength(parts.join(''))))
      expect(O.calls).to.equal(1)
    })

    it('should replay a binary body (all 256 byte values) unchanged', async () => {
      const O = new Origin()
      const body = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 256))
      const { served } = await fw.build({
        routes: {
          '/bin': (_req, res) => {
            O.calls++
            res.setHeader('Cache-Control', 'max-age=60')
            res.setHeader('Content-Type', 'application/octet-stream')
            res.write(body.subarray(0, 1000))
            res.end(body.subarray(1000))
          },
        },
      })
      const miss = await served.agent.get('/bin').buffer(true).parse(binary).expect(200).expect('X-Cache', 'MISS')
      const hit = await served.agent.get('/bin').buffer(true).parse(binary).expect(200).expect('X-Cache', 'HIT')
      expect(Buffer.compare(miss.body as Buffer, body)).to.equal(0)
      expect(Buffer.compare(hit.body as Buffer, body)).to.equal(0)
      expect(O.calls).to.equal(1)
    })

    it('should serve HEAD from a stored GET (headers and Content-Length, no body, no handler run)', async () => {
      const O = new Origin()
      const { served } = await fw.build({ routes: { '/r': plain(O) } })
      await served.agent.get('/r').expect(200, 'v1')
      const head = await rawRequest(served.port, '/r', {}, 'HEAD')
      expect(head.status).to.equal(200)
      expect(rawValues(head.rawHeaders, 'x-cache')).to.deep.equal(['HIT'])
      expect(rawValues(head.rawHeaders, 'content-length')).to.deep.equal(['2'])
      expect(head.body.length).to.equal(0)
      expect(O.calls).to.equal(1)
    })

    it('should stream a body larger than maxBodySize to the client intact and not store it', async () => {
      const O = new Origin()
      const chunk = Buffer.from('0123456789abcdef'.repeat(64)) // 1 KiB
      const { served } = await fw.build({
        cache: { maxBodySize: 8 * 1024 },
        routes: {
          '/big': (_req, res) => {
            O.calls++
            res.setHeader('Cache-Control', 'max-age=60')
            res.setHeader('Content-Type', 'text/plain')
            for (let i = 0; i < 100; i++) res.write(chunk)
            res.end()
          },
        },
      })
      const whole = chunk.toString().repeat(100)
      await served.agent.get('/big').expect(200, whole).expect('X-Cache', 'MISS')
      await served.agent.get('/big').expect(200, whole).expect('X-Cache', 'MISS')
      expect(O.calls).to.equal(2)
    })

    it('should never store the error page next(err) produces, even with a cacheable status and a ttl', async () => {
      const O = new Origin()
      const { served } = await fw.build({
        cache: { ttl: '1m' },
        defaultErrors: true,
        routes: {
          '/gone': (_req, _res, next) => {
            O.calls++
            // 404 is in the default statusCodes, and the ttl would make it storable.
            next(Object.assign(new Error('gone'), { status: 404, expose: true }))
          },
        },
      })
      await served.agent.get('/gone').expect(404).expect('X-Cache', 'MISS')
      await served.agent.get('/gone').expect(404).expect('X-Cache', 'MISS')
      expect(O.calls).to.equal(2)
    })

    it('should store a 404 a route sends itself (the error-page rule is not a status rule)', async () => {
      const O = new Origin()
      const { served } = await fw.build({
        cache: { ttl: '1m' },
        defaultErrors: true,
        routes: {
          '/missing': (_req, res) => {
            O.calls++
            res.statusCode = 404
            res.end('no such thing')
          },
        },
      })
      await served.agent.get('/missing').expect(404, 'no such thing').expect('X-Cache', 'MISS')
      await served.agent.get('/missing').expect(404, 'no such thing').expect('X-Cache', 'HIT')
      expect(O.calls).to.equal(1)
    })

    it('should report each X-Cache value: MISS, HIT, BYPASS, STALE, REVALIDATED', async () => {
      const O = new Origin()
      const { served, clock } = await fw.build({
        routes: {
          '/hit': plain(O),
          '/post': plain(O),
          '/swr': plain(O, { 'Cache-Control': 'max-age=1, stale-while-revalidate=30' }),
          '/reval': (req, res) => {
            O.calls++
            res.setHeader('Cache-Control', 'max-age=1')
            res.setHeader('ETag', '"r1"')
            if (req.headers['if-none-match'] === '"r1"') {
              res.statusCode = 304
              return res.end()
            }
            res.end('reval body')
          },
        },
      })
      await served.agent.get('/hit').expect('X-Cache', 'MISS')
      await served.agent.get('/hit').expect('X-Cache', 'HIT')
      await served.agent.post('/post').expect('X-Cache', 'BYPASS')
      await served.agent.get('/swr').expect('X-Cache', 'MISS')
      await served.agent.get('/reval').expect(200, 'reval body').expect('X-Cache', 'MISS')
      clock.advance(2000)
      await served.agent.get('/swr').expect('X-Cache', 'STALE')
      await served.agent.get('/reval').expect(200, 'reval body').expect('X-Cache', 'REVALIDATED')
    })

    it('should give the same body through compression mounted before the cache (MISS and HIT both gzip)', async () => {
      const O = new Origin()
      const { served } = await fw.build({
        before: [compression({ threshold: 0 }) as unknown as Handler],
        routes: {
          '/text': (_req, res) => {
            O.calls++
            res.setHeader('Cache-Control', 'max-age=60')
            res.setHeader('Content-Type', 'text/plain')
            res.end(LARGE_TEXT)
          },
        },
      })
      const miss = await rawRequest(served.port, '/text', { 'Accept-Encoding': 'gzip' })
      const hit = await rawRequest(served.port, '/text', { 'Accept-Encoding': 'gzip' })
      expect(rawValues(miss.rawHeaders, 'x-cache')).to.deep.equal(['MISS'])
      expect(rawValues(hit.rawHeaders, 'x-cache')).to.deep.equal(['HIT'])
      for (const res of [miss, hit]) {
        expect(rawValues(res.rawHeaders, 'content-encoding')).to.deep.equal(['gzip'])
        expect(gunzipSync(res.body).toString()).to.equal(LARGE_TEXT)
      }
      // The stored entry is the uncompressed body: a client without gzip gets it from the same entry.
      const identity = await rawRequest(served.port, '/text', { 'Accept-Encoding': 'identity' })
      expect(rawValues(identity.rawHeaders, 'x-cache')).to.deep.equal(['HIT'])
      expect(identity.body.toString()).to.equal(LARGE_TEXT)
      expect(O.calls).to.equal(1)
    })

    it('should store the compressed bytes with Vary: Accept-Encoding when compression is mounted after the cache', async () => {
      const O = new Origin()
      const { served, cache } = await fw.build({
        after: [compression({ threshold: 0 }) as unknown as Handler],
        routes: {
          '/text': (_req, res) => {
            O.calls++
            res.setHeader('Cache-Control', 'max-age=60')
            res.setHeader('Content-Type', 'text/plain')
            res.end(LARGE_TEXT)
          },
        },
      })
      const miss = await rawRequest(served.port, '/text', { 'Accept-Encoding': 'gzip' })
      const hit = await rawRequest(served.port, '/text', { 'Accept-Encoding': 'gzip' })
      expect(rawValues(miss.rawHeaders, 'x-cache')).to.deep.equal(['MISS'])
      expect(rawValues(hit.rawHeaders, 'x-cache')).to.deep.equal(['HIT'])
      expect(rawValues(hit.rawHeaders, 'content-encoding')).to.deep.equal(['gzip'])
      expect(rawValues(hit.rawHeaders, 'vary').join(',').toLowerCase()).to.contain('accept-encoding')
      expect(Buffer.compare(hit.body, miss.body)).to.equal(0)
      expect(rawValues(hit.rawHeaders, 'content-length')).to.deep.equal([String(hit.body.length)])
      expect(hit.body.length).to.be.below(Buffer.byteLength(LARGE_TEXT))
      expect(gunzipSync(hit.body).toString()).to.equal(LARGE_TEXT)
      // Another Accept-Encoding is another variant, never the gzip bytes.
      const identity = await rawRequest(served.port, '/text', { 'Accept-Encoding': 'identity' })
      expect(rawValues(identity.rawHeaders, 'x-cache')).to.deep.equal(['MISS'])
      expect(rawValues(identity.rawHeaders, 'content-encoding')).to.deep.equal([])
      expect(identity.body.toString()).to.equal(LARGE_TEXT)
      expect(O.calls).to.equal(2)
      // Two variants and the Vary record that lists them.
      expect(cache.stats().entries).to.equal(3)
    })
  })
}

/** Express-only response helpers, on both major versions. */
for (const fw of frameworks.slice(0, 2)) {
  describe(`responseCache() with Express response helpers on ${fw.name}`, function () {
    let dir: string
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'cachet-frameworks-'))
    })
    after(() => rmSync(dir, { recursive: true, force: true }))

    it('should cache res.send() and answer 304 from the entry', async () => {
      const O = new Origin()
      const { served } = await fw.build({
        routes: {
          '/send': ((_req: express.Request, res: express.Response) => {
            O.calls++
            res.set('Cache-Control', 'max-age=60').send(`<p>sent ${O.calls}</p>`)
          }) as unknown as Handler,
        },
      })
      const miss = await served.agent.get('/send').expect(200, '<p>sent 1</p>').expect('X-Cache', 'MISS')
      expect(miss.headers['content-type']).to.match(/^text\/html/)
      const hit = await served.agent.get('/send').expect(200, '<p>sent 1</p>').expect('X-Cache', 'HIT')
      expect(hit.headers['content-type']).to.equal(miss.headers['content-type'])
      await served.agent.get('/send').set('If-None-Match', hit.headers.etag).expect(304)
      expect(O.calls).to.equal(1)
    })

    it('should cache res.json() with its Content-Type', async () => {
      const O = new Origin()
      const { served } = await fw.build({
        routes: {
          '/json': ((_req: express.Request, res: express.Response) => {
            O.calls++
            res.set('Cache-Control', 'max-age=60').json({ call: O.calls, items: [1, 2, 3] })
          }) as unknown as Handler,
        },
      })
      await served.agent
        .get('/json')
        .expect(200, { call: 1, items: [1, 2, 3] })
        .expect('X-Cache', 'MISS')
      const hit = await served.agent
        .get('/json')
        .expect(200, { call: 1, items: [1, 2, 3] })
        .expect('X-Cache', 'HIT')
      expect(hit.headers['content-type']).to.match(/^application\/json/)
      expect(O.calls).to.equal(1)
    })

    it('should cache res.sendFile() of a temp file (streamed by send) and answer 304', async () => {
      const O = new Origin()
      const file = join(dir, `${fw.name.replace(/\W/g, '')}.txt`)
      writeFileSync(file, LARGE_TEXT)
      const { served } = await fw.build({
        routes: {
          '/file': ((_req: express.Request, res: express.Response) => {
            O.calls++
            res.sendFile(file, { maxAge: 60_000 })
          }) as unknown as Handler,
        },
      })
      await served.agent.get('/file').expect(200, LARGE_TEXT).expect('X-Cache', 'MISS')
      const hit = await served.agent.get('/file').expect(200, LARGE_TEXT).expect('X-Cache', 'HIT')
      expect(hit.headers['content-length']).to.equal(String(Buffer.byteLength(LARGE_TEXT)))
      expect(hit.headers['cache-control']).to.contain('max-age=60')
      await served.agent.get('/file').set('If-None-Match', hit.headers.etag).expect(304).expect('X-Cache', 'HIT')
      // A conditional MISS through send's own 304 logic still stores (and serves) the full file.
      await served.agent.get('/file?fresh=1').set('If-None-Match', hit.headers.etag)
      await served.agent.get('/file?fresh=1').expect(200, LARGE_TEXT).expect('X-Cache', 'HIT')
      expect(O.calls).to.equal(2)
    })
  })
}
