/** dynamodbStore(): a Store in a DynamoDB table on @aws-sdk/client-dynamodb, with a key design that invalidates by Query, never by Scan. */
import { createHash, randomBytes } from 'node:crypto'
import { createRequire } from 'node:module'
import createDebug from 'debug'
import { assertPattern, isLiteral, RECORD_PREFIX } from '../pattern.js'
import { assertKnownOptions, describe, describeObject } from '../validate.js'
import type { Store } from '../types.js'
import { sameBytes } from './bytes.js'

const debug = createDebug('cachet:dynamodb')

/** A DynamoDB attribute value in the low-level wire shape (`{ S }`, `{ N }`, `{ B }`). */
type Attribute = { S: string } | { N: string } | { B: Uint8Array }
type Item = Record<string, Attribute>

/** The part of a `DynamoDBClient` the store uses (described here so cachet never needs the SDK's types). */
export interface DynamoClient {
  send(command: object): Promise<unknown>
}

/** Where the store's data lives: a client you own and the table to use. */
export interface DynamodbStoreConnection {
  /** A `DynamoDBClient` you created. The store never destroys it. */
  client: DynamoClient
  /** The table (created on first use when missing, unless `createTable: false`). */
  table: string
}

/** Options of `dynamodbStore()`; each may also be given in its first argument. */
export interface DynamodbStoreOptions {
  /**
   * Prepended to every partition; `clear()` and `deleteMatching()` never touch items outside it.
   * @default 'cachet:'
   */
  prefix?: string
  /**
   * Create the table on first use when missing (`pk`/`sk` strings, on-demand billing) and turn on
   * its TTL on `expires`. `false` when the table is created elsewhere (see the README).
   * @default true
   */
  createTable?: boolean
  /**
   * Strongly consistent reads. An eventually consistent read may still return an entry a moment
   * after it was invalidated or overwritten; `false` halves the read cost.
   * @default true
   */
  consistentRead?: boolean
  /**
   * Bytes of value per item; longer values are split over several items of the same partition
   * (DynamoDB items hold at most 400 KB).
   * @default 350_000
   */
  chunkSize?: number
  /**
   * Clock in epoch milliseconds: expiry is checked against it on every read, since DynamoDB's
   * TTL deletes items up to days late.
   * @default Date.now
   */
  now?: () => number
}

/** A DynamoDB-backed store. `deleteMatching` accepts only the patterns listed in its error. */
export interface DynamodbStore extends Store {
  readonly name: 'dynamodb'
  /** The prefix in use (`cachet:` unless configured). */
  readonly prefix: string
  get(key: string): Promise<Uint8Array | undefined>
  /**
   * What `get` answers for each of `keys`, in order: one `BatchGetItem` for up to 100 distinct keys
   * (none for no keys). Keys DynamoDB leaves unprocessed are asked again, up to 3 requests in all,
   * then read by `get`.
   */
  getMany(keys: readonly string[]): Promise<(Uint8Array | undefined)[]>
  set(key: string, value: Uint8Array, ttlMs: number): Promise<void>
  /**
   * Store `value` only while the key holds `expected` (`null`: nothing): a `PutItem` whose
   * `ConditionExpression` compares the item (absent or expired; or unexpired with `v` equal to
   * `expected`), and when the check fails a strongly consistent `GetItem` answering what `get`
   * would. Resolves `true` when stored, else that answer.
   */
  setIf(key: string, expected: Uint8Array | null, value: Uint8Array, ttlMs: number): Promise<true | Uint8Array | null>
  /** Resolves true when the key existed. */
  delete(key: string): Promise<boolean>
  deleteMatching(pattern: string): Promise<number>
  clear(): Promise<number>
  /** Nothing to release: the client is yours. */
  close(): Promise<void>
  /**
   * Take the lock named `key` for `ttlMs`: a conditional put (`attribute_not_exists(pk)` or
   * expired). Resolves a token, or `null` when another holder has it.
   */
  lock(key: string, ttlMs: number): Promise<string | null>
  /** Release a lock only if `token` still holds it (a conditional delete). Resolves whether it did. */
  unlock(key: string, token: string): Promise<boolean>
}

