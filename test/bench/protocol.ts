/** Messages between the benchmark runner and a server child, over the IPC channel. */

export type Command =
  | { type: 'stats' }
  | { type: 'reset' }
  | { type: 'memory' }
  | { type: 'invalidate'; pattern: string }
  | { type: 'invalidateTags'; tags: string[] }
  | { type: 'stop' }

export type Reply =
  | { type: 'ready'; port: number; pid: number }
  | { type: 'skip'; reason: string }
  | { type: 'error'; message: string }
  | { type: 'ok' }
  | {
      type: 'stats'
      originCalls: number
      cacheErrors: number
      lastCacheError?: string
      cacheStats?: unknown
      /** Byte stores, compressed-storage variants: the encoded bytes of the last response write landed, per storage key. */
      written?: Record<string, number>
      /** SQL and DynamoDB variants: store reads since the last reset, by outcome. */
      storeReads?: { hit: number; miss: number; error: number }
    }
  | { type: 'memory'; usage: NodeJS.MemoryUsage }
  | { type: 'invalidated'; ms: number; removed: number }
  | { type: 'tagsInvalidated'; ms: number }
