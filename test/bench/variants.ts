/** The catalogue of benchmark variants shared by the runner and the server child. */

export type Framework = 'node' | 'express5' | 'express4' | 'connect'
export type StoreName = 'memory' | 'redis' | 'memcached' | 'sqlite' | 'postgres' | 'dynamodb'
export type CoderName = 'json' | 'msgpack'
export type Kind = 'raw' | 'ceiling' | 'send' | 'uncached' | 'apicache' | 'route-cache' | 'cachet'

export interface Variant {
  name: string
  kind: Kind
  framework: Framework
  store?: StoreName
  coder?: CoderName
  /** apicache's Redis client: the node-redis v3 client it was written for, or ioredis with a `connected` shim. */
  apicacheClient?: 'redis3' | 'ioredis-shim'
  /** One line for the report. */
  description: string
  /** A cached variant: the origin handler should not run during the measurement. */
  cached: boolean
  /** Part of the `--quick` smoke run. */
  quick?: boolean
  /** Served through cache.serve(app): hits answered before the framework. */
  frontDoor?: boolean
  /** The remote store with its local tier on (`local: {}`). */
  local?: boolean
  /** responseCache({ compress }): compressed storage. */
  compress?: 'br' | 'gzip'
  /** The Accept-Encoding every request of the measurement sends (none when unset). */
  acceptEncoding?: string
  /** The origin tags its responses (`Surrogate-Key: items item:<id>`): a tagged HIT checks the tags' invalidation marks. */
  tags?: boolean
}

const baselines: Variant[] = [
  { name: 'node-raw', kind: 'raw', framework: 'node', cached: false, quick: true, description: 'node:http writing a precomputed buffer (the Node limit)' },
  {
    name: 'express5-ceiling',
    kind: 'ceiling',
    framework: 'express5',
    cached: false,
    quick: true,
    description: 'Express 5, first middleware ends the response with a precomputed buffer (the Express ceiling)',
  },
  { name: 'express5-send', kind: 'send', framework: 'express5', cached: false, description: 'Express 5 route, res.send(precomputed string), no delay' },
  {
    name: 'express5-uncached',
    kind: 'uncached',
    framework: 'express5',
    cached: false,
    description: 'Express 5 route, 5 ms simulated database call then res.json(precomputed object)',
  },
]

const peers: Variant[] = [
  {
    name: 'apicache-memory',
    kind: 'apicache',
    framework: 'express5',
    store: 'memory',
    cached: true,
    quick: true,
    description: 'apicache 1.6.3 HIT, memory store, Express 5',
  },
  {
    name: 'apicache-redis',
    kind: 'apicache',
    framework: 'express5',
    store: 'redis',
    apicacheClient: 'redis3',
    cached: true,
    description: 'apicache 1.6.3 HIT, Redis via the node-redis v3 client it expects, Express 5',
  },
  {
    name: 'apicache-redis-ioredis-shim',
    kind: 'apicache',
    framework: 'express5',
    store: 'redis',
    apicacheClient: 'ioredis-shim',
    cached: true,
    description: 'apicache 1.6.3 HIT, Redis via ioredis plus a `connected` getter (proxy for the node-redis v3 client)',
  },
  {
    name: 'route-cache',
    kind: 'route-cache',
    framework: 'express5',
    store: 'memory',
    cached: true,
    description: 'route-cache 0.7 HIT (in-process LRU), Express 5',
  },
]

const cachetVariants: Variant[] = []
for (const framework of ['express5', 'express4', 'connect'] as const) {
  for (const store of ['memory', 'redis', 'memcached'] as const) {
    for (const coder of ['json', 'msgpack'] as const) {
      const on = framework === 'connect' ? 'connect + node:http' : framework === 'express5' ? 'Express 5' : 'Express 4'
      cachetVariants.push({
        name: `cachet-${framework}-${store}-${coder}`,
        kind: 'cachet',
        framework,
        store,
        coder,
        cached: true,
        quick: framework === 'express5' && coder === 'json' && store !== 'memcached',
        description: `cachet HIT, ${store} store, ${coder}Coder(), ${on}`,
      })
    }
  }
}

for (const framework of ['express5', 'express4'] as const) {
  cachetVariants.push({
    name: `cachet-${framework}-frontdoor-memory-json`,
    kind: 'cachet',
    framework,
    store: 'memory',
    coder: 'json',
    cached: true,
    frontDoor: true,
    quick: framework === 'express5',
    description: `cachet HIT through cache.serve(app), memory store, jsonCoder(), ${framework === 'express5' ? 'Express 5' : 'Express 4'}`,
  })
}
// The local tier (README "Stores"): hits answered from process memory, no round trip.
for (const store of ['redis', 'memcached'] as const) {
  for (const coder of ['json', 'msgpack'] as const) {
    cachetVariants.push({
      name: `cachet-express5-${store}-local-${coder}`,
      kind: 'cachet',
      framework: 'express5',
      store,
      coder,
      cached: true,
      local: true,
      description: `cachet HIT, ${store} store with local: {}, ${coder}Coder(), Express 5`,
    })
  }
}

