/**
 * Security regressions, one named test each: cache poisoning and deception, parameter cloaking,
 * a GET body, Set-Cookie replay, Authorization and Vary: Cookie / Authorization leaks, and
 * method-override headers. Run on every store: none of them may ever serve one user's response
 * to another.
 */
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { expect } from 'chai'
import express from 'express'
import request from 'supertest'
import { responseCache, type ResponseCache } from '../../src/middleware.js'
import type { CacheOptions } from '../../src/options.js'
import { STORE_NAMES, openStore, type ReliabilityStore } from '../reliability/stores.js'

interface Site {
  agent: ReturnType<typeof request>
  cache: ResponseCache
  /** Handler runs so far. */
  calls: () => number
  close(): Promise<void>
}

/** Express 5: [before] → cache → routes, on one loopback server (one Host for every request). */
async function site(
  opened: ReliabilityStore,
  routes: (app: express.Express, count: () => void) => void,
  options: Omit<CacheOptions, 'store'> = {},
  before?: (app: express.Express) => void,
): Promise<Site> {
  let calls = 0
  const cache = responseCache({ ...options, store: opened.store })
  const app = express()
  before?.(app)
  app.use(cache)
  routes(app, () => calls++)
  const server = http.createServer(app)
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  void (server.address() as AddressInfo).port
  return {
    agent: request(server),
    cache,
    calls: () => calls,
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await Promise.resolve(cache.clear()).catch(() => undefined)
    },
  }
}