/** Table names DynamoDB accepts. */
const TABLE_NAME = /^[A-Za-z0-9_.-]{3,255}$/
/** Keys longer than this (UTF-8 bytes) are stored under a hashed form: a sort key holds 1024 bytes, a partition key 2048. */
const KEY_BYTES = 1000
/** What a hashed key keeps of the original, in bytes, before the hash. */
const HEAD_BYTES = 600
/** Prefixes longer than this are matched by their head in the key condition and in full by a filter. */
const MATCH_BYTES = 500
const HASHED = '\u0001'
const CHUNK = '\u0000'
const TABLE_READY_TIMEOUT_MS = 60_000
/** Keys one BatchGetItem may ask for. */
const BATCH_GET_KEYS = 100
/** BatchGetItem requests per batch of keys before what is left unprocessed is read by GetItem. */
const BATCH_GET_ATTEMPTS = 3

/**
 * A store in one DynamoDB table.
 *
 * ```ts
 * responseCache({ store: dynamodbStore({ client: new DynamoDBClient({}), table: 'cachet' }) })
 * ```
 *
 * **Key design.** Partition key `pk` = the prefix (with its length) and the key's first segment,
 * up to the first `:`, `?` or `#` (`posts` for `posts:42:GET?a=1`); sort key `sk` = the whole key.
 * A pattern the middleware sends (`posts:*`, `posts:42:*`, `posts:GET?*`, `posts:GET#*`) lies in
 * one partition and is a `Query` with `begins_with(sk, …)`; `*` walks a list of the store's
 * partitions kept in the table. Other patterns are refused with an Error naming them. The table
 * is never scanned. `setIf` is one conditional `PutItem`, and a consistent `GetItem` when its check fails.
 */