// Compressed storage (README "Compressed storage"): the same JSON stored compressed, for a client
// taking the stored coding, one taking only the other, and one sending no Accept-Encoding.
// Today's storage for the first client is cachet-express5-<store>-json-ae.
for (const store of ['memory', 'redis', 'memcached'] as const) {
  const clients = [
    ['ae', 'br, gzip', 'Accept-Encoding: br, gzip'],
    ['identity', undefined, 'no Accept-Encoding'],
    ['gzipclient', 'gzip', 'Accept-Encoding: gzip'],
  ] as const
  const configs = [undefined, 'br', 'gzip'] as const
  for (const compress of configs) {
    for (const [suffix, acceptEncoding, client] of clients) {
      // Today's storage sends the same bytes to every client: one row is enough; gzip storage for a br/gzip client only.
      if (compress === undefined && suffix !== 'ae') continue
      if (compress === 'gzip' && suffix !== 'ae') continue
      if (store !== 'memory' && suffix === 'gzipclient') continue
      cachetVariants.push({
        name: `cachet-express5-${store}-json-${compress === undefined ? '' : `compress-${compress}-`}${suffix}`,
        kind: 'cachet',
        framework: 'express5',
        store,
        coder: 'json',
        cached: true,
        compress,
        acceptEncoding,
        description: `cachet HIT, ${store} store, jsonCoder(), ${compress === undefined ? 'stored as sent' : `compress: '${compress}'`}, ${client}, Express 5`,
      })
    }
  }
}

// Tagged responses (README "Keys and invalidation"): the same HIT as the untagged variant of the store, in the same run.
for (const store of ['memory', 'redis', 'memcached'] as const) {
  cachetVariants.push({
    name: `cachet-express5-${store}-tags-json`,
    kind: 'cachet',
    framework: 'express5',
    store,
    coder: 'json',
    cached: true,
    tags: true,
    quick: store !== 'memcached',
    description: `cachet HIT of a tagged response (Surrogate-Key: items item:<id>), ${store} store, jsonCoder(), Express 5`,
  })
}
// The same with the local tier: the tags' marks (absent ones included) are answered from process memory.
for (const store of ['redis', 'memcached'] as const) {
  cachetVariants.push({
    name: `cachet-express5-${store}-local-tags-json`,
    kind: 'cachet',
    framework: 'express5',
    store,
    coder: 'json',
    cached: true,
    local: true,
    tags: true,
    description: `cachet HIT of a tagged response (Surrogate-Key: items item:<id>), ${store} store with local: {}, jsonCoder(), Express 5`,
  })
}

// The SQL and DynamoDB stores (README "Stores"): SQLite on a temp file, PostgreSQL and dynalite started by the runner.
for (const store of ['sqlite', 'postgres', 'dynamodb'] as const) {
  for (const coder of ['json', 'msgpack'] as const) {
    cachetVariants.push({
      name: `cachet-express5-${store}-${coder}`,
      kind: 'cachet',
      framework: 'express5',
      store,
      coder,
      cached: true,
      quick: coder === 'json',
      description: `cachet HIT, ${store}Store, ${coder}Coder(), Express 5`,
    })
  }
}

export const variants: readonly Variant[] = [...baselines, ...peers, ...cachetVariants]

export function findVariant(name: string): Variant {
  const variant = variants.find((v) => v.name === name)
  if (!variant) throw new Error(`unknown variant ${JSON.stringify(name)}; known: ${variants.map((v) => v.name).join(', ')}`)
  return variant
}

/** Exactly `bytes` bytes of JSON: a list of items plus a padding field that tops it up. */
export function makeBody(bytes: number): { object: unknown; text: string; buffer: Buffer } {
  const items: { id: number; name: string; price: number; tags: string[] }[] = []
  const base = () => JSON.stringify({ items, pad: '' }).length
  while (base() + 80 < bytes) items.push({ id: items.length + 1, name: `item ${items.length + 1}`, price: 9.99, tags: ['a', 'b'] })
  const object = { items, pad: 'x'.repeat(Math.max(0, bytes - base())) }
  const text = JSON.stringify(object)
  return { object, text, buffer: Buffer.from(text) }
}
