/** dynamodbStore() on dynalite: the Store contract, the key design (Query, never Scan), locks, HTTP, and a paused, killed or slow server. */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { BatchGetItemCommand, DeleteTableCommand, DescribeTableCommand, DynamoDBClient, QueryCommand, ScanCommand } from '@aws-sdk/client-dynamodb'
import { dynamodbStore, namespaceOf } from '../../src/stores/dynamodb.js'
import { createApp, type Post } from '../../examples/dynamodb/app.js'
import { runStoreContract } from '../support/store-contract.js'
import { cachingResumes, expectSharedBlog } from '../support/shared-store.js'
import { closeAll, landed, setup, storeFactories, type Harness } from '../support/app.js'
import { startProxy, type FaultProxy } from '../support/proxy.js'
import { getDynalite, startDynalite, type DynamoServer } from '../support/servers.js'

const CC60 = { 'Cache-Control': 'max-age=60' }
const memory = storeFactories.find((factory) => factory.name === 'memory')!
const unique = () => `t${randomUUID().slice(0, 8)}:`
const bytes = (text: string) => Buffer.from(text)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A client for a local endpoint: fixed region and credentials, one attempt per call. */
function clientFor(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({ endpoint, region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' }, maxAttempts: 1 })
}

/** A client whose sent commands are recorded by name. */
function recording(client: DynamoDBClient) {
  const sent: string[] = []
  return {
    sent,
    client: {
      send(command: object) {
        sent.push(command.constructor.name)
        return client.send(command as never)
      },
    },
  }
}

/**
 * A client on which BatchGetItem processes only the first `limit` keys it is asked for and answers
 * the others as UnprocessedKeys, as DynamoDB does when throttled; every sent command is recorded.
 */
function stingy(client: DynamoDBClient, limit: number) {
  const sent: { name: string; keys?: number }[] = []
  return {
    sent,
    client: {
      async send(command: object) {
        if (!(command instanceof BatchGetItemCommand)) {
          sent.push({ name: command.constructor.name })
          return client.send(command as never)
        }
        const [[table, request]] = Object.entries(command.input.RequestItems!)
        const keys = request.Keys!
        sent.push({ name: 'BatchGetItemCommand', keys: keys.length })
        const reply =
          limit === 0
            ? { Responses: { [table]: [] } }
            : await client.send(new BatchGetItemCommand({ RequestItems: { [table]: { ...request, Keys: keys.slice(0, limit) } } }))
        return { ...reply, UnprocessedKeys: keys.length > limit ? { [table]: { ...request, Keys: keys.slice(limit) } } : {} }
      },
    },
  }
}

describe('dynamodbStore()', function () {
  let server: DynamoServer
  let client: DynamoDBClient

  /** Resolves once DescribeTable no longer finds `table`. */
  async function waitForNoTable(table: string): Promise<void> {
    const deadline = Date.now() + 5000
    for (;;) {
      try {
        await client.send(new DescribeTableCommand({ TableName: table }))
      } catch (error) {
        if ((error as Error).name === 'ResourceNotFoundException') return
        throw error
      }
      if (Date.now() > deadline) throw new Error(`${table} still there after 5 s`)
      await sleep(20)
    }
  }

  before(async function () {
    this.timeout(30_000)
    server = await getDynalite()
    client = clientFor(server.endpoint)
  })
  after(function () {
    client?.destroy()
  })
  afterEach(closeAll)

  describe('on dynalite', function () {
    runStoreContract(
      'dynamodbStore({ client, table })',
      () => {
        let t = Date.now()
        const store = dynamodbStore({ client, table: 'contract' }, { prefix: unique(), now: () => t })
        return {
          store,
          advance: (ms: number) => void (t += ms),
          async cleanup() {
            await store.clear()
          },
        }
      },
      { patterns: 'namespaces', getMany: true, keepsRecords: true, setIf: true },
      { rejectsNonBytes: ['set', 'setIf'] },
    )
  })

  describe('key design', function () {
    it('should put a key in the partition of its first segment', function () {
      assert.deepEqual(['posts:42:GET?a=1#h', 'posts?x', 'posts#v', 'GET', ':GET'].map(namespaceOf), ['posts', 'posts', 'posts', 'GET', ''])
    })

    it('should delete posts:* with Query and BatchWriteItem only, never Scan, and leave other partitions', async function () {
      const prefix = unique()
      const store = dynamodbStore({ client, table: 'design' }, { prefix })
      for (let i = 0; i < 30; i++) await store.set(`posts:${i}:GET`, bytes('x'), 60_000)
      await store.set('users:1:GET', bytes('x'), 60_000)
      const spy = recording(client)
      const watched = dynamodbStore({ client: spy.client, table: 'design' }, { prefix })
      assert.equal(await watched.deleteMatching('posts:*'), 30)
      assert.deepEqual([...new Set(spy.sent)].sort(), ['BatchWriteItemCommand', 'DescribeTableCommand', 'QueryCommand'])
      assert.notEqual(await store.get('users:1:GET'), undefined)
      spy.sent.length = 0
      assert.equal(await watched.clear(), 1)
      assert.equal(spy.sent.includes('ScanCommand'), false)
    })

    it('should split a value over several items and read it back whole, and delete its parts with it', async function () {
      const store = dynamodbStore({ client, table: 'design' }, { prefix: unique(), chunkSize: 1000 })
      const value = Buffer.alloc(4500, 7)
      await store.set('big:GET', value, 60_000)
      assert.equal(Buffer.from((await store.get('big:GET'))!).equals(value), true)
      assert.equal(await store.delete('big:GET'), true)
      const left = await client.send(
        new QueryCommand({
          TableName: 'design',
          KeyConditionExpression: 'pk = :pk',
          ExpressionAttributeValues: { ':pk': { S: `${store.prefix.length}:${store.prefix}big` } },
        }),
      )
      assert.equal(left.Count, 0)
    })

    it('should create the table with pk/sk string keys when missing', async function () {
      const table = `created-${randomUUID().slice(0, 8)}`
      const store = dynamodbStore({ client, table })
      await store.set('k', bytes('v'), 60_000)
      const { Table } = await client.send(new DescribeTableCommand({ TableName: table }))
      assert.deepEqual(Table?.KeySchema, [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ])
      // Nothing in the table but the entry and its partition's marker.
      assert.equal((await client.send(new ScanCommand({ TableName: table }))).Count, 2)
    })

    it('should create the table again, in the same call, when it has gone (a restarted emulator)', async function () {
      const table = `gone-${randomUUID().slice(0, 8)}`
      const store = dynamodbStore({ client, table })
      await store.set('k', bytes('v'), 60_000)
      await client.send(new DeleteTableCommand({ TableName: table }))
      await waitForNoTable(table)
      assert.equal(await store.get('k'), undefined)
      await store.set('k', bytes('again'), 60_000)
      assert.equal(Buffer.from((await store.get('k'))!).toString(), 'again')
    })
  })

  describe('expiry and locks', function () {
    it('should answer a miss for an item past its expiry that DynamoDB has not deleted yet', async function () {
      let t = Date.now()
      const store = dynamodbStore({ client, table: 'design' }, { prefix: unique(), now: () => t })
      await store.set('k:GET', bytes('v'), 1000)
      t += 1001
      assert.equal(await store.get('k:GET'), undefined)
      await store.clear()
    })

    it('should hand a lock to one holder, release it by token, and take it over once expired', async function () {
      let t = Date.now()
      const prefix = unique()
      const one = dynamodbStore({ client, table: 'design' }, { prefix, now: () => t })
      const two = dynamodbStore({ client: clientFor(server.endpoint), table: 'design' }, { prefix, now: () => t })
      const token = await one.lock('posts:GET', 60_000)
      assert.equal(typeof token, 'string')
      assert.equal(await two.lock('posts:GET', 60_000), null)
      assert.equal(await two.unlock('posts:GET', 'other'), false)
      assert.equal(await one.unlock('posts:GET', token!), true)
      assert.notEqual(await two.lock('short', 1000), null)
      assert.equal(await one.lock('short', 1000), null)
      t += 1001
      assert.notEqual(await one.lock('short', 1000), null)
    })
  })

  describe('getMany()', function () {
    it('should read 3 keys with one BatchGetItem, answering an expired key and a missing one as missing', async function () {
      let t = Date.now()
      const prefix = unique()
      const store = dynamodbStore({ client, table: 'design' }, { prefix, now: () => t })
      await store.set('a:GET', bytes('A'), 60_000)
      await store.set('old:GET', bytes('old'), 1000)
      t += 1001
      const spy = stingy(client, Infinity)
      const watched = dynamodbStore({ client: spy.client, table: 'design' }, { prefix, now: () => t, createTable: false })
      const found = await watched.getMany(['a:GET', 'old:GET', 'none:GET'])
      assert.deepEqual(spy.sent, [{ name: 'BatchGetItemCommand', keys: 3 }])
      assert.deepEqual(
        found.map((value) => value && Buffer.from(value).toString()),
        ['A', undefined, undefined],
      )
      spy.sent.length = 0
      assert.deepEqual(await watched.getMany([]), [])
      assert.deepEqual(spy.sent, [], 'nothing sent for no keys')
      // A key asked for twice is asked for once (BatchGetItem refuses duplicates).
      const twice = await watched.getMany(['a:GET', 'none:GET', 'a:GET'])
      assert.deepEqual(spy.sent, [{ name: 'BatchGetItemCommand', keys: 2 }])
      assert.deepEqual(
        twice.map((value) => value && Buffer.from(value).toString()),
        ['A', undefined, 'A'],
      )
      await store.clear()
    })

    it('should read a value split over several items whole, and ask for at most 100 keys per request', async function () {
      const prefix = unique()
      const store = dynamodbStore({ client, table: 'design' }, { prefix, chunkSize: 1000 })
      const value = Buffer.alloc(4500, 7)
      await store.set('big:GET', value, 60_000)
      const spy = stingy(client, Infinity)
      const watched = dynamodbStore({ client: spy.client, table: 'design' }, { prefix, chunkSize: 1000, createTable: false })
      const keys = [...Array.from({ length: 150 }, (_, i) => `k${i}:GET`), 'big:GET']
      const found = await watched.getMany(keys)
      assert.equal(found.length, 151)
      assert.equal(
        found.slice(0, 150).every((v) => v === undefined),
        true,
      )
      assert.equal(Buffer.from(found[150]!).equals(value), true)
      assert.deepEqual(spy.sent.map((command) => command.keys ?? command.name).sort(), [100, 51, 'QueryCommand'].sort())
      await store.clear()
    })

    it('should ask again for the keys left unprocessed, 3 requests at most, then read what is left with GetItem', async function () {
      const prefix = unique()
      const store = dynamodbStore({ client, table: 'design' }, { prefix })
      for (const key of ['a:GET', 'b:GET', 'c:GET']) await store.set(key, bytes(key), 60_000)
      const keys = ['a:GET', 'b:GET', 'none:GET', 'c:GET']
      const expected = [bytes('a:GET'), bytes('b:GET'), undefined, bytes('c:GET')]

      const slow = stingy(client, 2)
      const found = await dynamodbStore({ client: slow.client, table: 'design' }, { prefix, createTable: false }).getMany(keys)
      assert.deepEqual(
        found.map((v) => v && Buffer.from(v)),
        expected,
      )
      assert.deepEqual(slow.sent, [
        { name: 'BatchGetItemCommand', keys: 4 },
        { name: 'BatchGetItemCommand', keys: 2 },
      ])

      const stuck = stingy(client, 0)
      const left = await dynamodbStore({ client: stuck.client, table: 'design' }, { prefix, createTable: false }).getMany(keys)
      assert.deepEqual(
        left.map((v) => v && Buffer.from(v)),
        expected,
      )
      assert.deepEqual(
        stuck.sent.map((command) => command.name),
        ['BatchGetItemCommand', 'BatchGetItemCommand', 'BatchGetItemCommand', 'GetItemCommand', 'GetItemCommand', 'GetItemCommand', 'GetItemCommand'],
      )
      await store.clear()
    })
  })

  describe('setIf()', function () {
    it('should set only over what it expects across two clients, an item past its expiry counting as nothing', async function () {
      let t = Date.now()
      const prefix = unique()
      const one = dynamodbStore({ client, table: 'design' }, { prefix, now: () => t })
      const two = dynamodbStore({ client: clientFor(server.endpoint), table: 'design' }, { prefix, now: () => t })
      assert.equal(await one.setIf('mark', null, bytes('1'), 1000), true)
      assert.equal(Buffer.from((await two.setIf('mark', null, bytes('2'), 1000)) as Uint8Array).toString(), '1')
      t += 1001
      assert.equal(await two.setIf('mark', bytes('1'), bytes('2'), 1000), null)
      assert.equal(await two.setIf('mark', null, bytes('2'), 60_000), true)
      assert.equal(await one.setIf('mark', bytes('2'), new Uint8Array(0), 60_000), true)
      assert.equal((await two.get('mark'))?.length, 0)
      assert.equal(await one.clear(), 1, 'clear() finds the partition of a key stored by setIf')
    })

    it('should store with a conditional PutItem beside its partition marker, and read with one GetItem when its check fails', async function () {
      const prefix = unique()
      const store = dynamodbStore({ client, table: 'design' }, { prefix })
      await store.set('other', bytes('x'), 60_000) // the table is there
      const spy = recording(client)
      const watched = dynamodbStore({ client: spy.client, table: 'design' }, { prefix, createTable: false })
      assert.equal(await watched.setIf('mark', null, bytes('1'), 60_000), true)
      assert.deepEqual(spy.sent, ['PutItemCommand', 'PutItemCommand'])
      spy.sent.length = 0
      assert.equal(Buffer.from((await watched.setIf('mark', bytes('0'), bytes('2'), 60_000)) as Uint8Array).toString(), '1')
      assert.deepEqual(spy.sent, ['PutItemCommand', 'PutItemCommand', 'GetItemCommand'])
      await store.clear()
    })

    it('should compare a value split over several items whole, and leave no parts of a value it did not store', async function () {
      const prefix = unique()
      const store = dynamodbStore({ client, table: 'design' }, { prefix, chunkSize: 4 })
      // A store that splits at another size, as another process may.
      const wide = dynamodbStore({ client, table: 'design' }, { prefix })
      const first = bytes('0123456789')
      assert.equal(await store.setIf('big:GET', null, first, 60_000), true)
      assert.deepEqual(Buffer.from((await wide.get('big:GET'))!), first)
      assert.deepEqual(Buffer.from((await store.setIf('big:GET', bytes('012345678x'), bytes('abcdefghi'), 60_000)) as Uint8Array), first)
      assert.equal(await wide.setIf('big:GET', first, bytes('abcdefghi'), 60_000), true)
      assert.equal(await store.setIf('big:GET', bytes('abcdefghi'), bytes('ABCDEFGHIJ'), 60_000), true)
      assert.deepEqual(Buffer.from((await wide.get('big:GET'))!), bytes('ABCDEFGHIJ'))
      const items = await client.send(
        new QueryCommand({
          TableName: 'design',
          KeyConditionExpression: 'pk = :pk',
          ExpressionAttributeValues: { ':pk': { S: `${prefix.length}:${prefix}big` } },
        }),
      )
      // The entry and its two other parts; the parts of first are left to the TTL, as set() leaves them.
      assert.equal(items.Count, 3 + 2)
      await store.clear()
    })
  })

  describe('options', function () {
    it('should name the option and show the value of a bad one', function () {
      assert.throws(() => dynamodbStore({ client: {} as never, table: 'x' }), /option "client" must be a DynamoDBClient, got an object \(Object\)/)
      assert.throws(() => dynamodbStore({ client, table: 'a b' }), /option "table" must be a DynamoDB table name.*got "a b"/)
      assert.throws(() => dynamodbStore({ client, table: 'tbl' }, { chunkSize: 500_000 }), /option "chunkSize" must be an integer from 1 to 390000, got 500000/)
      assert.throws(() => dynamodbStore({ client, table: 'tbl', consistentRead: 1 as never }), /option "consistentRead" must be a boolean, got 1/)
    })
  })

  describe('behind responseCache', function () {
    it('should answer MISS then HIT, and MISS again after invalidate(posts:*)', async function () {
      const store = dynamodbStore({ client, table: 'http' }, { prefix: unique() })
      const h = await setup(memory, { store, realTime: true })
      h.O.headers = CC60
      await h.get('/posts').expect(200).expect('X-Cache', 'MISS')
      await landed(h, 'posts:GET')
      await h.get('/posts').expect(200, 'v1').expect('X-Cache', 'HIT')
      assert.equal(await h.cache.invalidate('posts:*'), 1)
      await h.get('/posts').expect(200, 'v2').expect('X-Cache', 'MISS')
      assert.equal(h.O.calls, 2)
    })
  })

  describe('faults (storeTimeout 200 ms)', function () {
    this.timeout(60_000)
    let own: DynamoServer
    let proxy: FaultProxy
    let viaProxy: DynamoDBClient

    before(async function () {
      own = await startDynalite()
      proxy = await startProxy(own.port)
      viaProxy = clientFor(`http://127.0.0.1:${proxy.port}`)
    })
    after(async function () {
      viaProxy?.destroy()
      proxy?.latency(0)
      await proxy?.close()
      await own?.stop()
    })

    for (const fault of ['paused (SIGSTOP)', 'killed', 'slow (1 s per packet)'] as const) {
      it(`should serve requests uncached while the server is ${fault}, then cache again`, async function () {
        const errors: Error[] = []
        const store = dynamodbStore({ client: viaProxy, table: 'faults' }, { prefix: unique() })
        const h = await setup(memory, {
          store,
          realTime: true,
          options: { storeTimeout: '200ms', onError: (error) => void errors.push(error) },
        })
        h.O.headers = CC60
        await h.get('/warm').expect('X-Cache', 'MISS')
        await landed(h, 'warm:GET')
        if (fault === 'paused (SIGSTOP)') await own.pause()
        else if (fault === 'killed') await own.kill()
        else proxy.latency(1000)
        try {
          // Each answered by the origin; a store call that hung would hold the request for good.
          const before = h.O.calls
          for (let i = 0; i < 5; i++) await h.get(`/fault/${i}`).timeout(5000).expect(200)
          assert.equal(h.O.calls, before + 5)
          assert.ok(errors.length > 0, 'the store errors reach onError')
        } finally {
          if (fault === 'paused (SIGSTOP)') own.resume()
          else if (fault === 'killed')
            await own.restart() // an empty dynalite: the store creates its table again
          else proxy.latency(0)
        }
        await cachingResumes(h)
      })
    }
  })

  describe('examples/dynamodb', function () {
    it('should share one table between two processes: a HIT in the other, and a POST invalidating both', async function () {
      const prefix = unique()
      const posts: Post[] = [{ id: 1, title: 'Hello' }]
      const one = createApp(dynamodbStore({ client, table: 'example' }, { prefix }), posts)
      const two = createApp(dynamodbStore({ client: clientFor(server.endpoint), table: 'example' }, { prefix }), posts)
      await expectSharedBlog(one, two)
    })
  })
})
