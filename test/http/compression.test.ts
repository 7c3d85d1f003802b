/** responseCache({ compress }): one compressed entry per response, served as br, gzip or identity per Accept-Encoding, on memory, Redis and Memcached. */
import diagnostics from 'node:diagnostics_channel'
import http from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { brotliDecompressSync, gunzipSync } from 'node:zlib'
import { expect } from 'chai'
import compression from 'compression'
import express from 'express'
import { responseCache, type ResponseCache } from '../../src/middleware.js'
import { hostPart, storageKey } from '../../src/key.js'
import { jsonCoder } from '../../src/coders/json.js'
import { CorruptEntryError } from '../../src/entry.js'
import { STORE_WRITE_CHANNEL, type StoreWriteMessage } from '../../src/diagnostics.js'
import { kEntryStore, type MemoryStore } from '../../src/stores/memory.js'
import { responseEntry } from '../support/entries.js'
import { closeAll, eventually, rawRequest, rawValues, setup, storeFactories, type Harness, type RawResponse } from '../support/app.js'

const STORES = storeFactories.filter((s) => s.name === 'memory' || s.name === 'redis' || s.name === 'memcached')

/** A compressible JSON body of about 6 KB. */
const JSON_BODY = JSON.stringify(Array.from({ length: 80 }, (_, i) => ({ id: i, name: `item ${i}`, tags: ['alpha', 'beta', 'gamma'], price: i * 1.25 })))
const JSON_HEADERS = { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'max-age=60', ETag: '"v1"' }

const one = (res: RawResponse, name: string) => {
  const values = rawValues(res.rawHeaders, name)
  expect(values.length, `${name} lines`).to.be.at.most(1)
  return values[0]
}

/** The body as the client reads it, after undoing the Content-Encoding it came with. */
function decoded(res: RawResponse): string {
  const coding = one(res, 'content-encoding')
  if (coding === 'br') return brotliDecompressSync(res.body).toString()
  if (coding === 'gzip') return gunzipSync(res.body).toString()
  expect(coding).to.equal(undefined)
  return res.body.toString()
}

/** Resolves once the store confirmed `n` response writes (remote stores land them a little later). */
const writes = (cache: ResponseCache, n: number) => eventually(() => cache.stats().stores >= n, `${n} stored responses`)

const varyNames = (res: RawResponse) =>
  rawValues(res.rawHeaders, 'vary')
    .join(',')
    .split(',')
    .map((v) => v.trim().toLowerCase())
    .filter((v) => v !== '')

