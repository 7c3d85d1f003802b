/** Every example is imported and driven over HTTP (as express's acceptance tests do), and run as its own process, so none can rot. */
import { expect } from 'chai'
import { execFile, spawn } from 'node:child_process'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { once } from 'node:events'
import { randomUUID } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { redisStore, responseCache } from '../../src/index.js'
import { createApp as basicApp } from '../../examples/basic/app.js'
import { createApp as blogApp } from '../../examples/invalidate/app.js'
import { createApp as customStoreApp } from '../../examples/custom-store/app.js'
import { createApp as routeKeysApp } from '../../examples/route-keys/app.js'
import { createHandler as nodeHttpHandler } from '../../examples/node-http/app.js'
import { createApp as staleApp } from '../../examples/stale-while-revalidate/app.js'
import { createApp as coalescingApp, type OriginCalls } from '../../examples/coalescing/app.js'
import { mapStore } from '../../examples/custom-store/store.js'
import { createApp as cdnPurgeApp } from '../../examples/cdn-purge/app.js'
import { eventually, fakeClock, rawRequest, serve, type Served } from '../support/app.js'
import { getMemcached, getRedis } from '../support/servers.js'

/** Servers and caches a test opened, closed after it whatever happened. */
const opened: { close(): unknown }[] = []
afterEach(async function closeOpened() {
  for (const item of opened.splice(0).reverse()) await item.close()
})

async function listen(app: Parameters<typeof serve>[0]): Promise<Served> {
  const served = await serve(app)
  opened.push(served)
  return served
}

describe('examples/basic', function () {
  describe('when /time is requested twice and /live twice', function () {
    it('should render /time once and never cache /live', async function () {
      const { app, cache, renders } = basicApp()
      opened.push(cache)
      const { agent } = await listen(app)
      const first = await agent.get('/time').expect(200).expect('X-Cache', 'MISS')
      const second = await agent.get('/time').expect(200).expect('X-Cache', 'HIT')
      expect(second.body).to.deep.equal(first.body)
      expect(renders()).to.equal(1)
      await agent.get('/live').expect(200).expect('X-Cache', 'BYPASS')
      await agent.get('/live').expect(200).expect('X-Cache', 'BYPASS')
    })
  })
})

describe('examples/invalidate', function () {
  describe('when a POST adds a post', function () {
    it('should serve the list from the cache until the POST invalidates posts:*', async function () {
      const { app, cache, stats } = blogApp()
      opened.push(cache)
      const { agent } = await listen(app)
      await agent.get('/posts').expect(200).expect('X-Cache', 'MISS')
      await agent.get('/posts?page=2').expect(200).expect('X-Cache', 'MISS')
      await agent.get('/posts/1').expect(200).expect('X-Cache', 'MISS')
      await agent.get('/posts').expect(200).expect('X-Cache', 'HIT')
      expect(stats.listRenders).to.equal(2)
      await agent.post('/posts').send({ title: 'Two' }).expect(201).expect('X-Cache', 'BYPASS')
      const after = await agent.get('/posts').expect(200).expect('X-Cache', 'MISS')
      expect(after.body.map((p: { title: string }) => p.title)).to.deep.equal(['Hello', 'Two'])
      await agent.get('/posts?page=2').expect('X-Cache', 'MISS')
      await agent.get('/posts/1').expect('X-Cache', 'MISS')
    })
  })
})

describe('examples/custom-store', function () {
  describe('when mapStore() backs a responseCache', function () {
    it('should store, serve and invalidate end to end', async function () {
      const cache = responseCache({ store: mapStore(), ttl: 60 })
      opened.push(cache)
      const { agent } = await listen(basicApp(cache).app)
      await agent.get('/time').expect('X-Cache', 'MISS')
      await agent.get('/time').expect('X-Cache', 'HIT')
      expect(await cache.invalidate('time:*')).to.equal(1)
      await agent.get('/time').expect('X-Cache', 'MISS')
    })
  })

  describe('when its app.ts is used', function () {
    it('should cache examples/basic in a mapStore()', async function () {
      const { app, cache, renders } = customStoreApp()
      opened.push(cache)
      const { agent } = await listen(app)
      await agent.get('/time').expect('X-Cache', 'MISS')
      await agent.get('/time').expect('X-Cache', 'HIT')
      expect(renders()).to.equal(1)
    })
  })
})