export function dynamodbStore(connection: DynamodbStoreConnection & DynamodbStoreOptions, options: DynamodbStoreOptions = {}): DynamodbStore {
  if (connection === null || typeof connection !== 'object') {
    throw new TypeError(`dynamodbStore expects { client, table }, got ${describe(connection)}`)
  }
  if (options === null || typeof options !== 'object') {
    throw new TypeError(`dynamodbStore options must be an object, got ${describe(options)}`)
  }
  assertKnownOptions('dynamodbStore', connection, [...DYNAMODB_OPTIONS, ...['client', 'table']])
  assertKnownOptions('dynamodbStore', options, DYNAMODB_OPTIONS)
  const merged: DynamodbStoreOptions = { ...pickOptions(connection), ...options }
  const { client, table } = connection
  if (client === null || typeof client !== 'object' || typeof (client as DynamoClient).send !== 'function') {
    throw new TypeError(`dynamodbStore option "client" must be a DynamoDBClient, got ${describeObject(client)}`)
  }
  if (typeof table !== 'string' || !TABLE_NAME.test(table)) {
    throw new TypeError(`dynamodbStore option "table" must be a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -), got ${describe(table)}`)
  }
  const prefix = merged.prefix === undefined ? 'cachet:' : merged.prefix
  if (typeof prefix !== 'string') throw new TypeError(`dynamodbStore option "prefix" must be a string, got ${describe(prefix)}`)
  const createTable = merged.createTable === undefined ? true : merged.createTable
  if (typeof createTable !== 'boolean') throw new TypeError(`dynamodbStore option "createTable" must be a boolean, got ${describe(createTable)}`)
  const consistentRead = merged.consistentRead === undefined ? true : merged.consistentRead
  if (typeof consistentRead !== 'boolean') {
    throw new TypeError(`dynamodbStore option "consistentRead" must be a boolean, got ${describe(consistentRead)}`)
  }
  const chunkSize = merged.chunkSize === undefined ? 350_000 : merged.chunkSize
  if (typeof chunkSize !== 'number' || !Number.isSafeInteger(chunkSize) || chunkSize < 1 || chunkSize > 390_000) {
    throw new TypeError(`dynamodbStore option "chunkSize" must be an integer from 1 to 390000, got ${describe(chunkSize)}`)
  }
  const now = merged.now === undefined ? Date.now : merged.now
  if (typeof now !== 'function') throw new TypeError(`dynamodbStore option "now" must be a function, got ${describe(now)}`)

  const sdk = loadSdk()
  // The length makes partitions of two prefixes distinct even when one prefix extends the other.
  const base = `${prefix.length}:${prefix}`
  // Neither a `#` nor a `?` can follow `base` in an entry partition: a namespace stops before them.
  const namespacesPk = `${base}#namespaces`
  const locksPk = `${base}?locks`

  let ready: Promise<void> | undefined = createTable ? undefined : Promise.resolve()
  function prepared(): Promise<void> {
    if (ready === undefined) {
      ready = ensureTable(client, sdk, table)
      ready.catch(() => {
        ready = undefined
      })
    }
    return ready
  }

  async function send<T>(command: object): Promise<T> {
    await prepared()
    try {
      return (await client.send(command)) as T
    } catch (error) {
      if (!createTable || (error as Error).name !== 'ResourceNotFoundException') throw error
      // The table was deleted (or the emulator restarted): create it again, and try once more.
      ready = undefined
      await prepared()
      return (await client.send(command)) as T
    }
  }

  /** Where the partitions of the cache's records begin (their namespaces start with RECORD_PREFIX). */
  const recordsHead = base + RECORD_PREFIX

  function partition(namespace: string): string {
    return shorten(base + namespace)
  }

  /** Every item of one partition whose key starts with `head` (all of them for ''). */
  async function* itemsUnder(pk: string, head: string): AsyncGenerator<Item> {
    const long = byteLength(head) > MATCH_BYTES
    const values: Item = { ':pk': { S: pk } }
    let condition = 'pk = :pk'
    if (head !== '') {
      values[':h'] = { S: long ? headOf(head, MATCH_BYTES) : head }
      condition += ' AND begins_with(sk, :h)'
    }
    let start: Item | undefined
    do {
      const page = await send<{ Items?: Item[]; LastEvaluatedKey?: Item }>(
        new sdk.QueryCommand({
          TableName: table,
          KeyConditionExpression: condition,
          ExpressionAttributeValues: values,
          ProjectionExpression: 'pk, sk, c, k',
          ConsistentRead: consistentRead,
          ExclusiveStartKey: start,
        }),
      )
      for (const item of page.Items ?? []) {
        // A long head was matched by its start only: the whole key is `k` when hashed, else the sort key.
        if (!long || ((item.k ?? item.sk) as { S: string }).S.startsWith(head)) yield item
      }
      start = page.LastEvaluatedKey
    } while (start !== undefined)
  }

  /** Delete items by key, 25 per BatchWriteItem, retrying what DynamoDB left unprocessed. */
  async function removeAll(items: Item[]): Promise<void> {
    for (let i = 0; i < items.length; i += 25) {
      await writeBatch(items.slice(i, i + 25).map((item) => ({ DeleteRequest: { Key: { pk: item.pk, sk: item.sk } } })))
    }
  }

  async function writeBatch(requests: object[]): Promise<void> {
    let pending: object[] = requests
    for (let attempt = 0; pending.length > 0; attempt++) {
      if (attempt === 5) throw new Error(`dynamodbStore: ${pending.length} writes left unprocessed after 5 attempts (throttled)`)
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 20 * 2 ** attempt))
      const reply = await send<{ UnprocessedItems?: Record<string, object[]> }>(new sdk.BatchWriteItemCommand({ RequestItems: { [table]: pending } }))
      pending = reply.UnprocessedItems?.[table] ?? []
    }
  }

  /** Delete the matching items of one partition; resolves how many entries (not chunks) went. */
  async function deleteUnder(pk: string, head: string): Promise<number> {
    let removed = 0
    let batch: Item[] = []
    for await (const item of itemsUnder(pk, head)) {
      if (item.c === undefined) removed++
      batch.push(item)
      if (batch.length === 100) {
        await removeAll(batch)
        batch = []
      }
    }
    await removeAll(batch)
    return removed
  }

  async function deleteKey(key: string): Promise<boolean> {
    const pk = partition(namespaceOf(key))
    const sk = shorten(key)
    const reply = await send<{ Attributes?: Item }>(
      new sdk.DeleteItemCommand({ TableName: table, Key: { pk: { S: pk }, sk: { S: sk } }, ReturnValues: 'ALL_OLD' }),
    )
    const old = reply.Attributes
    if (old === undefined) return false
    if (old.parts !== undefined) await deleteUnder(pk, sk + CHUNK)
    return numberOf(old.expiresMs) > now()
  }

  async function clear(): Promise<number> {
    let removed = 0
    const markers: Item[] = []
    for await (const marker of itemsUnder(namespacesPk, '')) {
      const pk = (marker.sk as { S: string }).S
      // The cache's own records (tag and purge marks, keys starting RECORD_PREFIX) outlive clear():
      // other processes check their writes against the very marks this invalidation has written.
      if (pk.startsWith(recordsHead)) continue
      markers.push(marker)
      removed += await deleteUnder(pk, '')
    }
    await removeAll(markers)
    return removed
  }

  async function get(key: string): Promise<Uint8Array | undefined> {
    const pk = partition(namespaceOf(key))
    const sk = shorten(key)
    return valueOf(pk, sk, await entryItem(pk, sk, consistentRead))
  }

  /** The item of an entry (its first part when split), as stored. */
  async function entryItem(pk: string, sk: string, consistent: boolean): Promise<Item | undefined> {
    const { Item: item } = await send<{ Item?: Item }>(
      new sdk.GetItemCommand({ TableName: table, Key: { pk: { S: pk }, sk: { S: sk } }, ConsistentRead: consistent }),
    )
    return item
  }

  /** The value an entry's item holds: a miss when past its expiry; the other parts read when it is split. */
  async function valueOf(pk: string, sk: string, item: Item | undefined, consistent = consistentRead): Promise<Uint8Array | undefined> {
    // DynamoDB's TTL deletes late: the expiry is checked here.
    if (item === undefined || numberOf(item.expiresMs) <= now()) return undefined
    const first = item.v === undefined ? new Uint8Array(0) : (item.v as { B: Uint8Array }).B
    if (item.parts === undefined) return first
    const parts = numberOf(item.parts)
    const version = (item.ver as { S: string }).S
    const chunks: Uint8Array[] = new Array(parts)
    chunks[0] = first
    let start: Item | undefined
    do {
      const page = await send<{ Items?: Item[]; LastEvaluatedKey?: Item }>(
        new sdk.QueryCommand({
          TableName: table,
          KeyConditionExpression: 'pk = :pk AND begins_with(sk, :c)',
          ExpressionAttributeValues: { ':pk': { S: pk }, ':c': { S: `${sk}${CHUNK}${version}:` } },
          ConsistentRead: consistent,
          ExclusiveStartKey: start,
        }),
      )
      for (const chunk of page.Items ?? []) chunks[numberOf(chunk.c)] = (chunk.v as { B: Uint8Array }).B
      start = page.LastEvaluatedKey
    } while (start !== undefined)
    // A reader can come between the writes of one set(): a part still missing is a miss.
    for (let i = 0; i < parts; i++) if (chunks[i] === undefined) return undefined
    return Buffer.concat(chunks)
  }

  /** The items of an entry: its own, then a value's parts past `chunkSize` under a fresh version it names. */
  function entryItems(key: string, pk: string, sk: string, value: Uint8Array, expiresMs: number): [Item, ...Item[]] {
    const common: Item = {
      pk: { S: pk },
      expiresMs: { N: String(expiresMs) },
      // The TTL attribute: epoch seconds, rounded up.
      expires: { N: String(Math.ceil(expiresMs / 1000)) },
    }
    if (sk !== key) common.k = { S: key }
    const parts = Math.max(1, Math.ceil(value.byteLength / chunkSize))
    const main: Item = { ...common, sk: { S: sk } }
    // DynamoDB refuses empty binary values in some versions and emulators: no `v` means empty.
    if (value.byteLength > 0) main.v = { B: value.subarray(0, chunkSize) }
    const items: [Item, ...Item[]] = [main]
    if (parts > 1) {
      const version = randomBytes(6).toString('base64url')
      main.parts = { N: String(parts) }
      main.ver = { S: version }
      for (let i = 1; i < parts; i++) {
        items.push({
          ...common,
          sk: { S: `${sk}${CHUNK}${version}:${i}` },
          c: { N: String(i) },
          v: { B: value.subarray(i * chunkSize, (i + 1) * chunkSize) },
        })
      }
    }
    return items
  }

  /** Put items, 25 per BatchWriteItem, in order of the batches. */
  async function putAll(items: Item[]): Promise<void> {
    for (let i = 0; i < items.length; i += 25) {
      await writeBatch(items.slice(i, i + 25).map((item) => ({ PutRequest: { Item: item } })))
    }
  }

  /** Put an entry's item only while the key holds `expected`; resolves `true`, else what a consistent `get` answers. */
  async function putIf(pk: string, sk: string, main: Item, expected: Uint8Array | null): Promise<true | Uint8Array | null> {
    // A split value's parts are not in its item: when one is held and equals `expected` as a whole,
    // the second round names it by its version, which no other write reuses.
    let version: string | undefined
    for (let round = 0; ; round++) {
      // Names through placeholders: an expression refuses DynamoDB's reserved words as names.
      const names: Record<string, string> = {}
      const values: Item = { ':now': { N: String(now()) } }
      let condition: string
      if (expected === null) {
        condition = 'attribute_not_exists(pk) OR expiresMs <= :now'
      } else {
        Object.assign(names, { '#parts': 'parts', '#v': 'v' })
        condition = 'expiresMs > :now AND attribute_not_exists(#parts) AND '
        if (expected.byteLength === 0) {
          condition += 'attribute_not_exists(#v)'
        } else {
          condition += '#v = :v'
          values[':v'] = { B: expected }
        }
      }
      if (version !== undefined) {
        // Expecting nothing, a split value missing a part counts as nothing, as get() answers it.
        condition = `(${condition}) OR (#ver = :ver${expected === null ? '' : ' AND expiresMs > :now'})`
        names['#ver'] = 'ver'
        values[':ver'] = { S: version }
      }
      try {
        await send(
          new sdk.PutItemCommand({
            TableName: table,
            Item: main,
            ConditionExpression: condition,
            // DynamoDB refuses an empty map of names.
            ExpressionAttributeNames: Object.keys(names).length === 0 ? undefined : names,
            ExpressionAttributeValues: values,
          }),
        )
        return true
      } catch (error) {
        if ((error as Error).name !== 'ConditionalCheckFailedException') throw error
      }
      const item = await entryItem(pk, sk, true)
      const held = (await valueOf(pk, sk, item, true)) ?? null
      if (round > 0 || item?.ver === undefined || !sameBytes(held, expected)) return held
      version = (item.ver as { S: string }).S
    }
  }

  async function getMany(keys: readonly string[]): Promise<(Uint8Array | undefined)[]> {
    if (keys.length === 0) return []
    // BatchGetItem refuses a request naming one item twice.
    const distinct = [...new Set(keys)]
    const found = new Map<string, Uint8Array | undefined>()
    const batches: Promise<void>[] = []
    for (let i = 0; i < distinct.length; i += BATCH_GET_KEYS) batches.push(readBatch(distinct.slice(i, i + BATCH_GET_KEYS), found))
    await Promise.all(batches)
    return keys.map((key) => found.get(key))
  }

  /** Read up to 100 distinct keys into `found`: BatchGetItem, again for what it left unprocessed, then GetItem for the rest. */
  async function readBatch(keys: string[], found: Map<string, Uint8Array | undefined>): Promise<void> {
    // Distinct keys have distinct sort keys (a hashed one keeps a SHA-256 of the whole key).
    const bySk = new Map<string, { key: string; pk: string }>()
    for (const key of keys) bySk.set(shorten(key), { key, pk: partition(namespaceOf(key)) })
    let pending: Item[] = [...bySk].map(([sk, { pk }]) => ({ pk: { S: pk }, sk: { S: sk } }))
    const items: Item[] = []
    for (let attempt = 0; pending.length > 0 && attempt < BATCH_GET_ATTEMPTS; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 20 * 2 ** attempt))
      const reply = await send<{ Responses?: Record<string, Item[]>; UnprocessedKeys?: Record<string, { Keys?: Item[] }> }>(
        new sdk.BatchGetItemCommand({ RequestItems: { [table]: { Keys: pending, ConsistentRead: consistentRead } } }),
      )
      items.push(...(reply.Responses?.[table] ?? []))
      pending = reply.UnprocessedKeys?.[table]?.Keys ?? []
    }
    if (pending.length > 0)
      debug('%d of %d keys unprocessed after %d BatchGetItem requests: reading them one by one', pending.length, keys.length, BATCH_GET_ATTEMPTS)
    // Decoded once every request is answered: a split value's parts are a Query each.
    const reads = items.map(async (item) => {
      const sk = (item.sk as { S: string }).S
      const entry = bySk.get(sk)
      if (entry !== undefined) found.set(entry.key, await valueOf(entry.pk, sk, item))
    })
    for (const left of pending) {
      const { key } = bySk.get((left.sk as { S: string }).S)!
      reads.push(get(key).then((value) => void found.set(key, value)))
    }
    await Promise.all(reads)
  }

  return {
    name: 'dynamodb',
    prefix,

    get,
    getMany,

    async set(key, value, ttlMs) {
      if (!(value instanceof Uint8Array)) throw new TypeError(`dynamodbStore.set expects bytes, got ${describe(value)}`)
      const pk = partition(namespaceOf(key))
      const sk = shorten(key)
      const [main, ...parts] = entryItems(key, pk, sk, value, now() + Math.max(1, Math.ceil(ttlMs)))
      // The partition's marker goes with the entry, so that clear() finds it from any process.
      await putAll([main, { pk: { S: namespacesPk }, sk: { S: pk } }, ...parts])
    },

    async setIf(key, expected, value, ttlMs) {
      if (!(value instanceof Uint8Array)) throw new TypeError(`dynamodbStore.setIf expects bytes, got ${describe(value)}`)
      if (expected !== null && !(expected instanceof Uint8Array)) {
        throw new TypeError(`dynamodbStore.setIf expects the bytes expected or null, got ${describe(expected)}`)
      }
      const pk = partition(namespaceOf(key))
      const sk = shorten(key)
      const [main, ...parts] = entryItems(key, pk, sk, value, now() + Math.max(1, Math.ceil(ttlMs)))
      const marker: Item = { pk: { S: namespacesPk }, sk: { S: pk } }
      if (parts.length === 0) {
        // The partition's marker (for clear()) beside the conditional put: one round trip for both.
        const marked = send(new sdk.PutItemCommand({ TableName: table, Item: marker }))
        marked.catch(() => {}) // awaited below, after the put
        const answer = await putIf(pk, sk, main, expected)
        await marked
        return answer
      }
      // A split value's other parts go first: once its item names their version, every part is there to read.
      await putAll([marker, ...parts])
      const answer = await putIf(pk, sk, main, expected)
      if (answer !== true) {
        await removeAll(parts).catch((error: Error) => debug('could not delete the parts of a value not stored: %s', error.message))
      }
      return answer
    },

    delete: deleteKey,

    async deleteMatching(pattern) {
      assertPattern(pattern)
      if (isLiteral(pattern)) return (await deleteKey(pattern)) ? 1 : 0
      if (pattern === '*') return clear()
      const head = supportedHead(pattern)
      return deleteUnder(partition(namespaceOf(head)), head)
    },

    clear,

    async close() {
      // The client is the caller's: nothing to release.
    },

    async lock(key, ttlMs) {
      if (typeof ttlMs !== 'number' || !(ttlMs > 0)) {
        throw new TypeError(`dynamodbStore.lock ttlMs must be a positive number, got ${describe(ttlMs)}`)
      }
      const token = randomBytes(16).toString('base64url')
      const at = now()
      const expiresMs = at + Math.ceil(ttlMs)
      try {
        await send(
          new sdk.PutItemCommand({
            TableName: table,
            Item: {
              pk: { S: locksPk },
              sk: { S: shorten(key) },
              token: { S: token },
              expiresMs: { N: String(expiresMs) },
              expires: { N: String(Math.ceil(expiresMs / 1000)) },
            },
            ConditionExpression: 'attribute_not_exists(pk) OR expiresMs <= :now',
            ExpressionAttributeValues: { ':now': { N: String(at) } },
          }),
        )
        return token
      } catch (error) {
        if ((error as Error).name === 'ConditionalCheckFailedException') return null
        throw error
      }
    },

    async unlock(key, token) {
      try {
        await send(
          new sdk.DeleteItemCommand({
            TableName: table,
            Key: { pk: { S: locksPk }, sk: { S: shorten(key) } },
            ConditionExpression: '#token = :token',
            ExpressionAttributeNames: { '#token': 'token' },
            ExpressionAttributeValues: { ':token': { S: token } },
          }),
        )
        return true
      } catch (error) {
        if ((error as Error).name === 'ConditionalCheckFailedException') return false
        throw error
      }
    },
  }
}