for (const s of STORES) {
  describe(`compressed storage (on ${s.name})`, function () {
    this.timeout(20_000)
    afterEach(closeAll)

    async function stored(compress: 'br' | 'gzip' = 'br'): Promise<Harness> {
      const h = await setup(s, { options: { compress } })
      h.O.headers = JSON_HEADERS
      h.O.script = () => ({ body: JSON_BODY })
      const miss = await rawRequest(h.port, '/data', { 'Accept-Encoding': 'br, gzip' })
      expect(one(miss, 'x-cache')).to.equal('MISS')
      expect(miss.body.toString()).to.equal(JSON_BODY)
      await writes(h.cache, 1)
      return h
    }

    it('should serve br, gzip and identity clients from one stored entry, each decoding to the original bytes', async () => {
      const h = await stored('br')
      const br = await rawRequest(h.port, '/data', { 'Accept-Encoding': 'gzip, deflate, br' })
      const gzip = await rawRequest(h.port, '/data', { 'Accept-Encoding': 'gzip' })
      const identity = await rawRequest(h.port, '/data')
      expect(h.O.calls).to.equal(1)
      for (const [res, coding] of [
        [br, 'br'],
        [gzip, 'gzip'],
        [identity, undefined],
      ] as const) {
        expect(one(res, 'x-cache')).to.equal('HIT')
        expect(one(res, 'content-encoding')).to.equal(coding)
        expect(one(res, 'content-length')).to.equal(String(res.body.length))
        expect(one(res, 'content-type')).to.equal('application/json; charset=utf-8')
        expect(varyNames(res)).to.deep.equal(['accept-encoding'])
        expect(decoded(res)).to.equal(JSON_BODY)
      }
      expect(br.body.length).to.be.below(JSON_BODY.length / 4)
      expect(gzip.body.length).to.be.below(JSON_BODY.length / 4)
    })

    it('should store the gzip form with compress: gzip and still answer br and identity clients', async () => {
      const h = await stored('gzip')
      const gzip = await rawRequest(h.port, '/data', { 'Accept-Encoding': 'br, gzip' })
      const br = await rawRequest(h.port, '/data', { 'Accept-Encoding': 'br' })
      const identity = await rawRequest(h.port, '/data', { 'Accept-Encoding': 'identity' })
      expect(one(gzip, 'content-encoding')).to.equal('gzip')
      expect(one(br, 'content-encoding')).to.equal('br')
      expect(one(identity, 'content-encoding')).to.equal(undefined)
      for (const res of [gzip, br, identity]) expect(decoded(res)).to.equal(JSON_BODY)
      expect(h.O.calls).to.equal(1)
    })

    it('should give each encoding its own ETag and answer If-None-Match with 304 only for the tag of the form served', async () => {
      const h = await stored('br')
      const br = await rawRequest(h.port, '/data', { 'Accept-Encoding': 'br' })
      const gzip = await rawRequest(h.port, '/data', { 'Accept-Encoding': 'gzip' })
      const identity = await rawRequest(h.port, '/data')
      expect(one(identity, 'etag')).to.equal('"v1"')
      expect(one(br, 'etag')).to.equal('"v1-br"')
      expect(one(gzip, 'etag')).to.equal('"v1-gzip"')
      for (const [tag, ae] of [
        ['"v1-br"', 'br'],
        ['"v1-gzip"', 'gzip'],
        ['"v1"', 'identity'],
      ]) {
        const hit = await rawRequest(h.port, '/data', { 'Accept-Encoding': ae, 'If-None-Match': tag })
        expect(hit.status, `${tag} with ${ae}`).to.equal(304)
        expect(one(hit, 'etag')).to.equal(tag)
        expect(varyNames(hit)).to.deep.equal(['accept-encoding'])
        expect(hit.body.length).to.equal(0)
      }
      // The identity tag does not match the br form, nor the br tag the identity form.
      const crossed = await rawRequest(h.port, '/data', { 'Accept-Encoding': 'br', 'If-None-Match': '"v1"' })
      expect(crossed.status).to.equal(200)
      expect(one(crossed, 'content-encoding')).to.equal('br')
      const plain = await rawRequest(h.port, '/data', { 'If-None-Match': '"v1-br"' })
      expect(plain.status).to.equal(200)
      expect(decoded(plain)).to.equal(JSON_BODY)
      expect(h.O.calls).to.equal(1)
    })

    it('should give HEAD the Content-Length of the form a GET would send', async () => {
      const h = await stored('br')
      for (const ae of ['br', 'gzip', 'identity']) {
        const get = await rawRequest(h.port, '/data', { 'Accept-Encoding': ae })
        const head = await rawRequest(h.port, '/data', { 'Accept-Encoding': ae }, 'HEAD')
        expect(head.status).to.equal(200)
        expect(head.body.length).to.equal(0)
        expect(one(head, 'content-length'), ae).to.equal(String(get.body.length))
        expect(one(head, 'content-encoding')).to.equal(one(get, 'content-encoding'))
        expect(one(head, 'etag')).to.equal(one(get, 'etag'))
      }
      expect(h.O.calls).to.equal(1)
    })

    it('should keep the compressed bytes in the store, not the original', async () => {
      const h = await stored('br')
      if (s.name === 'memory') {
        // Entries held as objects: the size the store counts is the stored body's, plus headers and key.
        expect(h.cache.stats().bytes).to.be.below(JSON_BODY.length / 2)
        return
      }
      const bytes = await h.store.get(storageKey('data:GET', hostPart(h.host)))
      expect(bytes, 'stored bytes').to.be.instanceOf(Uint8Array)
      // JSON coder: base64 of the body plus the header list; the original alone is 6 KB.
      expect(bytes!.byteLength).to.be.below(JSON_BODY.length / 2)
    })

    if (s.name !== 'memory') {
      it('should report the compressed size on the cachet:store:write channel', async () => {
        const sizes: number[] = []
        const listen = (message: unknown) => {
          const m = message as StoreWriteMessage
          if (m.outcome === 'landed' && m.bytes !== undefined) sizes.push(m.bytes)
        }
        diagnostics.subscribe(STORE_WRITE_CHANNEL, listen)
        try {
          await stored('br')
        } finally {
          diagnostics.unsubscribe(STORE_WRITE_CHANNEL, listen)
        }
        expect(sizes.length).to.equal(1)
        expect(sizes[0]).to.be.below(JSON_BODY.length / 2)
      })
    }

    it('should give coalesced waiters with different Accept-Encoding their own form of one response', async () => {
      const h = await setup(s, { options: { compress: 'br' } })
      h.O.headers = JSON_HEADERS
      h.O.script = () => ({ body: JSON_BODY, delay: 150 })
      const codings = ['br', 'gzip', 'identity', 'br, gzip', 'gzip;q=1, br;q=0']
      const all = await Promise.all(codings.map((ae) => rawRequest(h.port, '/slow', { 'Accept-Encoding': ae })))
      expect(h.O.calls).to.equal(1)
      for (const res of all) expect(decoded(res)).to.equal(JSON_BODY)
      const hits = all.filter((res) => one(res, 'x-cache') === 'HIT')
      expect(hits.length).to.equal(codings.length - 1)
      for (const res of hits) {
        expect(varyNames(res)).to.deep.equal(['accept-encoding'])
        expect(one(res, 'content-length')).to.equal(String(res.body.length))
      }
      const byAe = (ae: string) => all[codings.indexOf(ae)]
      if (one(byAe('gzip'), 'x-cache') === 'HIT') expect(one(byAe('gzip'), 'content-encoding')).to.equal('gzip')
      if (one(byAe('gzip;q=1, br;q=0'), 'x-cache') === 'HIT') expect(one(byAe('gzip;q=1, br;q=0'), 'content-encoding')).to.equal('gzip')
    })
  })
}