describe('examples/route-keys', function () {
  describe('when one article is requested with different tracking query strings', function () {
    it('should render it once and answer every link from one entry', async function () {
      const { app, cache, stats } = routeKeysApp()
      opened.push(cache)
      const { agent } = await listen(app)
      const first = await agent.get('/articles/hello?utm_source=mail').expect(200).expect('X-Cache', 'MISS')
      await agent.get('/articles/hello?utm_source=ad&ref=x').expect(200).expect('X-Cache', 'HIT')
      await agent.get('/articles/hello').expect(200).expect('X-Cache', 'HIT')
      expect(first.body).to.deep.equal({ slug: 'hello', title: 'Hello, world' })
      expect(stats.articleRenders).to.equal(1)
    })
  })

  describe('when searches differ only in case, spaces and extra parameters', function () {
    it('should share one entry, and keep different terms apart', async function () {
      const { app, cache, stats } = routeKeysApp()
      opened.push(cache)
      const { agent } = await listen(app)
      await agent.get('/search?q=Hello').expect(200).expect('X-Cache', 'MISS')
      await agent.get('/search?q=%20hello%20&page=1').expect(200).expect('X-Cache', 'HIT')
      await agent.get('/search?q=world').expect(200).expect('X-Cache', 'MISS')
      expect(stats.searchRenders).to.equal(2)
    })
  })

  describe('when an article is updated', function () {
    it('should invalidate its custom key and the searches', async function () {
      const { app, cache, stats } = routeKeysApp()
      opened.push(cache)
      const { agent } = await listen(app)
      await agent.get('/articles/hello?utm_source=mail').expect('X-Cache', 'MISS')
      await agent.get('/search?q=hello').expect('X-Cache', 'MISS')
      await agent.put('/articles/hello').send({ title: 'Hello again' }).expect(204)
      const after = await agent.get('/articles/hello?utm_source=ad').expect('X-Cache', 'MISS')
      expect(after.body.title).to.equal('Hello again')
      await agent.get('/search?q=hello').expect('X-Cache', 'MISS')
      expect(stats.articleRenders).to.equal(2)
    })
  })
})

describe('examples/node-http', function () {
  describe('when a bare node:http server is requested twice', function () {
    it('should render once, answer the repeat from the cache, and pass unknown paths through', async function () {
      const { onRequest, cache, stats } = nodeHttpHandler()
      opened.push(cache)
      const { agent } = await listen(onRequest)
      const first = await agent.get('/hello').expect(200).expect('X-Cache', 'MISS')
      const second = await agent.get('/hello').expect(200).expect('X-Cache', 'HIT')
      expect(second.body).to.deep.equal(first.body)
      expect(stats.renders).to.equal(1)
      await agent.get('/nope').expect(404)
    })
  })
})

describe('examples/stale-while-revalidate', function () {
  this.timeout(30_000)

  describe('when the report has gone stale and the origin takes 2 s', function () {
    it('should answer 10 concurrent requests at once from the stale copy while one background refresh runs', async function () {
      const clock = fakeClock()
      const { app, cache, origin } = staleApp({ cache: responseCache({ now: clock.now }), delayMs: 2000 })
      opened.push(cache)
      const { agent } = await listen(app)
      const first = await agent.get('/report').expect(200).expect('X-Cache', 'MISS')
      expect(first.body).to.deep.equal({ version: 1 })
      await agent.get('/report').expect(200).expect('X-Cache', 'HIT')

      clock.advance(11_000) // past max-age=10, inside stale-while-revalidate=60
      const stale = await Promise.all(Array.from({ length: 10 }, () => agent.get('/report')))
      // All ten were answered before the refresh (2 s) could finish: none waited for the origin.
      expect(origin.finished).to.equal(1)
      expect(stale.map((res) => res.headers['x-cache'])).to.deep.equal(Array(10).fill('STALE'))
      expect(stale.map((res) => res.body.version)).to.deep.equal(Array(10).fill(1))
      expect(origin.started).to.equal(2)

      await eventually(() => origin.finished === 2, 'the background refresh', 10_000)
      await eventually(async () => (await agent.get('/report')).body.version === 2, 'the refreshed report', 5_000)
      await agent.get('/report').expect(200).expect('X-Cache', 'HIT')
      expect(origin.started).to.equal(2)
    })
  })
})

