/** Refresh: stale-while-revalidate's one background refresh per key, sent through the app itself. */
import { IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { Writable } from 'node:stream'
import { asError } from '../storage.js'
import type { ResponseEntry } from '../types.js'
import { foundKey, type Found } from './lookup.js'
import { debug, type Context } from './state.js'

/** Marks the internal request a background refresh sends through the app, with the entry it refreshes. */
export const kRefresh = Symbol('cachet.refresh')

/** The entry a background refresh request refreshes, or undefined for any other request. */
export function refreshOf(req: IncomingMessage): ResponseEntry | undefined {
  return (req as { [kRefresh]?: ResponseEntry })[kRefresh]
}

/**
 * Refresh an entry without a waiting client: an internal GET for the same URL and headers is
 * sent through the server's own request handler, answered into a response that goes nowhere,
 * and stored as any miss would be. One refresh per key at a time.
 */
export function startRefresh(ctx: Context, found: Found): void {
  const { cache, req } = ctx
  const key = foundKey(ctx, found)
  if (cache.refreshing.has(key)) return
  const app = appOf(req)
  if (app === undefined) {
    debug('stale-while-revalidate: no request handler found to refresh %s', key)
    return
  }
  cache.refreshing.add(key)
  const done = () => cache.refreshing.delete(key)
  // A socket of its own that discards what is written: the client's socket is never touched.
  const socket = new Writable({ write: (_chunk, _encoding, callback) => callback() }) as unknown as Socket
  const fake = new IncomingMessage(socket)
  fake.method = 'GET'
  fake.url = ctx.url
  fake.httpVersionMajor = 1
  fake.httpVersionMinor = 1
  fake.httpVersion = '1.1'
  // The same header fields as the request it refreshes for: the response is stored under the
  // variant those fields select (Vary), so a refresh for one user stays that user's.
  fake.headers = { ...req.headers }
  delete fake.headers['if-none-match']
  delete fake.headers['if-modified-since']
  delete fake.headers.range
  delete fake.headers['if-range']
  fake.rawHeaders = []
  for (const [name, value] of Object.entries(fake.headers)) {
    for (const line of Array.isArray(value) ? value : [value ?? '']) fake.rawHeaders.push(name, line)
  }
  fake.complete = true
  fake.push(null)
  ;(fake as { app?: unknown }).app = (req as { app?: unknown }).app
  ;(fake as { [kRefresh]?: ResponseEntry })[kRefresh] = found.entry
  const res = new ServerResponse(fake)
  res.assignSocket(socket)
  const timer = setTimeout(() => {
    done()
    res.destroy()
  }, cache.config.lockTimeout)
  timer.unref?.()
  const finished = () => {
    clearTimeout(timer)
    done()
  }
  res.once('finish', finished)
  res.once('close', finished)
  try {
    app(fake, res)
  } catch (error) {
    finished()
    cache.report(asError(error), req)
  }
}

type App = (req: IncomingMessage, res: ServerResponse) => void

function appOf(req: IncomingMessage): App | undefined {
  const server = (req.socket as { server?: { listeners(event: string): unknown[] } } | undefined)?.server
  const listener = server?.listeners('request')[0]
  return typeof listener === 'function' ? (listener as App) : undefined
}
