/** Every example is imported and driven over HTTP (as express's acceptance tests do), so none can rot. */
import { expect } from 'chai'
import { execFile } from 'node:child_process'
import http from 'node:http'
import request from 'supertest'
import { promisify } from 'node:util'
import { responseCache } from '../src/index.js'
import { createApp as basicApp } from '../examples/basic/app.js'
import { createApp as blogApp } from '../examples/invalidate/app.js'
import { mapStore } from '../examples/custom-store/store.js'

function listen(app: http.RequestListener) {
  const server = http.createServer(app).listen(0, '127.0.0.1')
  return { agent: request(server), close: () => new Promise<void>((resolve) => server.close(() => resolve())) }
}

describe('examples/basic', () => {
  it('should render /time once for repeated requests and never cache /live', async () => {
    const { app, cache, renders } = basicApp()
    const { agent, close } = listen(app)
    try {
      const first = await agent.get('/time').expect(200).expect('X-Cache', 'MISS')
      const second = await agent.get('/time').expect(200).expect('X-Cache', 'HIT')
      expect(second.body).to.deep.equal(first.body)
      expect(renders()).to.equal(1)
      await agent.get('/live').expect(200).expect('X-Cache', 'BYPASS')
      await agent.get('/live').expect(200).expect('X-Cache', 'BYPASS')
    } finally {
      await close()
      await cache.close()
    }
  })
})

describe('examples/invalidate', () => {
  it('should serve the list from the cache until a POST invalidates posts:*', async () => {
    const { app, cache, stats } = blogApp()
    const { agent, close } = listen(app)
    try {
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
    } finally {
      await close()
      await cache.close()
    }
  })
})

describe('examples/custom-store', () => {
  it('should back a responseCache end to end', async () => {
    const cache = responseCache({ store: mapStore(), ttl: 60 })
    const { app } = basicApp(cache)
    const { agent, close } = listen(app)
    try {
      await agent.get('/time').expect('X-Cache', 'MISS')
      await agent.get('/time').expect('X-Cache', 'HIT')
      expect(await cache.invalidate('time:*')).to.equal(1)
      await agent.get('/time').expect('X-Cache', 'MISS')
    } finally {
      await close()
      await cache.close()
    }
  })
})

describe('npm run demo', function () {
  this.timeout(60_000)
  it('should print MISS → HIT → 304 → invalidate → MISS and exit 0', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/demo.ts'], { cwd: process.cwd() })
    const lines = stdout.split('\n').filter((l) => l.startsWith('GET') || l.startsWith('POST'))
    expect(lines.map((l) => /X-Cache: (\w+)/.exec(l)?.[1])).to.deep.equal(['MISS', 'HIT', 'HIT', 'BYPASS', 'MISS'])
    expect(lines[2]).to.match(/\s304\s/)
  })
})
