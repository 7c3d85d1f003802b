/**
 * The packed tarball (npm pack) as a user gets it: installed with express into consumer projects
 * outside the repository, with and without the optional peers (ioredis, memjs), loaded from
 * CommonJS and ESM, and type-checked strictly (`skipLibCheck: false`) with `moduleResolution`
 * NodeNext (ESM and CJS files) and bundler. The fixture sources are in test/package/.
 */
import { expect } from 'chai'
import { execFile } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const root = process.cwd()
const fixtures = path.join(root, 'test', 'package')
// Children run as a user's would: without the test runner's loader options (tsx), and with the
// system npm, not one a dependency installed into node_modules/.bin (http-cache-tests pulls npm 6).
const env = {
  ...process.env,
  NODE_OPTIONS: '',
  PATH: (process.env.PATH ?? '')
    .split(path.delimiter)
    .filter((p) => !p.includes(`node_modules${path.sep}.bin`))
    .join(path.delimiter),
}
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc')

/** The version of a package this repository installed: consumer installs then hit the warm npm cache. */
function installed(name: string): string {
  return JSON.parse(readFileSync(path.join(root, 'node_modules', name, 'package.json'), 'utf8')).version
}

/** Run a command; on failure, throw with its output (the default message hides it). */
async function sh(file: string, args: string[], cwd: string): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run(file, args, { cwd, env, maxBuffer: 16 * 1024 * 1024 })
  } catch (error) {
    const { stdout, stderr } = error as { stdout?: string; stderr?: string }
    throw new Error(`${path.basename(file)} ${args.join(' ')} failed in ${cwd}:\n${String(stdout ?? '').slice(-4000)}\n${String(stderr ?? '').slice(-4000)}`)
  }
}

describe('npm pack', function () {
  this.timeout(180_000)
  let work: string
  let tarball: string
  /** Consumer projects: `bare` has cachet and express only, `peers` also ioredis, memjs and @types/memjs. */
  const project = { bare: '', peers: '' }
  const configs = ['tsconfig.nodenext.json', 'tsconfig.bundler.json']
  /**
   * The type checks, started as soon as their project is installed and run side by side (each
   * checks @types/node and @types/express in full); a test awaits its own.
   */
  const typechecks = new Map<string, Promise<unknown>>()

  before(async () => {
    work = mkdtempSync(path.join(os.tmpdir(), 'cachet-pack-'))
    await sh('npm', ['pack', '--pack-destination', work, '--silent'], root)
    const file = readdirSync(work).find((f) => f.endsWith('.tgz'))
    if (file === undefined) throw new Error('npm pack produced no tarball')
    tarball = path.join(work, file)
    const common = [`express@${installed('express')}`, `@types/express@${installed('@types/express')}`, `@types/node@${installed('@types/node')}`]
    const peers = [`ioredis@${installed('ioredis')}`, `memjs@${installed('memjs')}`, `@types/memjs@${installed('@types/memjs')}`]
    // Both installs at once: most of the time goes to waiting on the registry and the cache.
    await Promise.all(
      (['bare', 'peers'] as const).map(async (name) => {
        const dir = (project[name] = path.join(work, name))
        mkdirSync(dir)
        writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `consumer-${name}`, private: true, type: 'module' }))
        const packages = name === 'bare' ? common : [...common, ...peers]
        await sh(
          'npm',
          ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--prefer-offline', '--no-package-lock', '--loglevel=error', tarball, ...packages],
          dir,
        )
        for (const file of readdirSync(fixtures)) {
          if (!/^(consumer|tsconfig)\./.test(file) && !(name === 'peers' && file.startsWith('peers.'))) continue
          copyFileSync(path.join(fixtures, file), path.join(dir, file.replace(/\.tpl$/, '')))
        }
        for (const config of configs) {
          const checked = sh(process.execPath, [tsc, '-p', name === 'bare' ? config : config.replace('tsconfig.', 'tsconfig.peers.')], dir)
          checked.catch(() => undefined) // reported by the test that awaits it
          typechecks.set(`${name} ${config}`, checked)
        }
      }),
    )
  })

  after(() => {
    if (work !== undefined) rmSync(work, { recursive: true, force: true })
  })

  it('should ship exactly the builds with their types, README, CHANGELOG, LICENSE and package.json', async () => {
    const { stdout } = await sh('tar', ['-tzf', tarball], work)
    // What the two entries share goes to chunks whose names carry a content hash.
    const shared = (file: string) =>
      file
        .replace(/^package\/dist\/types-[\w-]+\.d\.(c?)ts$/, 'package/dist/types-<hash>.d.$1ts')
        .replace(/^package\/dist\/chunk-[\w-]+\.js$/, 'package/dist/chunk-<hash>.js')
    expect([...new Set(stdout.trim().split('\n').map(shared))].sort()).to.deep.equal(
      [
        'package/CHANGELOG.md',
        'package/LICENSE',
        'package/README.md',
        'package/dist/chunk-<hash>.js',
        'package/dist/index.cjs',
        'package/dist/index.d.cts',
        'package/dist/index.d.ts',
        'package/dist/index.js',
        'package/dist/testing.cjs',
        'package/dist/testing.d.cts',
        'package/dist/testing.d.ts',
        'package/dist/testing.js',
        'package/dist/types-<hash>.d.cts',
        'package/dist/types-<hash>.d.ts',
        'package/package.json',
      ].sort(),
    )
  })

  it('should publish (dry run) without a warning other than the missing login', async () => {
    // --ignore-scripts: the build ran for npm pack already.
    const { stderr } = await sh('npm', ['publish', '--dry-run', '--ignore-scripts'], root)
    const warnings = stderr.split('\n').filter((line) => /\bwarn/i.test(line) && !/requires you to be logged in/.test(line))
    expect(warnings).to.deep.equal([])
  })

  it('should declare no install-time script a consumer would run', () => {
    const manifest = JSON.parse(readFileSync(path.join(project.bare, 'node_modules', 'cachet', 'package.json'), 'utf8'))
    for (const script of ['preinstall', 'install', 'postinstall', 'prepare']) expect(manifest.scripts ?? {}).not.to.have.property(script)
  })

  for (const name of ['bare', 'peers'] as const) {
    const missing = name === 'bare'
    describe(`when the consumer has ${missing ? 'no optional peers' : 'ioredis and memjs'} installed`, () => {
      for (const loader of ['consumer.cjs', 'consumer.mjs']) {
        it(`should load with ${loader.endsWith('cjs') ? 'require()' : 'import'}, export everything, cache a response${missing ? ', and refuse url/servers stores at construction' : ''}`, async () => {
          const { stdout } = await sh('node', [loader], project[name])
          const report = JSON.parse(stdout)
          expect(report.missingExports).to.deep.equal([])
          expect(report.responses).to.deep.equal(['MISS v1', 'HIT v1'])
          expect(report.loadedPeers).to.equal(0, 'a memory-store app loads neither ioredis nor memjs')
          if (missing) {
            expect(report.redisFromUrl).to.equal('redisStore({ url }) needs the "ioredis" package: npm install ioredis')
            expect(report.memcachedFromServers).to.equal('memcachedStore({ servers }) needs the "memjs" package: npm install memjs')
          } else {
            expect(report.redisFromUrl).to.equal('constructed')
            expect(report.memcachedFromServers).to.equal('constructed')
          }
        })
      }

      for (const config of configs) {
        it(`should type-check strictly, with skipLibCheck false, under ${config}`, async () => {
          await typechecks.get(`${name} ${config}`)
        })
      }
    })
  }
})