describe('compressed storage: what is compressed', function () {
  this.timeout(20_000)
  afterEach(closeAll)
  const memory = storeFactories[0]

  async function firstHit(headers: Record<string, string>, body: string | Buffer = JSON_BODY, options = {}) {
    const h = await setup(memory, { options: { compress: 'br', ...options } })
    h.O.headers = headers
    h.O.script = () => ({ body })
    const miss = await rawRequest(h.port, '/x', { 'Accept-Encoding': 'br, gzip' })
    await writes(h.cache, 1)
    const hit = await rawRequest(h.port, '/x', { 'Accept-Encoding': 'br, gzip' })
    expect(one(hit, 'x-cache')).to.equal('HIT')
    expect(h.O.calls).to.equal(1)
    return { h, miss, hit }
  }

  it('should be off by default: no Content-Encoding and no Vary added', async () => {
    const h = await setup(memory)
    h.O.headers = JSON_HEADERS
    h.O.script = () => ({ body: JSON_BODY })
    await rawRequest(h.port, '/x', { 'Accept-Encoding': 'br' })
    const hit = await rawRequest(h.port, '/x', { 'Accept-Encoding': 'br' })
    expect(one(hit, 'x-cache')).to.equal('HIT')
    expect(one(hit, 'content-encoding')).to.equal(undefined)
    expect(rawValues(hit.rawHeaders, 'vary')).to.deep.equal([])
    expect(hit.body.toString()).to.equal(JSON_BODY)
  })

  it('should announce Vary: Accept-Encoding on the miss that stores a compressed entry, and send it as the app made it', async () => {
    const { miss } = await firstHit(JSON_HEADERS)
    expect(one(miss, 'x-cache')).to.equal('MISS')
    expect(one(miss, 'content-encoding')).to.equal(undefined)
    expect(varyNames(miss)).to.deep.equal(['accept-encoding'])
    expect(miss.body.toString()).to.equal(JSON_BODY)
  })

  it('should merge Accept-Encoding into the app’s Vary, once', async () => {
    const { h, hit } = await firstHit({ ...JSON_HEADERS, Vary: 'Accept-Language' })
    expect(one(hit, 'content-encoding')).to.equal('br')
    expect(varyNames(hit)).to.deep.equal(['accept-language', 'accept-encoding'])
    // The key still varies on Accept-Language only: another Accept-Encoding is the same entry.
    const gzip = await rawRequest(h.port, '/x', { 'Accept-Encoding': 'gzip' })
    expect(one(gzip, 'x-cache')).to.equal('HIT')
    expect(varyNames(gzip)).to.deep.equal(['accept-language', 'accept-encoding'])
    const other = await rawRequest(h.port, '/x', { 'Accept-Encoding': 'gzip', 'Accept-Language': 'fr' })
    expect(one(other, 'x-cache')).to.equal('MISS')
  })

  it('should leave a response with Cache-Control: no-transform as the app sent it (RFC 9110 §7.7)', async () => {
    const { hit } = await firstHit({ ...JSON_HEADERS, 'Cache-Control': 'max-age=60, no-transform' })
    expect(one(hit, 'content-encoding')).to.equal(undefined)
    expect(rawValues(hit.rawHeaders, 'vary')).to.deep.equal([])
    expect(one(hit, 'etag')).to.equal('"v1"')
    expect(hit.body.toString()).to.equal(JSON_BODY)
  })

  it('should leave bodies under compressMinBytes, and types that do not compress, uncompressed', async () => {
    const small = await firstHit(JSON_HEADERS, JSON_BODY.slice(0, 500))
    expect(one(small.hit, 'content-encoding')).to.equal(undefined)
    expect(small.hit.body.toString()).to.equal(JSON_BODY.slice(0, 500))
    const lowered = await firstHit(JSON_HEADERS, JSON_BODY.slice(0, 500), { compressMinBytes: 100 })
    expect(one(lowered.hit, 'content-encoding')).to.equal('br')
    const png = await firstHit({ ...JSON_HEADERS, 'Content-Type': 'image/png' }, Buffer.from(JSON_BODY))
    expect(one(png.hit, 'content-encoding')).to.equal(undefined)
    const svg = await firstHit({ ...JSON_HEADERS, 'Content-Type': 'image/svg+xml' }, `<svg>${JSON_BODY}</svg>`)
    expect(one(svg.hit, 'content-encoding')).to.equal('br')
  })

  it('should send the identity form to a request with Cache-Control: no-transform (RFC 9111 §5.2.1.6)', async () => {
    const { h } = await firstHit(JSON_HEADERS)
    const res = await rawRequest(h.port, '/x', { 'Accept-Encoding': 'br, gzip', 'Cache-Control': 'no-transform' })
    expect(one(res, 'x-cache')).to.equal('HIT')
    expect(one(res, 'content-encoding')).to.equal(undefined)
    expect(one(res, 'etag')).to.equal('"v1"')
    expect(res.body.toString()).to.equal(JSON_BODY)
  })

  it('should leave a response carrying a digest of its bytes uncompressed', async () => {
    const { hit } = await firstHit({ ...JSON_HEADERS, 'Repr-Digest': 'sha-256=:AAAA:' })
    expect(one(hit, 'content-encoding')).to.equal(undefined)
    expect(one(hit, 'repr-digest')).to.equal('sha-256=:AAAA:')
  })

  it('should keep a status other than 200 uncompressed', async () => {
    const h = await setup(memory, { options: { compress: 'br' } })
    h.O.status = 404
    h.O.headers = JSON_HEADERS
    h.O.script = () => ({ body: JSON_BODY })
    await rawRequest(h.port, '/gone', { 'Accept-Encoding': 'br' })
    const hit = await rawRequest(h.port, '/gone', { 'Accept-Encoding': 'br' })
    expect(hit.status).to.equal(404)
    expect(one(hit, 'x-cache')).to.equal('HIT')
    expect(one(hit, 'content-encoding')).to.equal(undefined)
  })

  it('should store a response the app varies on Accept-Encoding as today, keyed by it', async () => {
    const h = await setup(memory, { options: { compress: 'br' } })
    h.O.headers = { ...JSON_HEADERS, Vary: 'Accept-Encoding' }
    h.O.script = () => ({ body: JSON_BODY })
    await rawRequest(h.port, '/v', { 'Accept-Encoding': 'br' })
    const hit = await rawRequest(h.port, '/v', { 'Accept-Encoding': 'br' })
    expect(one(hit, 'x-cache')).to.equal('HIT')
    expect(one(hit, 'content-encoding')).to.equal(undefined)
    expect(hit.body.toString()).to.equal(JSON_BODY)
    const other = await rawRequest(h.port, '/v', { 'Accept-Encoding': 'gzip' })
    expect(one(other, 'x-cache')).to.equal('MISS')
  })

  it('should negotiate q-values, *, x-gzip and identity;q=0', async () => {
    const h = await setup(memory, { options: { compress: 'br' } })
    h.O.headers = JSON_HEADERS
    h.O.script = () => ({ body: JSON_BODY })
    await rawRequest(h.port, '/q')
    await writes(h.cache, 1)
    const cases: [string, string | undefined][] = [
      ['br;q=0, gzip', 'gzip'],
      ['gzip;q=0.5, br;q=0.1', 'br'],
      ['BR;q=1.0', 'br'],
      ['*', 'br'],
      ['*;q=0, gzip', 'gzip'],
      ['x-gzip', 'gzip'],
      ['deflate', undefined],
      ['', undefined],
      ['br;q=0, gzip;q=0', undefined],
      ['identity;q=0, gzip;q=0.2', 'gzip'],
      ['identity;q=0, br;q=0, gzip;q=0', undefined],
      ['gzip;q=0.1, identity;q=0.9', undefined],
      ['br;q=bogus, gzip', 'gzip'],
    ]
    for (const [ae, coding] of cases) {
      const res = await rawRequest(h.port, '/q', { 'Accept-Encoding': ae })
      expect(one(res, 'content-encoding'), `Accept-Encoding: ${ae}`).to.equal(coding)
      expect(decoded(res)).to.equal(JSON_BODY)
    }
    expect(h.O.calls).to.equal(1)
  })

  it('should answer a Range request from the identity form, If-Range against the identity ETag', async () => {
    const { h } = await firstHit(JSON_HEADERS)
    const part = await rawRequest(h.port, '/x', { 'Accept-Encoding': 'br, gzip', Range: 'bytes=10-29' })
    expect(part.status).to.equal(206)
    expect(one(part, 'content-encoding')).to.equal(undefined)
    expect(one(part, 'content-range')).to.equal(`bytes 10-29/${JSON_BODY.length}`)
    expect(one(part, 'content-length')).to.equal('20')
    expect(one(part, 'etag')).to.equal('"v1"')
    expect(varyNames(part)).to.deep.equal(['accept-encoding'])
    expect(part.body.toString()).to.equal(JSON_BODY.slice(10, 30))
    const matching = await rawRequest(h.port, '/x', { 'Accept-Encoding': 'br', Range: 'bytes=0-4', 'If-Range': '"v1"' })
    expect(matching.status).to.equal(206)
    expect(matching.body.toString()).to.equal(JSON_BODY.slice(0, 5))
    // The br form's tag names another representation: the whole response, negotiated.
    const other = await rawRequest(h.port, '/x', { 'Accept-Encoding': 'br', Range: 'bytes=0-4', 'If-Range': '"v1-br"' })
    expect(other.status).to.equal(200)
    expect(one(other, 'content-encoding')).to.equal('br')
    expect(decoded(other)).to.equal(JSON_BODY)
    const outside = await rawRequest(h.port, '/x', { 'Accept-Encoding': 'br', Range: `bytes=${JSON_BODY.length + 5}-` })
    expect(outside.status).to.equal(416)
    expect(one(outside, 'content-range')).to.equal(`bytes */${JSON_BODY.length}`)
    expect(h.O.calls).to.equal(1)
  })

  it('should serve the stale entry in the client’s encoding (stale-while-revalidate)', async () => {
    const h = await setup(memory, { options: { compress: 'br' } })
    h.O.headers = { ...JSON_HEADERS, 'Cache-Control': 'max-age=1, stale-while-revalidate=60' }
    h.O.script = () => ({ body: JSON_BODY })
    await rawRequest(h.port, '/s')
    await writes(h.cache, 1)
    h.clock.advance(2000)
    const stale = await rawRequest(h.port, '/s', { 'Accept-Encoding': 'gzip' })
    expect(one(stale, 'x-cache')).to.equal('STALE')
    expect(one(stale, 'content-encoding')).to.equal('gzip')
    expect(decoded(stale)).to.equal(JSON_BODY)
    await eventually(() => h.O.calls === 2, 'the background refresh')
  })

  it('should replay a revalidated entry (the app’s 304) in the client’s encoding, and revalidate with the identity ETag', async () => {
    const h = await setup(memory, { options: { compress: 'br' } })
    h.O.headers = { ...JSON_HEADERS, 'Cache-Control': 'max-age=1' }
    h.O.script = (n, req) => (n === 1 ? { body: JSON_BODY } : req.headers['if-none-match'] === '"v1"' ? { status: 304 } : { body: 'changed' })
    await rawRequest(h.port, '/r')
    await writes(h.cache, 1)
    h.clock.advance(2000)
    const revalidated = await rawRequest(h.port, '/r', { 'Accept-Encoding': 'br' })
    expect(one(revalidated, 'x-cache')).to.equal('REVALIDATED')
    expect(h.O.seen[1].headers['if-none-match']).to.equal('"v1"')
    expect(one(revalidated, 'content-encoding')).to.equal('br')
    expect(one(revalidated, 'etag')).to.equal('"v1-br"')
    expect(one(revalidated, 'content-length')).to.equal(String(revalidated.body.length))
    expect(decoded(revalidated)).to.equal(JSON_BODY)
    const identity = await rawRequest(h.port, '/r')
    expect(one(identity, 'x-cache')).to.equal('HIT')
    expect(identity.body.toString()).to.equal(JSON_BODY)
  })

  it('should decode the stored body when a revalidation’s 304 adds Cache-Control: no-transform', async () => {
    const h = await setup(memory, { options: { compress: 'br' } })
    h.O.headers = { ...JSON_HEADERS, 'Cache-Control': 'max-age=1' }
    h.O.script = (n) => (n === 1 ? { body: JSON_BODY } : { status: 304, headers: { ETag: '"v1"', 'Cache-Control': 'max-age=60, no-transform' } })
    await rawRequest(h.port, '/t')
    await writes(h.cache, 1)
    h.clock.advance(2000)
    const revalidated = await rawRequest(h.port, '/t', { 'Accept-Encoding': 'br' })
    expect(one(revalidated, 'x-cache')).to.equal('REVALIDATED')
    const hit = await rawRequest(h.port, '/t', { 'Accept-Encoding': 'br' })
    expect(one(hit, 'x-cache')).to.equal('HIT')
    expect(one(hit, 'content-encoding')).to.equal(undefined)
    expect(one(hit, 'etag')).to.equal('"v1"')
    expect(hit.body.toString()).to.equal(JSON_BODY)
    expect(h.O.calls).to.equal(2)
  })

  it('should store a response compressed by compression() inside the cache as it is (Content-Encoding set)', async () => {
    const h = await setup(memory, {
      options: { compress: 'br' },
      routes: (app, O) => {
        app.use(compression({ threshold: 0 }))
        app.use(O.handle)
      },
    })
    h.O.headers = JSON_HEADERS
    h.O.script = () => ({ body: JSON_BODY })
    const miss = await rawRequest(h.port, '/c', { 'Accept-Encoding': 'gzip' })
    const hit = await rawRequest(h.port, '/c', { 'Accept-Encoding': 'gzip' })
    expect(one(hit, 'x-cache')).to.equal('HIT')
    expect(one(hit, 'content-encoding')).to.equal('gzip')
    expect(Buffer.compare(hit.body, miss.body)).to.equal(0)
    expect(gunzipSync(hit.body).toString()).to.equal(JSON_BODY)
    // compression() varies on Accept-Encoding: another value is its own variant, as without compress.
    const identity = await rawRequest(h.port, '/c', { 'Accept-Encoding': 'identity' })
    expect(one(identity, 'x-cache')).to.equal('MISS')
    expect(identity.body.toString()).to.equal(JSON_BODY)
  })

  it('should work under compression() mounted before the cache: no double encoding, gzip left to it or to cachet', async () => {
    const h = await setup(memory, {
      options: { compress: 'br' },
      before: (app) => void app.use(compression({ threshold: 0 })),
    })
    h.O.headers = JSON_HEADERS
    h.O.script = () => ({ body: JSON_BODY })
    await rawRequest(h.port, '/b', { 'Accept-Encoding': 'gzip' })
    await writes(h.cache, 1)
    for (const ae of ['gzip', 'br', 'br, gzip', 'identity']) {
      const hit = await rawRequest(h.port, '/b', { 'Accept-Encoding': ae })
      expect(one(hit, 'x-cache')).to.equal('HIT')
      expect(decoded(hit), ae).to.equal(JSON_BODY)
      expect(varyNames(hit)).to.deep.equal(['accept-encoding'])
    }
    expect(h.O.calls).to.equal(1)
  })

  it('should answer compressed hits from the front door, before the app', async () => {
    const cache = responseCache({ compress: 'br' })
    let calls = 0
    const app = express()
    app.use((_req, _res, next) => {
      calls++
      next()
    })
    app.use(cache)
    app.get('/f', (_req, res) => {
      res.set(JSON_HEADERS).send(JSON_BODY)
    })
    const server = http.createServer(cache.serve(app))
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const port = (server.address() as AddressInfo).port
    try {
      await rawRequest(port, '/f')
      await writes(cache, 1)
      for (const ae of ['br', 'gzip', 'identity']) {
        const hit = await rawRequest(port, '/f', { 'Accept-Encoding': ae })
        expect(one(hit, 'x-cache')).to.equal('HIT')
        expect(one(hit, 'content-encoding')).to.equal(ae === 'identity' ? undefined : ae)
        expect(decoded(hit)).to.equal(JSON_BODY)
        const notModified = await rawRequest(port, '/f', { 'Accept-Encoding': ae, 'If-None-Match': one(hit, 'etag')! })
        expect(notModified.status).to.equal(304)
      }
      expect(calls).to.equal(1)
    } finally {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
      await cache.close()
    }
  })

  it('should keep weak ETags weak and give each form a weak tag of its own', async () => {
    const { h, hit } = await firstHit({ 'Content-Type': 'text/html', 'Cache-Control': 'max-age=60' })
    const identity = await rawRequest(h.port, '/x')
    const tag = one(identity, 'etag')!
    expect(tag).to.match(/^W\/".+"$/)
    expect(one(hit, 'etag')).to.equal(tag.slice(0, -1) + '-br"')
    const notModified = await rawRequest(h.port, '/x', { 'Accept-Encoding': 'br', 'If-None-Match': one(hit, 'etag')! })
    expect(notModified.status).to.equal(304)
  })
})