/** The first segment of a key: up to its first `:`, `?` or `#` (the whole key without them). */
export function namespaceOf(key: string): string {
  const end = key.search(/[:?#]/)
  return end === -1 ? key : key.slice(0, end)
}

/**
 * The literal head of a pattern the store can honour in one Query: `<segments>:*`, `<path>?*`
 * (a path without `?` or `#`), or `<primary>#*` (a primary key without `#`). Throws otherwise.
 */
function supportedHead(pattern: string): string {
  const head = pattern.slice(0, -1)
  const supported =
    pattern.endsWith('*') &&
    !head.includes('*') &&
    ((head.endsWith(':') && !/[?#]/.test(head)) ||
      (head.endsWith('?') && !/[?#]/.test(head.slice(0, -1))) ||
      (head.endsWith('#') && !head.slice(0, -1).includes('#')))
  if (!supported) {
    throw new Error(
      `dynamodbStore cannot delete keys matching ${JSON.stringify(pattern)} without scanning the table; supported: ` +
        '"*", "<segments>:*" (e.g. "posts:*", "posts:42:*"), "<path>?*" (e.g. "posts:GET?*"), "<primary>#*" ' +
        '(e.g. "posts:GET#*"), or a key without "*"',
    )
  }
  return head
}

/** A key short enough for a DynamoDB key attribute: longer ones keep a head and a SHA-256. */
function shorten(text: string): string {
  if (byteLength(text) <= KEY_BYTES) return text
  return headOf(text, HEAD_BYTES) + HASHED + createHash('sha256').update(text).digest('base64url')
}

/** The longest start of `text` within `bytes` UTF-8 bytes, cut between code points. */
function headOf(text: string, bytes: number): string {
  let used = 0
  let end = 0
  for (const char of text) {
    const size = Buffer.byteLength(char)
    if (used + size > bytes) break
    used += size
    end += char.length
  }
  return text.slice(0, end)
}

function byteLength(text: string): number {
  return Buffer.byteLength(text)
}

function numberOf(attribute: Attribute | undefined): number {
  return attribute === undefined ? 0 : Number((attribute as { N: string }).N)
}

interface Sdk {
  GetItemCommand: new (input: object) => object
  BatchGetItemCommand: new (input: object) => object
  PutItemCommand: new (input: object) => object
  DeleteItemCommand: new (input: object) => object
  QueryCommand: new (input: object) => object
  BatchWriteItemCommand: new (input: object) => object
  DescribeTableCommand: new (input: object) => object
  CreateTableCommand: new (input: object) => object
  UpdateTimeToLiveCommand: new (input: object) => object
}

/** The table when missing: created, waited for until ACTIVE, TTL turned on where the server supports it. */
async function ensureTable(client: DynamoClient, sdk: Sdk, table: string): Promise<void> {
  try {
    const reply = (await client.send(new sdk.DescribeTableCommand({ TableName: table }))) as { Table?: { TableStatus?: string } }
    if (reply.Table?.TableStatus === 'ACTIVE') return
  } catch (error) {
    if ((error as Error).name !== 'ResourceNotFoundException') throw error
    try {
      await client.send(
        new sdk.CreateTableCommand({
          TableName: table,
          AttributeDefinitions: [
            { AttributeName: 'pk', AttributeType: 'S' },
            { AttributeName: 'sk', AttributeType: 'S' },
          ],
          KeySchema: [
            { AttributeName: 'pk', KeyType: 'HASH' },
            { AttributeName: 'sk', KeyType: 'RANGE' },
          ],
          BillingMode: 'PAY_PER_REQUEST',
        }),
      )
    } catch (createError) {
      // Another process created it meanwhile.
      if ((createError as Error).name !== 'ResourceInUseException') throw createError
    }
  }
  const deadline = Date.now() + TABLE_READY_TIMEOUT_MS
  for (;;) {
    const reply = (await client.send(new sdk.DescribeTableCommand({ TableName: table }))) as { Table?: { TableStatus?: string } }
    if (reply.Table?.TableStatus === 'ACTIVE') break
    if (Date.now() > deadline) throw new Error(`dynamodbStore: table ${JSON.stringify(table)} not ACTIVE after ${TABLE_READY_TIMEOUT_MS} ms`)
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  try {
    await client.send(new sdk.UpdateTimeToLiveCommand({ TableName: table, TimeToLiveSpecification: { AttributeName: 'expires', Enabled: true } }))
  } catch (error) {
    // Emulators (dynalite) may not know UpdateTimeToLive; TTL is set already when another process won the race.
    debug('could not turn on TTL for %s: %s', table, (error as Error).message)
  }
}

/** Loads @aws-sdk/client-dynamodb from wherever the app installed it (ESM and CJS builds alike). */
function loadSdk(): Sdk {
  try {
    // ESM: import.meta.url; the CJS build has an empty import.meta, and __filename.
    const load = createRequire(typeof import.meta.url === 'string' ? import.meta.url : __filename)
    return load('@aws-sdk/client-dynamodb') as Sdk
  } catch (error) {
    throw new Error('dynamodbStore needs the "@aws-sdk/client-dynamodb" package: npm install @aws-sdk/client-dynamodb', { cause: error })
  }
}

/** Options that may sit beside the connection or in the second argument. */
const DYNAMODB_OPTIONS = ['prefix', 'createTable', 'consistentRead', 'chunkSize', 'now'] as const

function pickOptions(source: DynamodbStoreOptions): DynamodbStoreOptions {
  const picked: DynamodbStoreOptions = {}
  for (const key of DYNAMODB_OPTIONS) {
    if (source[key] !== undefined) (picked as Record<string, unknown>)[key] = source[key]
  }
  return picked
}
