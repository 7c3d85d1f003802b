/** Minimal type declarations for the untyped packages the benchmark drives (autocannon, apicache, route-cache). */

declare module 'autocannon' {
  import type { EventEmitter } from 'node:events'

  namespace autocannon {
    interface Request {
      method?: string
      path?: string
      headers?: Record<string, string>
      setupRequest?: (request: Request, context: Record<string, unknown>) => Request
    }
    interface Options {
      url: string
      connections?: number
      pipelining?: number
      duration?: number
      amount?: number
      timeout?: number
      overallRate?: number
      headers?: Record<string, string>
      requests?: Request[]
    }
    interface Histogram {
      average: number
      mean: number
      p50: number
      p99: number
      max: number
      total: number
    }
    interface Result {
      duration: number
      errors: number
      timeouts: number
      non2xx: number
      '2xx': number
      requests: Histogram
      latency: Histogram
      throughput: Histogram
    }
    interface Instance extends EventEmitter {
      stop(): void
    }
  }

  function autocannon(options: autocannon.Options, callback: (error: Error | null, result: autocannon.Result) => void): autocannon.Instance
  export = autocannon
}

declare module 'apicache' {
  import type { RequestHandler } from 'express'

  interface ApicacheOptions {
    redisClient?: unknown
    statusCodes?: { include?: number[]; exclude?: number[] }
    defaultDuration?: string
  }
  interface ApicacheInstance {
    middleware(duration?: string | number): RequestHandler
    clear(target?: string): unknown
    newInstance(options?: ApicacheOptions): ApicacheInstance
    options(options?: ApicacheOptions): ApicacheInstance
  }
  const apicache: ApicacheInstance
  export default apicache
}

declare module 'route-cache' {
  import type { RequestHandler } from 'express'

  const routeCache: {
    cacheSeconds(seconds: number, key?: string | ((req: unknown, res: unknown) => string)): RequestHandler
  }
  export default routeCache
}