describe('compressed storage: stored bytes that do not decode', function () {
  this.timeout(20_000)
  afterEach(closeAll)

  it('should report a compressed entry that does not decode and answer from the app (Redis, bytes written by another hand)', async () => {
    const redis = storeFactories.find((f) => f.name === 'redis')!
    const errors: Error[] = []
    const h = await setup(redis, { options: { compress: 'br', onError: (error) => void errors.push(error) } })
    h.O.headers = JSON_HEADERS
    h.O.script = () => ({ body: JSON_BODY })
    const entry = responseEntry('', ['Content-Type', 'application/json', 'ETag', '"v0"'])
    entry.body = Buffer.from('not brotli at all, not brotli at all')
    entry.encoding = 'br'
    await h.created!.putRaw!(storageKey('bad:GET', hostPart(h.host)), jsonCoder().encode(entry), 60_000)
    const res = await rawRequest(h.port, '/bad')
    expect(res.status).to.equal(200)
    expect(res.body.toString()).to.equal(JSON_BODY)
    expect(h.O.calls).to.equal(1)
    expect(errors.some((e) => e instanceof CorruptEntryError)).to.equal(true)
  })

  it('should not end the process when stale-if-error on a slow origin meets such an entry: the app’s late answer goes out', async () => {
    const memory = storeFactories[0]
    const errors: Error[] = []
    const h = await setup(memory, { options: { compress: 'br', lockTimeout: '100ms', onError: (error) => void errors.push(error) } })
    h.O.headers = JSON_HEADERS
    h.O.script = () => ({ body: 'late answer', delay: 300 })
    const entry = responseEntry('', ['Content-Type', 'application/json', 'ETag', '"v0"'], h.clock.now() - 5000)
    entry.body = Buffer.from('not brotli at all, not brotli at all')
    entry.encoding = 'br'
    entry.lifetime = 1000
    entry.staleIfError = 600_000
    ;(h.store as MemoryStore)[kEntryStore].setEntry(storageKey('slow:GET', hostPart(h.host)), entry, 600_000)
    const res = await rawRequest(h.port, '/slow')
    expect(res.status).to.equal(200)
    expect(res.body.toString()).to.equal('late answer')
    expect(errors.some((e) => e instanceof CorruptEntryError)).to.equal(true)
  })
})