describe('examples/coalescing', function () {
  this.timeout(30_000)

  describe('when two processes (two caches on one Redis store) get 50 concurrent misses for one key', function () {
    it('should call the origin once and give all 50 the same body', async function () {
      const redis = await getRedis()
      const prefix = `coalescing-${randomUUID().slice(0, 8)}:`
      const clients = [new Redis(redis.url), new Redis(redis.url)]
      opened.push({ close: () => clients.forEach((client) => client.disconnect()) })
      const origin: OriginCalls = { calls: 0 }
      const processes = clients.map((client) => coalescingApp(redisStore({ client }, { prefix }), origin, 1000))
      for (const p of processes) opened.push(p.cache)
      opened.push({ close: () => redisStore({ client: clients[0] }, { prefix }).clear?.() })
      const servers = [await listen(processes[0].app), await listen(processes[1].app)]

      // Behind one load balancer both processes see one Host (part of every key): send it to both ports.
      const get = (i: number) => servers[i % 2].agent.get('/expensive').set('Host', 'api.example')
      const responses = await Promise.all(Array.from({ length: 50 }, (_, i) => get(i)))
      expect(responses.map((res) => res.status)).to.deep.equal(Array(50).fill(200))
      expect(origin.calls).to.equal(1)
      expect(new Set(responses.map((res) => res.text)).size).to.equal(1)
    })
  })
})

describe('examples/cdn-purge', function () {
  it('should forward a tag purge to the CDN stand-in, and purge the tagged pages here', async function () {
    const received: { tags: string[]; soft: boolean }[] = []
    const cdn = http.createServer((req, res) => {
      let body = ''
      req.on('data', (chunk) => (body += chunk))
      req.on('end', () => {
        received.push(JSON.parse(body))
        res.end('{"success":true}')
      })
    })
    await new Promise<void>((resolve) => cdn.listen(0, '127.0.0.1', resolve))
    try {
      const { app, cache } = cdnPurgeApp(`http://127.0.0.1:${(cdn.address() as AddressInfo).port}/purge`)
      opened.push({ close: () => cache.close() })
      const s = await listen(app)
      await s.agent.get('/posts').expect(200).expect('X-Cache', 'MISS').expect('Surrogate-Key', 'posts post:1 post:2')
      await s.agent.get('/posts/1').expect(200).expect('X-Cache', 'MISS')
      await s.agent.get('/posts').expect('X-Cache', 'HIT')
      await s.agent.put('/posts/1').send({ title: 'Edited' }).expect(204)
      await eventually(() => received.length === 1, 'the purge at the CDN')
      expect(received[0]).to.deep.equal({ tags: ['post:1'], soft: false })
      await s.agent.get('/posts').expect('X-Cache', 'MISS')
      const post = await s.agent.get('/posts/1').expect('X-Cache', 'MISS')
      expect(post.body.title).to.equal('Edited')
    } finally {
      await new Promise<void>((resolve) => cdn.close(() => resolve()))
    }
  })
})

