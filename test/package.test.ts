/** The packed tarball (npm pack) loads from CommonJS and from ESM, with types, and without ioredis or memjs. */
import { expect } from 'chai'
import { execFileSync } from 'node:child_process'
import { mkdirSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import path from 'node:path'

const root = process.cwd()
// Inside the repository, so the tarball's dependencies resolve from its node_modules.
const dir = path.join(root, '.tmp', 'pack-test')
// Children run as a user's would: without the test runner's loader options (tsx), and with the
// system npm, not one a dependency installed into node_modules/.bin (http-cache-tests pulls npm 6).
const env = {
  ...process.env,
  NODE_OPTIONS: '',
  PATH: (process.env.PATH ?? '').split(path.delimiter).filter((p) => !p.includes(`node_modules${path.sep}.bin`)).join(path.delimiter),
}

describe('npm pack', function () {
  this.timeout(120_000)
  let installed: string

  before(() => {
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    try {
      execFileSync('npm', ['pack', '--pack-destination', dir, '--silent'], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] })
    } catch (error) {
      const { stderr, stdout } = error as { stderr?: Buffer; stdout?: Buffer }
      throw new Error(`npm pack failed (${(error as Error).message}):\n${String(stdout ?? '').slice(-2000)}\n${String(stderr ?? '').slice(-4000)}`)
    }
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))
    if (tarball === undefined) throw new Error('npm pack produced no tarball')
    installed = path.join(dir, 'node_modules', 'cachet')
    mkdirSync(installed, { recursive: true })
    execFileSync('tar', ['-xzf', path.join(dir, tarball), '-C', installed, '--strip-components=1'])
  })

  after(() => rmSync(dir, { recursive: true, force: true }))

  it('should ship the ESM and CJS builds with their types, and no sources or tests', () => {
    for (const file of ['dist/index.js', 'dist/index.cjs', 'dist/index.d.ts', 'dist/index.d.cts', 'package.json', 'README.md', 'CHANGELOG.md']) {
      expect(existsSync(path.join(installed, file)), file).to.equal(true)
    }
    expect(existsSync(path.join(installed, 'src'))).to.equal(false)
    expect(existsSync(path.join(installed, 'test'))).to.equal(false)
  })

  const script = `
    const http = require('node:http')
    const names = ['responseCache', 'cacheRoute', 'invalidate', 'memoryStore', 'redisStore', 'memcachedStore', 'jsonCoder', 'msgpackCoder']
    module.exports = async function check(m) {
      for (const n of names) if (typeof m[n] !== 'function') throw new Error('missing export ' + n)
      const cache = m.responseCache({ ttl: 60 })
      let calls = 0
      const server = http.createServer((req, res) => cache(req, res, () => { calls++; res.setHeader('Content-Type', 'text/plain'); res.end('v' + calls) }))
      await new Promise((r) => server.listen(0, '127.0.0.1', r))
      const get = () => new Promise((resolve, reject) => http.get({ host: '127.0.0.1', port: server.address().port, path: '/x' }, (res) => {
        let body = ''; res.on('data', (c) => (body += c)); res.on('end', () => resolve(res.headers['x-cache'] + ' ' + body))
      }).on('error', reject))
      const out = [await get(), await get()]
      server.close(); await cache.close()
      const loaded = Object.keys(require.cache || {}).filter((f) => /node_modules\\/(ioredis|memjs)\\//.test(f))
      return out.join(',') + (loaded.length ? ' loaded:' + loaded.length : '')
    }
  `

  it('should load with require() and cache a response', () => {
    writeFileSync(path.join(dir, 'check.cjs'), script)
    writeFileSync(path.join(dir, 'cjs.cjs'), `require('./check.cjs')(require('cachet')).then((r) => console.log(r), (e) => { console.error(e); process.exit(1) })`)
    const out = execFileSync('node', ['cjs.cjs'], { cwd: dir, env }).toString().trim()
    expect(out).to.equal('MISS v1,HIT v1')
  })

  it('should load with import and cache a response', () => {
    writeFileSync(path.join(dir, 'check.cjs'), script)
    writeFileSync(path.join(dir, 'esm.mjs'), `import * as m from 'cachet'\nimport check from './check.cjs'\nconsole.log(await check(m))`)
    const out = execFileSync('node', ['esm.mjs'], { cwd: dir, env }).toString().trim()
    expect(out).to.equal('MISS v1,HIT v1')
  })

  it('should type-check a TypeScript consumer against the shipped declarations', () => {
    writeFileSync(
      path.join(dir, 'consumer.ts'),
      `import { responseCache, cacheRoute, memoryStore, type ResponseCache } from 'cachet'\n` +
        `const cache: ResponseCache = responseCache({ store: memoryStore({ maxEntries: 10 }), ttl: '5m' })\n` +
        `const route = cacheRoute('30s')\nvoid route\nvoid cache.stats().hits\n`,
    )
    const tsc = path.join(root, 'node_modules', '.bin', 'tsc')
    execFileSync(tsc, ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--skipLibCheck', '--types', 'node', '--typeRoots', path.join(root, 'node_modules', '@types'), 'consumer.ts'], { cwd: dir, env })
  })
})