describe('compressed storage: a stale entry that does not decode', function () {
  this.timeout(20_000)
  afterEach(closeAll)

  it('should go to the app as a plain miss instead of revalidating it (no failure inside the app’s res.end())', async () => {
    const memory = storeFactories[0]
    const errors: Error[] = []
    const h = await setup(memory, { options: { compress: 'br', onError: (error) => void errors.push(error) } })
    h.O.headers = JSON_HEADERS
    // An app that would answer 304 to the stale entry's validators, from a callback.
    h.O.script = (_n, req) => (req.headers['if-none-match'] === '"v0"' ? { status: 304, delay: 20 } : { body: JSON_BODY, delay: 20 })
    const entry = responseEntry('', ['Content-Type', 'application/json', 'ETag', '"v0"'], h.clock.now() - 5000)
    entry.body = Buffer.from('not brotli at all, not brotli at all')
    entry.encoding = 'br'
    entry.lifetime = 1000
    ;(h.store as MemoryStore)[kEntryStore].setEntry(storageKey('old:GET', hostPart(h.host)), entry, 600_000)
    const res = await rawRequest(h.port, '/old')
    expect(res.status).to.equal(200)
    expect(res.body.toString()).to.equal(JSON_BODY)
    expect(h.O.seen[0].headers['if-none-match']).to.equal(undefined)
    expect(errors.some((e) => e instanceof CorruptEntryError)).to.equal(true)
  })
})

describe('compressed storage: options', () => {
  it('should reject a bad compress or compressMinBytes with a TypeError naming the option and the value', () => {
    expect(() => responseCache({ compress: 'deflate' as 'br' })).to.throw(TypeError, /option "compress".*'br', 'gzip' or false.*"deflate"/)
    expect(() => responseCache({ compress: true as unknown as 'br' })).to.throw(TypeError, /option "compress".*true/)
    expect(() => responseCache({ compressMinBytes: -1 })).to.throw(TypeError, /option "compressMinBytes".*-1/)
    expect(() => responseCache({ compressMinBytes: 1.5 })).to.throw(TypeError, /option "compressMinBytes".*1\.5/)
    expect(() => responseCache({ compress: 'gzip', compressMinBytes: 0 })).not.to.throw()
    expect(() => responseCache({ compress: false })).not.to.throw()
  })
})