/** Every examples/<name>/app.ts this suite runs as a process, with the environment it needs. */
const runnable: { name: string; env?: () => Promise<Record<string, string>> }[] = [
  { name: 'basic' },
  { name: 'invalidate' },
  { name: 'custom-store' },
  { name: 'route-keys' },
  { name: 'node-http' },
  { name: 'stale-while-revalidate' },
  { name: 'coalescing', env: async () => ({ REDIS_URL: (await getRedis()).url }) },
  { name: 'redis', env: async () => ({ REDIS_URL: (await getRedis()).url }) },
  { name: 'memcached', env: async () => ({ MEMCACHED_SERVERS: (await getMemcached()).address }) },
  { name: 'cdn-purge' },
  { name: 'posts-and-queries' },
  { name: 'observability' },
]

describe('examples/*/app.ts run directly', function () {
  this.timeout(60_000)

  /** Start `node --import tsx examples/<name>/app.ts` on PORT=0; resolves the URL it prints. */
  async function start(name: string, env: Record<string, string>) {
    const child = spawn(process.execPath, ['--import', 'tsx', `examples/${name}/app.ts`], {
      env: { ...process.env, ...env, PORT: '0', NODE_OPTIONS: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const exited = once(child, 'exit')
    opened.push({
      async close() {
        if (child.exitCode === null && child.signalCode === null) {
          child.kill('SIGTERM')
          await exited
        }
      },
    })
    let output = ''
    child.stdout.on('data', (chunk: Buffer) => (output += chunk))
    child.stderr.on('data', (chunk: Buffer) => (output += chunk))
    await eventually(() => /http:\/\/127\.0\.0\.1:\d+\/\S*/.test(output) || child.exitCode !== null, `examples/${name} to listen`, 30_000)
    const url = /http:\/\/127\.0\.0\.1:(\d+)(\/\S*)/.exec(output)
    if (url === null) throw new Error(`examples/${name}/app.ts exited with ${child.exitCode}:\n${output}`)
    return { port: Number(url[1]), path: url[2] }
  }

  it('should cover every examples/*/app.ts of this list', async function () {
    const names = runnable.map((r) => r.name)
    for (const name of names) expect((await readdir(`examples/${name}`)).includes('app.ts'), name).to.equal(true)
  })

  for (const { name, env } of runnable) {
    describe(`when examples/${name}/app.ts is run with node`, function () {
      it('should listen on loopback, print its URL, and answer a request with X-Cache', async function () {
        const { port, path } = await start(name, (await env?.()) ?? {})
        const reply = await rawRequest(port, path)
        expect(reply.status, reply.body.toString()).to.equal(200)
        const xCache = reply.rawHeaders.findIndex((h, i) => i % 2 === 0 && h.toLowerCase() === 'x-cache')
        expect(reply.rawHeaders[xCache + 1]).to.be.oneOf(['MISS', 'HIT'])
      })
    })
  }
})

describe('examples import only the public entry points', function () {
  it('should import ../../src/index.js (or testing.js) and never an internal module', async function () {
    for (const name of [...runnable.map((r) => r.name), 'demo']) {
      const files =
        name === 'demo' ? ['examples/demo.ts'] : (await readdir(`examples/${name}`)).filter((f) => f.endsWith('.ts')).map((f) => `examples/${name}/${f}`)
      for (const file of files) {
        const source = await readFile(file, 'utf8')
        const internal = [...source.matchAll(/from '((?:\.\.\/)+src\/[^']+)'/g)].map((m) => m[1]).filter((p) => !/src\/(index|testing)\.js$/.test(p))
        expect(internal, file).to.deep.equal([])
      }
    }
  })
})

describe('npm run demo', function () {
  this.timeout(60_000)
  it('should print MISS → HIT → 304 → invalidate → MISS and exit 0', async function () {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/demo.ts'], { cwd: process.cwd() })
    const lines = stdout.split('\n').filter((l) => l.startsWith('GET') || l.startsWith('POST'))
    expect(lines.map((l) => /X-Cache: (\w+)/.exec(l)?.[1])).to.deep.equal(['MISS', 'HIT', 'HIT', 'BYPASS', 'MISS'])
    expect(lines[2]).to.match(/\s304\s/)
  })
})
