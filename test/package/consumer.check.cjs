// Runtime check of the installed package, shared by consumer.cjs and consumer.mjs: every export
// is there, a response is cached, and url/servers stores fail at construction without their peer.
const http = require('node:http')

const names = [
  'responseCache', 'cacheRoute', 'invalidate', 'memoryStore', 'redisStore', 'memcachedStore', 'jsonCoder',
  'msgpackCoder', 'CorruptEntryError', 'StoreTimeoutError', 'StoreUnavailableError', 'UnsupportedPatternError',
]

/** The message a construction throws, or 'constructed' (the store is closed again at once). */
async function construct(make) {
  let store
  try {
    store = make()
  } catch (error) {
    return error.message
  }
  await store.close()
  return 'constructed'
}

module.exports = async function check(m) {
  const missingExports = names.filter((name) => typeof m[name] !== 'function')
  const cache = m.responseCache({ ttl: 60 })
  let calls = 0
  const server = http.createServer((req, res) =>
    cache(req, res, () => {
      calls++
      res.setHeader('Content-Type', 'text/plain')
      res.end('v' + calls)
    }),
  )
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const get = () =>
    new Promise((resolve, reject) =>
      http
        .get({ host: '127.0.0.1', port: server.address().port, path: '/x' }, (res) => {
          let body = ''
          res.on('data', (chunk) => (body += chunk))
          res.on('end', () => resolve(res.headers['x-cache'] + ' ' + body))
        })
        .on('error', reject),
    )
  const responses = [await get(), await get()]
  server.close()
  await cache.close()
  const loadedPeers = Object.keys(require.cache).filter((file) => /node_modules[\\/](ioredis|memjs)[\\/]/.test(file)).length
  return {
    missingExports,
    responses,
    loadedPeers,
    redisFromUrl: await construct(() => m.redisStore({ url: 'redis://127.0.0.1:1' })),
    memcachedFromServers: await construct(() => m.memcachedStore({ servers: '127.0.0.1:1' })),
  }
}