for (const storeName of STORE_NAMES) {
  describe(`security regressions (on the ${storeName} store)`, function () {
    this.timeout(20_000)
    let opened: ReliabilityStore
    const open: Site[] = []
    const made: Site[] = []
    const make: typeof site = async (...args) => {
      const s = await site(...args)
      open.push(s)
      made.push(s)
      return s
    }

    before(async function () {
      this.timeout(30_000)
      opened = await openStore(storeName)
    })
    afterEach(async () => {
      await Promise.all(open.splice(0).map((s) => s.close()))
    })
    after(async () => {
      // The sites share one store: their caches close (leaving the process's open caches) only
      // once no test uses the store any more.
      await Promise.all(made.splice(0).map((s) => s.cache.close().catch(() => undefined)))
      await opened.dispose()
    })

    describe('cache poisoning through a reflected unkeyed header (X-Forwarded-Host)', () => {
      const reflectHostname = (app: express.Express, count: () => void) =>
        app.get('/p', (req, res) => {
          count()
          res.set('Cache-Control', 'public, max-age=60').send(`<script src="//${req.hostname}/app.js"></script>`)
        })

      it('should never serve evil.test to a plain request when Express trusts the proxy (the header is keyed)', async () => {
        const s = await make(opened, reflectHostname, {}, (app) => app.set('trust proxy', true))
        const poisoned = await s.agent.get('/p').set('X-Forwarded-Host', 'evil.test').expect(200)
        expect(poisoned.text).to.contain('evil.test')
        const plain = await s.agent.get('/p').expect(200)
        expect(plain.text).to.not.contain('evil.test')
        expect(plain.headers['x-cache']).to.equal('MISS')
        // A load balancer that always sends the same X-Forwarded-Host keeps its hit rate.
        await s.agent.get('/p').set('X-Forwarded-Host', 'www.test').expect('X-Cache', 'MISS')
        await s.agent.get('/p').set('X-Forwarded-Host', 'www.test').expect('X-Cache', 'HIT')
      })

      it('should never serve evil.test to a plain request when Express does not trust the proxy', async () => {
        const s = await make(opened, reflectHostname)
        await s.agent.get('/p').set('X-Forwarded-Host', 'evil.test').expect(200)
        const plain = await s.agent.get('/p').expect(200)
        expect(plain.text).to.not.contain('evil.test')
      })

      it('should never serve a response that reflected the raw X-Forwarded-Host header to a request without it', async () => {
        // An app that reads the header itself, whatever `trust proxy` says (item 57a).
        const s = await make(opened, (app, count) =>
          app.get('/p', (req, res) => {
            count()
            res.set('Cache-Control', 'public, max-age=60').send(`<link href="//${req.get('x-forwarded-host') ?? req.get('host')}/a.css">`)
          }),
        )
        await s.agent.get('/p').set('X-Forwarded-Host', 'evil.test').expect(200)
        const plain = await s.agent.get('/p').expect(200)
        expect(plain.text).to.not.contain('evil.test')
      })
    })

    describe('a GET with a body (fat GET)', () => {
      it('should bypass the cache and store nothing for a GET that carries a JSON body', async () => {
        const s = await make(
          opened,
          (app, count) =>
            app.get('/p', (req, res) => {
              count()
              res.set('Cache-Control', 'public, max-age=60').send(`q=${JSON.stringify(req.body ?? null)}`)
            }),
          {},
          (app) => app.use(express.json()),
        )
        const fat = await s.agent.get('/p').set('Content-Type', 'application/json').send('{"q":"evil"}').expect(200)
        expect(fat.headers['x-cache']).to.equal('BYPASS')
        expect(fat.text).to.contain('evil')
        const plain = await s.agent.get('/p').expect(200)
        expect(plain.text).to.not.contain('evil')
        expect(plain.headers['x-cache']).to.equal('MISS')
        expect(s.calls()).to.equal(2)
      })
    })

    describe('parameter cloaking with ";"', () => {
      it('should never let /p?a=1;a=2 and /p?a=1 share an entry', async () => {
        const s = await make(opened, (app, count) =>
          app.get('/p', (req, res) => {
            count()
            res.set('Cache-Control', 'public, max-age=60').send(`a=${JSON.stringify(req.query.a)} url=${req.originalUrl}`)
          }),
        )
        const cloaked = await s.agent.get('/p?a=1;a=2').expect(200)
        const plain = await s.agent.get('/p?a=1').expect(200)
        expect(plain.headers['x-cache']).to.equal('MISS')
        expect(plain.text).to.equal('a="1" url=/p?a=1')
        expect(cloaked.text).to.equal('a="1;a=2" url=/p?a=1;a=2')
        // Each is then served its own entry.
        expect((await s.agent.get('/p?a=1;a=2').expect('X-Cache', 'HIT')).text).to.equal(cloaked.text)
        expect((await s.agent.get('/p?a=1').expect('X-Cache', 'HIT')).text).to.equal(plain.text)
        // The other order of the cloaked pair is another request too.
        expect((await s.agent.get('/p?a=2;a=1').expect(200)).text).to.equal('a="2;a=1" url=/p?a=2;a=1')
        expect(s.calls()).to.equal(3)
      })
    })

    describe('cache deception (/account/x.css answered private)', () => {
      it('should never store a private response, even under a static-looking path and a global ttl', async () => {
        const s = await make(
          opened,
          (app, count) =>
            // The app ignores the suffix and answers the account page (the deception set-up).
            app.get('/account/{*rest}', (req, res) => {
              count()
              res.set('Cache-Control', 'private, max-age=60').send(`account of ${req.get('cookie') ?? 'nobody'}`)
            }),
          { ttl: '5m' },
        )
        await s.agent.get('/account/x.css').set('Cookie', 'sid=victim').expect(200, 'account of sid=victim')
        const attacker = await s.agent.get('/account/x.css').expect(200)
        expect(attacker.text).to.equal('account of nobody')
        expect(attacker.headers['x-cache']).to.not.equal('HIT')
        expect(s.calls()).to.equal(2)
      })
    })

    describe('Set-Cookie replay', () => {
      const cookieRoute = (app: express.Express, count: () => void) =>
        app.get('/login', (req, res) => {
          count()
          res
            .set('Cache-Control', 'public, max-age=60')
            .cookie('sid', `session-${req.get('x-user')}`)
            .send('welcome')
        })

      it('should not store a response with Set-Cookie, so every user gets their own cookie', async () => {
        const s = await make(opened, cookieRoute)
        const a = await s.agent.get('/login').set('X-User', 'alice').expect(200)
        const b = await s.agent.get('/login').set('X-User', 'bob').expect(200)
        expect(a.headers['set-cookie']?.[0]).to.match(/^sid=session-alice/)
        expect(b.headers['set-cookie']?.[0]).to.match(/^sid=session-bob/)
        expect(b.headers['x-cache']).to.equal('MISS')
      })

      it('should never replay the cookie when storeSetCookie allows storing the response', async () => {
        const s = await make(opened, cookieRoute, { storeSetCookie: true })
        await s.agent.get('/login').set('X-User', 'alice').expect(200)
        const hit = await s.agent.get('/login').set('X-User', 'bob').expect(200)
        if (hit.headers['x-cache'] === 'HIT') expect(hit.headers['set-cookie']).to.equal(undefined)
        else expect(hit.headers['set-cookie']?.[0]).to.match(/^sid=session-bob/)
      })
    })

    describe('an Authorization leak', () => {
      it("should never serve A's response to B or to an anonymous request (cache mounted before auth)", async () => {
        const s = await make(opened, (app, count) =>
          app.get('/me', (req, res) => {
            count()
            res.set('Cache-Control', 'max-age=60').send(`profile of ${req.get('authorization') ?? 'anonymous'}`)
          }),
        )
        const a = await s.agent.get('/me').set('Authorization', 'Bearer A').expect(200, 'profile of Bearer A')
        expect(a.headers['x-cache']).to.equal('BYPASS')
        await s.agent.get('/me').set('Authorization', 'Bearer B').expect(200, 'profile of Bearer B')
        const anonymous = await s.agent.get('/me').expect(200)
        expect(anonymous.text).to.equal('profile of anonymous')
        expect(s.calls()).to.equal(3)
      })

      it("should never serve A's response to others with a global ttl either", async () => {
        const s = await make(
          opened,
          (app, count) =>
            app.get('/me', (req, res) => {
              count()
              res.send(`profile of ${req.get('authorization') ?? 'anonymous'}`)
            }),
          { ttl: '5m' },
        )
        await s.agent.get('/me').set('Authorization', 'Bearer A').expect(200, 'profile of Bearer A')
        await s.agent.get('/me').set('Authorization', 'Bearer B').expect(200, 'profile of Bearer B')
        await s.agent.get('/me').expect(200, 'profile of anonymous')
        expect(s.calls()).to.equal(3)
      })
    })

    describe('a Vary: Cookie / Vary: Authorization leak', () => {
      for (const field of ['Cookie', 'Authorization'] as const) {
        for (const size of ['short', 'long (hashed in the key)'] as const) {
          it(`should keep Vary: ${field} responses apart per ${field} value (${size} values)`, async () => {
            const value = (who: string) => (field === 'Cookie' ? 'sid=' : 'Bearer ') + who + (size === 'short' ? '' : '-' + 'x'.repeat(400))
            const s = await make(opened, (app, count) =>
              app.get('/dash', (req, res) => {
                count()
                const who = (req.get(field) ?? 'nobody').split('-')[0]
                res.set('Cache-Control', 'public, max-age=60').set('Vary', field).send(`dashboard of ${who}`)
              }),
            )
            const a = await s.agent.get('/dash').set(field, value('alice')).expect(200)
            expect(a.text).to.contain('alice')
            const b = await s.agent.get('/dash').set(field, value('bob')).expect(200)
            expect(b.text).to.contain('bob').and.not.contain('alice')
            const none = await s.agent.get('/dash').expect(200)
            expect(none.text).to.not.contain('alice')
            // Alice's own variant is still served to her (the cache works, it only keeps users apart).
            const again = await s.agent.get('/dash').set(field, value('alice')).expect(200)
            expect(again.text).to.contain('alice')
            expect(again.headers['x-cache']).to.equal('HIT')
          })
        }
      }
    })

    describe('method-override headers', () => {
      for (const header of ['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override', 'X-Original-URL', 'X-Rewrite-URL']) {
        it(`should bypass the cache for a GET carrying ${header}`, async () => {
          const s = await make(opened, (app, count) =>
            app.get('/r', (req, res) => {
              count()
              res.set('Cache-Control', 'public, max-age=60').send(`call ${s.calls()} ${req.get(header) ? 'overridden' : 'plain'}`)
            }),
          )
          await s.agent.get('/r').expect('X-Cache', 'MISS')
          const overridden = await s.agent
            .get('/r')
            .set(header, header.endsWith('URL') ? '/admin' : 'DELETE')
            .expect(200)
          expect(overridden.headers['x-cache']).to.equal('BYPASS')
          expect(overridden.text).to.contain('overridden')
          // And it stored nothing over the plain entry.
          expect((await s.agent.get('/r').expect('X-Cache', 'HIT')).text).to.contain('plain')
          expect(s.calls()).to.equal(2)
        })
      }
    })
  })
}
