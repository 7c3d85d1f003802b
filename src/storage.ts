/** Entries in and out of a store: coding, timeouts, a circuit breaker, and failures that never reach the client. */
import createDebug from 'debug'
import { publishStoreRead, publishStoreWrite, storeCallStarted } from './diagnostics.js'
import { CorruptEntryError } from './entry.js'
import { compilePattern, namespaceHolding, namespacesOf, RECORD_PREFIX } from './pattern.js'
import { describe } from './validate.js'
import { kEntryStore, type EntryStore } from './stores/memory.js'
import type { Coder, Entry, ResponseEntry, Store, TagMark } from './types.js'

const debug = createDebug('cachet')

/** A store call that did not answer in time. */
export class StoreTimeoutError extends Error {
  constructor(operation: string, ms: number) {
    super(`store ${operation} timed out after ${ms} ms`)
    this.name = 'StoreTimeoutError'
  }
}

/** The circuit breaker is open: the store failed repeatedly and is skipped for a cool-down. */
export class StoreUnavailableError extends Error {
  constructor() {
    super('store skipped: circuit open after repeated failures')
    this.name = 'StoreUnavailableError'
  }
}

export interface StorageOptions {
  store: Store
  coder: Coder
  timeout: number
  /** Longest a write waits for a pattern deletion of its key to finish (see `sweeping`), ms. @default timeout */
  sweepWait?: number
  /** Failures in a row that open the circuit. */
  failureThreshold?: number
  /** How long an open circuit skips the store before one probe goes through, ms. */
  coolDown?: number
  now: () => number
  report: (error: Error) => void
}

export type Maybe<T> = T | Promise<T>

export function isPromise<T>(value: Maybe<T>): value is Promise<T> {
  return value !== null && typeof value === 'object' && typeof (value as Promise<T>).then === 'function'
}

/** What `race()` resolves when the time ran out first. */
export const TIMED_OUT: unique symbol = Symbol('cachet.timedOut')

/**
 * The one bounded wait of the cache: resolves what `work` resolves, or TIMED_OUT after `ms`,
 * whichever comes first; rejects only when `work` rejects first. The timer never keeps the
 * process alive. With `ioFirst`, one round of I/O still runs when the timer fires: after the
 * event loop was busy for longer than `ms`, timers run before sockets are read, and an answer
 * that arrived in time would otherwise be called late.
 */
export function race<T>(work: Promise<T>, ms: number, ioFirst = false): Promise<T | typeof TIMED_OUT> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (ioFirst ? setImmediate(() => resolve(TIMED_OUT)) : resolve(TIMED_OUT)), ms)
    timer.unref?.()
    work.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (error) => {
        clearTimeout(timer)
        reject(error)
      },
    )
  })
}

/**
 * Resolves once `work` has settled, or after `ms`, whichever comes first; never rejects. For
 * waits that must not hold anything up for long.
 */
export function settledWithin(work: Promise<unknown>, ms: number): Promise<void> {
  return race(work, ms).then(
    () => undefined,
    () => undefined,
  )
}

/**
 * Reads and writes entries. Every method resolves (never rejects) except `removeMatching`,
 * which callers of invalidate() must hear about. The memory store is used through its object
 * interface: nothing is encoded or decoded for it.
 */
export class Storage {
  readonly store: Store
  readonly coder: Coder
  private readonly entries: EntryStore | undefined
  private readonly timeout: number
  private readonly failureThreshold: number
  private readonly coolDown: number
  private readonly now: () => number
  private readonly report: (error: Error) => void
  private failures = 0
  private openUntil = 0
  private lastFailure = 0
  /** What happened to the responses given to `write()`: landed, failed (or skipped), refused by the store. */
  readonly writes = { landed: 0, failed: 0, refused: 0 }
  /**
   * Invalidations (pattern deletions, `clear()`) in the order they began, numbered by `epoch`. A
   * computation that began before one of them must not store what it computed afterwards: it may
   * have read the data the invalidation was about (see `invalidatedSince`). The log keeps the
   * last MAX_INVALIDATIONS; a computation older than everything it holds is treated as raced.
   */
  private epoch = 0
  /**
   * Tag invalidations this process knows of, by tag: all of them for an object store, and for a
   * byte store its own plus those read from the store. At most MAX_TAG_MARKS; an entry older than
   * one that was forgotten counts as invalidated (`tagsForgottenBefore`).
   */
  private readonly tagMarks = new Map<string, { hard: number; soft: number }>()
  private tagsForgottenBefore = 0
  /**
   * What a hit on a byte store reads to judge the entry of a key, by key of a tagged entry: the
   * tags its entry carried when this process last read or wrote it, and their mark keys (see
   * `planOf`; untagged entries share UNKNOWN_PLAN). Lookups read those marks together with the
   * entry (`readAhead`). At most MAX_MARK_PLANS keys, the oldest dropped first; a key whose
   * entry's tags changed gets a new plan when it is read.
   */
  private readonly markPlans = new Map<string, MarkPlan>()
  /**
   * What a key's namespaces' soft marks said when the record of soft pattern purges read
   * `recordAt` (see `softPatternAt`), by key; only keys read since a soft pattern purge. At most
   * MAX_MARK_PLANS keys, the oldest dropped first.
   */
  private readonly softAnswers = new Map<string, { recordAt: number; at: number }>()
  /**
   * The bytes of each mark this process last wrote or saw in the store through `setIf`, by store
   * key: what its next compare-and-set expects first (see `raiseMark`). At most MAX_MARK_GUESSES.
   */
  private readonly markBytes = new Map<string, Uint8Array>()
  /**
   * Marks being raised in this process, by store key, with the raise that waits for the running
   * one: the latest hard and soft times asked for meanwhile (see `raiseMark`).
   */
  private readonly raises = new Map<string, { waiting: WaitingRaise | undefined }>()
  /** Soft pattern invalidations, newest last: a matching entry from before `at` is served as stale. */
  private readonly softPatterns: { at: number; matches: (key: string) => boolean }[] = []
  /**
   * Soft pattern purges reach the other processes (see `softInvalidate`): a byte store that reads
   * an entry's marks with it in one round trip (`getMany`) or from a local tier. On other stores
   * the record they need would cost every hit a read of its own, so they stay in-process.
   */
  private readonly softShared: boolean
  private softForgottenBefore = 0
  /** Shared locks this process holds but failed to release, by name. */
  private readonly orphanLocks = new Map<string, string>()
  /** When a lock call last failed or answered too late (0: never). */
  private lockFailedAt = 0
  private readonly invalidations: { epoch: number; matches: (key: string) => boolean }[] = []
  private forgotten = 0
  /**
   * Entries whose write has not landed yet. Reads see them, so a request right after a miss
   * is a hit in this process even on a store with slow writes; an invalidation that runs
   * meanwhile marks them, and they are deleted again once their write lands. `settled` is
   * that write (and the deletion after it): an invalidation is done only once it is.
   */
  private readonly inFlight = new Map<string, InFlight>()
  /**
   * Pattern deletions still running on a byte store. A write of a matching key waits for them
   * (up to `sweepWait`): landing meanwhile, an entry computed after the invalidation began
   * could be swept by it (SCAN + UNLINK) or left under the namespace generation it replaces
   * (memcached), a needless miss.
   */
  private readonly sweepWait: number
  private readonly sweeping = new Set<{ matches: (key: string) => boolean; done: Promise<unknown> }>()
  /**
   * Entries decoded from bytes a store handed out. A store that returns the very same bytes
   * object again (redisStore's hot copies) gets the same entry back, without decoding: bytes a
   * store returned are never changed afterwards (decoded bodies may be views into them), and
   * entries are never mutated. Weak: an entry lives as long as the store keeps its bytes.
   */
  private readonly decoded = new WeakMap<Uint8Array, Entry>()

  constructor(options: StorageOptions) {
    this.store = options.store
    this.coder = options.coder
    this.entries = (options.store as { [kEntryStore]?: EntryStore })[kEntryStore]
    this.timeout = options.timeout
    this.sweepWait = options.sweepWait ?? options.timeout
    this.failureThreshold = options.failureThreshold ?? 5
    this.coolDown = options.coolDown ?? 5000
    this.now = options.now
    this.report = options.report
    this.softShared = this.entries === undefined && (typeof this.store.getMany === 'function' || this.store.localTier === true)
  }

  /** False while the circuit is open: the store is being skipped after repeated failures. */
  get available(): boolean {
    return !this.isOpen()
  }

  /** True when a store call failed within the last `ms` milliseconds. */
  failedWithin(ms: number): boolean {
    return this.lastFailure !== 0 && this.now() - this.lastFailure < ms
  }

  /**
   * Invalidate every entry carrying one of `tags`, in constant time whatever their number: the
   * time is recorded per tag (Varnish bans, bentocache tags), and entries are compared with it
   * when read. On a byte store the marks are written to the store for every process (see
   * `raiseMark`). Rejects when the store could not record them.
   */
  async markTags(tags: readonly string[], soft: boolean): Promise<void> {
    const at = this.now()
    for (const tag of tags) this.noteMark(tag, soft ? { hard: 0, soft: at } : { hard: at, soft: 0 })
    if (this.entries !== undefined) return
    const [hard, softAt] = soft ? [0, at] : [at, 0]
    await Promise.all(tags.map((tag) => this.raiseMark(markKey(tag), hard, softAt)))
  }

  /**
   * Raise the mark stored under `key` to `hard` and `soft`: through the store's compare-and-set
   * (`casMark`), so that marks written by several processes at once are all kept, or with a read
   * and a write on a store without `setIf` (`overwriteMark`). Raises of one mark in this process go
   * one at a time: one runs, and those asked for meanwhile wait and then run together, as one, with
   * the latest of their times. Concurrent invalidations in one process thus cost two
   * compare-and-sets, not one each that all but one would see refused; and without `setIf` none
   * of them writes back a mark it read before another's write.
   */
  private raiseMark(key: string, hard: number, soft: number): Promise<void> {
    const queue = this.raises.get(key)
    if (queue === undefined) return this.runRaise(key, hard, soft)
    queue.waiting ??= waitingRaise()
    return raise(queue.waiting, hard, soft).settled
  }

  /** Run one raise of the mark under `key`, then the one that waited for it, if any (see `raiseMark`). */
  private runRaise(key: string, hard: number, soft: number): Promise<void> {
    const running = typeof this.store.setIf === 'function' ? this.casMark(key, hard, soft) : this.overwriteMark(key, hard, soft)
    this.raises.set(key, { waiting: undefined })
    const next = () => {
      const waiting = this.raises.get(key)?.waiting
      this.raises.delete(key)
      if (waiting === undefined) return
      this.runRaise(key, waiting.hard, waiting.soft).then(waiting.resolve, waiting.reject)
    }
    running.then(next, next)
    return running
  }

  /**
   * Raise the mark under `key` to `hard` and `soft` with compare-and-sets. The first attempt
   * expects the bytes this process last wrote or saw there (`markBytes`): one round trip when no
   * other process wrote since; each further attempt starts from what the store answered.
   */
  private async casMark(key: string, hard: number, soft: number): Promise<void> {
    let held = this.markBytes.get(key) ?? null
    for (let attempt = 0; attempt < MARK_ATTEMPTS; attempt++) {
      const mark = this.decodeMark(held)
      if (attempt > 0 && mark.hard >= hard && mark.soft >= soft) {
        // The store holds times at least as late already (another process's clock ran ahead).
        keepNewest(this.markBytes, key, held!, MAX_MARK_GUESSES)
        return
      }
      const bytes = this.coder.encode(raise(mark, hard, soft))
      const answer = await this.mustAnswer('set', () => this.store.setIf!(key, held, bytes, MARK_TTL))
      // Own copies: a coder's or a client's small Buffer is a view into a pool it would keep alive.
      if (answer === true) {
        keepNewest(this.markBytes, key, Uint8Array.from(bytes), MAX_MARK_GUESSES)
        return
      }
      held = answer === null || answer === undefined ? null : Uint8Array.from(answer)
    }
    throw new Error(`cachet could not write the mark ${key}: other processes changed it ${MARK_ATTEMPTS} times in a row`)
  }

  /**
   * Raise the mark stored under `key` to `hard` and `soft` with a read and a write, on a store
   * without `setIf`: two processes marking one tag within one round trip of each other can leave
   * the earlier time (within this process, `raiseMark` runs them one after the other).
   */
  private async overwriteMark(key: string, hard: number, soft: number): Promise<void> {
    const mark = raise(markOf(await this.read(key, true)), hard, soft)
    await this.mustAnswer('set', () => this.store.set(key, this.coder.encode(mark), MARK_TTL))
  }

  /** The mark in `bytes`, as a fresh object; none (or bytes that are no mark) reads as never invalidated. */
  private decodeMark(bytes: Uint8Array | null): TagMark {
    if (bytes === null) return markOf(undefined)
    try {
      return markOf(this.coder.decode(bytes))
    } catch {
      // Corrupt: replaced by the compare-and-set like any other value.
      return markOf(undefined)
    }
  }

  /**
   * Mark every entry matching `pattern` stale, lazily. In this process exactly; with `softShared`
   * in every process too, through two soft marks: one on the narrowest key namespace holding the
   * pattern (namespaceHolding(); wider than the pattern, never narrower), then one every soft
   * pattern purge updates (SOFT_PATTERNS). Every hit reads the second with its entry, and the
   * marks of its key's namespaces only when it is newer than the entry (see `softPatternAt`).
   * Written in that order, a reader that sees the second finds the first. Rejects when the store
   * could not record them (this process has the purge already).
   */
  async softInvalidate(pattern: string): Promise<void> {
    const matches = compilePattern(pattern)
    this.recordInvalidation(matches)
    this.softPatterns.push({ at: this.now(), matches })
    if (this.softPatterns.length > MAX_INVALIDATIONS) this.softForgottenBefore = this.softPatterns.shift()!.at
    if (!this.softShared) return
    await this.markTags([namespaceTag(namespaceHolding(pattern.slice(0, starAt(pattern))))], true)
    await this.markTags([SOFT_PATTERNS], true)
  }

  /**
   * Read `key`'s entry and, on a byte store, the marks that judged it when this process last read
   * or wrote it (see `markPlans`; for a key not known yet, the record of soft pattern purges), in
   * one round trip: one `getMany` where the store has it, else reads sent together. Pass `ahead`
   * to `invalidationState` for the entry this same read found, and to nothing else: reads begun
   * before a request began must never judge its entry (an invalidation that ended meanwhile would
   * go unseen). `ahead` is undefined when the entry is known at once (no mark was read).
   */
  readAhead(key: string, budget = this.timeout, fromStore = false): { entry: Maybe<Entry | undefined>; ahead: MarksAhead | undefined } {
    if (this.entries !== undefined) return { entry: this.read(key), ahead: undefined }
    const pending = fromStore ? undefined : this.inFlight.get(key)
    if (pending !== undefined && !pending.invalidated) return { entry: pending.entry, ahead: undefined }
    const plan = this.markPlans.get(key) ?? (this.softShared ? UNKNOWN_PLAN : NO_MARKS)
    if (typeof this.store.getMany === 'function' && !this.isOpen()) return this.readMany(key, plan, budget)
    const entry = this.read(key, true, budget)
    if (!isPromise(entry)) return { entry, ahead: undefined }
    const reads = new Array<Maybe<Entry | undefined>>(plan.keys.length)
    for (let i = 0; i < reads.length; i++) reads[i] = this.read(plan.keys[i], true, budget)
    return { entry, ahead: { plan, reads } }
  }

  /** `readAhead` through the store's `getMany`: the entry and the plan's marks in one call. */
  private readMany(key: string, plan: MarkPlan, budget: number): { entry: Maybe<Entry | undefined>; ahead: MarksAhead | undefined } {
    const t = storeCallStarted()
    // The marks are decoded in the step that hands out the entry, into `reads` itself: a lookup
    // judging the entry then finds them as values, with no promise to wait for.
    const reads = new Array<Maybe<Entry | undefined>>(plan.keys.length).fill(PENDING)
    const settle = (found: readonly (Uint8Array | undefined | null)[] | typeof FAILED): Entry | undefined => {
      for (let i = 0; i < reads.length; i++) reads[i] = found === FAILED ? undefined : this.decode(plan.keys[i], found[i + 1])
      return found === FAILED ? undefined : readOutcome(key, this.decode(key, found[0]), t)
    }
    const entry = this.ask(key, t, budget, () => this.store.getMany!([key, ...plan.keys]), settle)
    return { entry, ahead: { plan, reads } }
  }

  /**
   * What the invalidations recorded since `entry` was computed mean for it: `'ok'`, `'stale'`
   * (a soft one: revalidate, or serve stale where the entry allows) or `'gone'` (a hard one),
   * with the time from which it counts as stale. A byte store's marks are read within `budget`,
   * those `ahead` (see `readAhead`) started already: the entry's tags' marks and the record of
   * soft pattern purges, then — only when that record is newer than the entry — the soft marks
   * of the key's namespaces (`softPatternAt`).
   */
  invalidationState(key: string, entry: Invalidatable, budget = this.timeout, ahead?: MarksAhead): Maybe<InvalidationState> {
    const since = entry.since ?? entry.responseTime
    let stale = 0
    if (this.softPatterns.length > 0) {
      if (since < this.softForgottenBefore) stale = since
      for (const mark of this.softPatterns) if (mark.at >= since && mark.matches(key)) stale = Math.max(stale, mark.at)
    }
    const own = entry.tags
    if (own !== undefined && since < this.tagsForgottenBefore) return GONE
    /** Fold the marks of `tags` into the state; GONE once one is hard and newer than the entry. */
    const judge = (tags: readonly string[], marks: readonly ({ hard: number; soft: number } | undefined)[]): InvalidationState | undefined => {
      for (let i = 0; i < tags.length; i++) {
        const mark = marks[i]
        if (mark === undefined || tags[i] === SOFT_PATTERNS) continue
        if (mark.hard >= since) return GONE
        if (mark.soft >= since) stale = Math.max(stale, mark.soft)
      }
      return undefined
    }
    const result = (): InvalidationState => (stale === 0 ? OK : { state: 'stale', at: stale })
    // What this process knows already: its own tag invalidations and marks read before.
    const known = own?.map((tag) => this.tagMarks.get(tag))
    if (known !== undefined && judge(own!, known) === GONE) return GONE
    if (this.entries !== undefined) return result()
    const plan = this.planOf(key, own)
    const reads = this.markReads(plan, budget, ahead)
    const settle = (found: readonly (Entry | undefined)[]): Maybe<InvalidationState> => {
      const marks = found.map((mark, i) => {
        if (mark?.kind !== 'mark') return undefined
        this.noteMark(plan.tags[i], mark)
        return mark
      })
      if (judge(plan.tags, marks) === GONE) return GONE
      const last = plan.tags.length - 1
      const anySoft = plan.tags[last] === SOFT_PATTERNS ? (marks[last]?.soft ?? 0) : 0
      if (anySoft < since) return result()
      const at = this.softPatternAt(key, anySoft, budget)
      const apply = (soft: number): InvalidationState => {
        if (soft >= since) stale = Math.max(stale, soft)
        return result()
      }
      return isPromise(at) ? at.then(apply) : apply(at)
    }
    return whenAll(reads, settle)
  }

  /**
   * The latest soft pattern purge, in any process, of a namespace holding `key`: read from the
   * namespaces' soft marks when the record of soft pattern purges (SOFT_PATTERNS) says `anySoft`,
   * once per value of that record and key (kept in `softAnswers`). A purge writes its namespace's
   * mark before the record, so marks read after the record cover every purge it counts. Not kept
   * with a local tier: its copy of a namespace mark may be older than its copy of the record (each
   * within the tier's bound), and a kept answer would outlive that bound.
   */
  private softPatternAt(key: string, anySoft: number, budget: number): Maybe<number> {
    const known = this.softAnswers.get(key)
    if (known !== undefined && known.recordAt === anySoft) return known.at
    const names = namespacesOf(key)
    const reads = names.map((name) => this.read(markKey(namespaceTag(name)), true, budget))
    const settle = (found: readonly (Entry | undefined)[]): number => {
      let at = 0
      for (const mark of found) if (mark?.kind === 'mark') at = Math.max(at, mark.soft)
      if (this.store.localTier !== true) keepNewest(this.softAnswers, key, { recordAt: anySoft, at }, MAX_MARK_PLANS)
      return at
    }
    return whenAll(reads, settle)
  }

  /** The entry under `key` is judged by no mark (a Vary record, say): lookups stop reading any ahead. */
  forgetMarks(key: string): void {
    this.markPlans.delete(key)
  }

  /**
   * The reads of `plan`'s marks: those begun `ahead` where it read the same mark, the others now
   * (also those of a `getMany` that has not answered yet: `ahead` is meant for the entry it read).
   */
  private markReads(plan: MarkPlan, budget: number, ahead: MarksAhead | undefined): readonly Maybe<Entry | undefined>[] {
    if (ahead?.plan === plan && !ahead.reads.includes(PENDING)) return ahead.reads
    const known = ahead?.plan.keys
    return plan.keys.map((markKey) => {
      const at = known === undefined ? -1 : known.indexOf(markKey)
      return at === -1 || ahead!.reads[at] === PENDING ? this.read(markKey, true, budget) : ahead!.reads[at]
    })
  }

  /**
   * The marks an entry of `key` carrying `own` is judged by (byte stores): its tags and, with
   * `softShared`, the record of soft pattern purges, last; and the store keys of their marks. Kept
   * per key (see `markPlans`) so that a hit neither rebuilds them nor misses the chance to read
   * them ahead.
   */
  private planOf(key: string, own: readonly string[] | undefined): MarkPlan {
    const known = this.markPlans.get(key)
    if (known !== undefined && sameTags(known.own, own)) return known
    if (own === undefined) {
      // Untagged entries share one plan, kept for no key: a process serving many keys holds nothing per key.
      if (known !== undefined) this.markPlans.delete(key)
      return this.softShared ? UNKNOWN_PLAN : NO_MARKS
    }
    const tags = this.softShared ? [...own, SOFT_PATTERNS] : own
    const plan: MarkPlan = { own, tags, keys: tags.map(markKey) }
    keepNewest(this.markPlans, key, plan, MAX_MARK_PLANS)
    return plan
  }

  /** True when this process knows of an invalidation of one of `tags` (hard or soft) from `since` on. */
  tagsInvalidatedSince(tags: readonly string[], since: number): boolean {
    if (since < this.tagsForgottenBefore) return true
    for (const tag of tags) {
      const mark = this.tagMarks.get(tag)
      if (mark !== undefined && (mark.hard >= since || mark.soft >= since)) return true
    }
    return false
  }

  private noteMark(tag: string, mark: { hard: number; soft: number }): void {
    const known = this.tagMarks.get(tag)
    const hard = Math.max(known?.hard ?? 0, mark.hard)
    const soft = Math.max(known?.soft ?? 0, mark.soft)
    if (known !== undefined && known.hard === hard && known.soft === soft) return
    const dropped = keepNewest(this.tagMarks, tag, { hard, soft }, MAX_TAG_MARKS)
    if (dropped !== undefined) this.tagsForgottenBefore = Math.max(this.tagsForgottenBefore, dropped.hard, dropped.soft)
  }

  /**
   * One store call that must answer, within the timeout and counted towards the circuit breaker:
   * what it answers. Rejects when the store fails, does not answer in time, or is being skipped.
   */
  private async mustAnswer<T>(operation: string, call: () => Maybe<T>): Promise<T> {
    if (this.isOpen()) throw new StoreUnavailableError()
    try {
      const answer = call()
      const answered = isPromise(answer) ? await this.bounded(answer, operation) : answer
      this.succeeded()
      return answered
    } catch (error) {
      this.failed(error)
      throw asError(error)
    }
  }

  /** The store offers a lock shared by every process (`lock` and `unlock`). */
  get sharesLocks(): boolean {
    return typeof this.store.lock === 'function' && typeof this.store.unlock === 'function'
  }

  /**
   * Shared locks may be used now for locks of `lockTtl` ms: the store offers them and nothing
   * lately says a lock could be left behind (see `locksUnsettled`). A lock whose reply was lost
   * lives up to its ttl plus LOCK_SLACK, and nobody should poll it meanwhile.
   */
  locksUsable(lockTtl: number): boolean {
    return this.sharesLocks && !this.locksUnsettled(lockTtl + LOCK_SLACK)
  }

  /**
   * True while shared locks should not be used: the store is being skipped, failed within
   * `window` ms, or a lock call did (a lock whose reply or unlock was lost stays held until it
   * expires, and every process would poll it).
   */
  private locksUnsettled(window: number): boolean {
    return !this.available || this.failedWithin(window) || (this.lockFailedAt !== 0 && this.now() - this.lockFailedAt < window)
  }

  /**
   * Take the shared lock `name` for `ttlMs`: its token, `null` when another holder has it,
   * undefined when the store failed or did not answer within `budget`. A lock this process took
   * and could not release is handed back at once; one granted after the wait ended is released.
   */
  lock(name: string, ttlMs: number, budget = this.timeout): Promise<string | null | undefined> {
    const orphan = this.orphanLocks.get(name)
    if (orphan !== undefined) {
      this.orphanLocks.delete(name)
      return Promise.resolve(orphan)
    }
    let taking: Promise<string | null>
    try {
      taking = Promise.resolve(this.store.lock!(name, ttlMs))
    } catch (error) {
      taking = Promise.reject(error)
    }
    return race(taking, budget).then(
      (token) => {
        if (token !== TIMED_OUT) return token
        this.lockFailedAt = this.now()
        // Granted after we stopped waiting: give it back, or every process polls until it expires.
        void taking.then(
          (late) => (typeof late === 'string' ? this.unlock(name, late) : undefined),
          () => undefined,
        )
        return undefined
      },
      (error) => {
        this.lockFailedAt = this.now()
        this.report(asError(error))
        return undefined
      },
    )
  }

  /** Release a shared lock; one the store failed to release is kept, so the next miss here reuses it. */
  unlock(name: string, token: string): void {
    let releasing: Promise<unknown>
    try {
      releasing = Promise.resolve(this.store.unlock!(name, token))
    } catch (error) {
      releasing = Promise.reject(error)
    }
    releasing.catch((error) => {
      this.report(asError(error))
      if (this.orphanLocks.size >= MAX_ORPHAN_LOCKS) this.orphanLocks.clear()
      this.orphanLocks.set(name, token)
    })
  }

  /** The invalidation epoch now: record it when a computation starts, pass it to `invalidatedSince`. */
  get generation(): number {
    return this.epoch
  }

  /** True when an invalidation that began after epoch `since` matched `key` (or may have: see the log). */
  invalidatedSince(key: string, since: number): boolean {
    if (since >= this.epoch) return false
    if (since < this.forgotten) return true
    for (let i = this.invalidations.length - 1; i >= 0; i--) {
      const invalidation = this.invalidations[i]
      if (invalidation.epoch <= since) break
      if (invalidation.matches(key)) return true
    }
    return false
  }

  private recordInvalidation(matches: (key: string) => boolean): void {
    this.invalidations.push({ epoch: ++this.epoch, matches })
    if (this.invalidations.length > MAX_INVALIDATIONS) this.forgotten = this.invalidations.shift()!.epoch
  }

  /**
   * One round trip to the store within the timeout; rejects when the store does not answer in
   * time, fails, or is being skipped (circuit open). Object stores answer at once.
   */
  async ping(): Promise<void> {
    if (this.entries !== undefined) return
    await this.mustAnswer('get', () => this.store.get(PING_KEY))
  }

  /**
   * The entry under `key`, or undefined (missing, expired, corrupt, or the store failed).
   * Entries whose write is on its way are seen first, unless `fromStore` asks for the store's copy.
   * `budget` caps the wait below the store timeout, for a request that already spent part of it.
   */
  read(key: string, fromStore = false, budget = this.timeout): Maybe<Entry | undefined> {
    const t = storeCallStarted()
    if (this.entries !== undefined) return readOutcome(key, this.entries.getEntry(key), t)
    const pending = fromStore ? undefined : this.inFlight.get(key)
    if (pending !== undefined && !pending.invalidated) return pending.entry
    if (this.isOpen()) return undefined
    return this.ask(
      key,
      t,
      budget,
      () => this.store.get(key),
      (bytes) => (bytes === FAILED ? undefined : readOutcome(key, this.decode(key, bytes), t)),
    )
  }

  /**
   * One read call to the store for `key` (started at `t`), bounded by `budget`, handed to `use`:
   * what it answers, or FAILED when it throws, rejects or runs out of time (reported, published
   * and counted towards the circuit breaker).
   */
  private ask<T, R>(key: string, t: number, budget: number, call: () => Maybe<T>, use: (answer: T | typeof FAILED) => R): Maybe<R> {
    const failed = (error: unknown): R => {
      publishStoreRead(key, 'error', t)
      this.failed(error)
      return use(FAILED)
    }
    let raw: Maybe<T>
    try {
      raw = call()
    } catch (error) {
      return failed(error)
    }
    if (!isPromise(raw)) return use(raw)
    return this.bounded(raw, 'get', Math.max(1, Math.min(budget, this.timeout))).then((answer) => (this.succeeded(), use(answer)), failed)
  }

  /** What this process knows of `key` without asking the store: an object-store entry or a pending write. */
  peek(key: string): Entry | undefined {
    if (this.entries !== undefined) return this.entries.getEntry(key)
    const pending = this.inFlight.get(key)
    return pending === undefined || pending.invalidated ? undefined : pending.entry
  }

  /**
   * Make an entry visible to reads in this process before it is written (a write that follows
   * replaces it). For stores that hold objects, writes are immediate and this does nothing.
   */
  stage(key: string, entry: Entry): void {
    if (this.entries === undefined) this.inFlight.set(key, { entry, invalidated: false, settled: undefined })
  }

  /**
   * Store an entry; failures are reported, never thrown. Responses are counted in `writes` once
   * the store has answered: landed, failed (or skipped while the circuit is open), or refused
   * (a store's `set` resolving `false`, e.g. memcached's item-size limit). `startedAt`: when the
   * computation of `entry` began; on a byte store, a write that lands after another process began
   * invalidating the key since then is deleted again (`retractIfInvalidated`).
   */
  write(key: string, entry: Entry, ttlMs: number, startedAt?: number): Maybe<void> {
    const counted = entry.kind === 'response'
    const t = counted ? storeCallStarted() : 0
    if (this.entries !== undefined) {
      this.entries.setEntry(key, entry, ttlMs)
      if (counted) {
        this.writes.landed++
        publishStoreWrite(key, 'landed', t)
      }
      return
    }
    if (this.isOpen()) {
      if (counted) {
        this.writes.failed++
        publishStoreWrite(key, 'failed', t)
      }
      return
    }
    // A hit on this key reads the marks this entry needs with the entry (see readAhead).
    if (entry.kind === 'response' || entry.kind === 'value') this.planOf(key, entry.tags)
    else this.forgetMarks(key)
    let bytes: Uint8Array
    try {
      bytes = this.coder.encode(entry)
    } catch (error) {
      if (counted) {
        this.writes.failed++
        publishStoreWrite(key, 'failed', t)
      }
      this.report(asError(error))
      return
    }
    const slot: InFlight = { entry, invalidated: false, settled: undefined }
    const tally = counted ? { key, t, bytes: bytes.byteLength } : undefined
    // Whether the store refused or failed this write (then there is nothing to take back).
    let lost = false
    const attempt = () => {
      const answer = this.store.set(key, bytes, ttlMs)
      if (!isPromise(answer)) return answer
      return answer.then(
        (value) => ((lost = value === false), value),
        (error) => {
          lost = true
          throw error
        },
      )
    }
    const set = () => this.call('set', attempt, tally)
    const sweeps = this.sweepsOf(key)
    const written = sweeps === undefined ? set() : settledWithin(Promise.all(sweeps), this.sweepWait).then(() => (slot.invalidated ? undefined : set()))
    if (!isPromise(written)) return
    this.inFlight.set(key, slot)
    slot.settled = written.then(() => {
      if (this.inFlight.get(key) === slot) this.inFlight.delete(key)
      // An invalidation ran while this write was on its way: it must not bring the entry back.
      if (slot.invalidated) return this.remove(key)
      if (startedAt !== undefined && !lost) return this.retractIfInvalidated(key, startedAt, entry)
    })
    return slot.settled
  }

  /** Delete one key; failures are reported, never thrown. */
  remove(key: string): Maybe<void> {
    const pending = this.inFlight.get(key)
    if (pending !== undefined) pending.invalidated = true
    if (this.entries !== undefined) {
      this.store.delete(key)
      return
    }
    return this.call('delete', () => this.store.delete(key))
  }

  /**
   * Delete one key as an invalidation: a computation of it that began before (see
   * `generation`) does not store what it computed.
   */
  invalidateKey(key: string): Maybe<void> {
    this.recordInvalidation((candidate) => candidate === key)
    if (this.entries !== undefined) return this.remove(key)
    return this.markForWriters(key).then(() => this.remove(key))
  }

  /**
   * Before an invalidation of keys starting with `head` deletes anything from a byte store: record
   * its time for writes in other processes of entries computed before it, twice — on the
   * narrowest key namespace holding those keys (namespaceHolding(); wider, never narrower), and
   * on one mark every invalidation updates. Each such write, once landed, reads that one mark,
   * and only when it is newer than the write's computation the marks of its key's namespaces,
   * and deletes its entry again if one of them is (`retractIfInvalidated`). Either those reads see
   * this invalidation's marks, or the write landed before they were written, and so before the
   * deletion, which then removes it (on memcached: leaves it under a replaced generation). A mark
   * that cannot be written is reported; the deletion goes on.
   */
  private markForWriters(head: string): Promise<void> {
    return this.markTags([writersTag(namespaceHolding(head)), ANY_INVALIDATION], false).catch((error) => this.report(asError(error)))
  }

  /**
   * A write of `key` computed from `startedAt` on has landed: delete it again if an invalidation
   * of one of its namespaces began since, in any process (see `markForWriters`). This process's
   * own invalidations were checked before writing.
   */
  private async retractIfInvalidated(key: string, startedAt: number, written: Entry): Promise<void> {
    // Strictly newer: an invalidation in the very millisecond the computation began is taken to
    // have come first. Across processes that is within the clocks' skew anyway, and this
    // process's own invalidations were checked exactly before writing.
    const newer = (mark: Entry | undefined) => mark?.kind === 'mark' && mark.hard > startedAt
    // The common case: no invalidation anywhere since the computation began, one read.
    if (!newer(await this.read(markKey(ANY_INVALIDATION), true))) return
    const marks = await Promise.all(namespacesOf(key).map((name) => this.read(markKey(writersTag(name)), true)))
    if (!marks.some(newer)) return
    // Only this write's entry: a process may have stored a newer one, computed after the invalidation.
    if (!sameWrite(await this.read(key, true), written)) return
    debug('retracted: an invalidation from another process began while it was computed (%s)', key)
    await this.remove(key)
  }

  /** Empty the store; writes on their way must not bring their entries back afterwards. */
  async clear(): Promise<void> {
    this.recordInvalidation(() => true)
    // An object store deletes at once and never has writes on their way.
    if (this.entries !== undefined) return void (await this.store.clear?.())
    await this.markForWriters('')
    const landing = this.invalidateInFlight(() => true)
    await this.sweep(
      () => true,
      () => this.store.clear?.(),
    )
    await landing
  }

  /**
   * Delete every key matching the pattern; rejects when the store cannot do it. Resolves once
   * matching writes that were on their way have landed and been deleted again: a write can land
   * after the deletion (and, on memcached, under the generation the deletion just made), so
   * until then a reader — in any process — could still find the old entry.
   */
  async removeMatching(pattern: string): Promise<number> {
    let removed: unknown
    const matches = compilePattern(pattern)
    this.recordInvalidation(matches)
    if (this.entries !== undefined) {
      removed = await this.store.deleteMatching(pattern)
    } else {
      await this.markForWriters(pattern.slice(0, starAt(pattern)))
      const landing = this.invalidateInFlight(matches)
      removed = await this.sweep(matches, () => this.store.deleteMatching(pattern))
      await landing
    }
    return typeof removed === 'number' ? removed : 0
  }

  /** Mark matching writes on their way as invalidated; resolves when they have settled. */
  private invalidateInFlight(matches: (key: string) => boolean): Promise<unknown> | undefined {
    let settling: Promise<unknown>[] | undefined
    for (const [key, slot] of this.inFlight) {
      if (!matches(key)) continue
      slot.invalidated = true
      if (slot.settled !== undefined) (settling ??= []).push(slot.settled)
    }
    return settling === undefined ? undefined : Promise.all(settling)
  }

  /** Run a deletion that writes of matching keys wait for (byte stores only, see `sweeping`). */
  private async sweep<T>(matches: (key: string) => boolean, run: () => T | Promise<T>): Promise<T> {
    const done = Promise.resolve(run())
    const sweep = { matches, done: done.catch(() => undefined) }
    this.sweeping.add(sweep)
    try {
      return await done
    } finally {
      this.sweeping.delete(sweep)
    }
  }

  private sweepsOf(key: string): Promise<unknown>[] | undefined {
    if (this.sweeping.size === 0) return undefined
    const waits: Promise<unknown>[] = []
    for (const sweep of this.sweeping) if (sweep.matches(key)) waits.push(sweep.done)
    return waits.length === 0 ? undefined : waits
  }

  private decode(key: string, bytes: Uint8Array | undefined | null): Entry | undefined {
    if (bytes === undefined || bytes === null) return undefined
    const known = this.decoded.get(bytes)
    if (known !== undefined) return known
    try {
      const entry = this.coder.decode(bytes)
      this.decoded.set(bytes, entry)
      return entry
    } catch (error) {
      const err = error instanceof CorruptEntryError ? error : new CorruptEntryError(asError(error).message)
      debug('miss: %s (%s), deleting it', err.message, key)
      this.report(err)
      this.remove(key)
      return undefined
    }
  }

  /** One store call, bounded; `write`: a response write, counted in `writes` and published. */
  private call(operation: string, run: () => unknown, write?: { key: string; t: number; bytes: number }): Maybe<void> {
    const failed = (error: unknown) => {
      if (write !== undefined) {
        this.writes.failed++
        publishStoreWrite(write.key, 'failed', write.t, write.bytes)
      }
      this.failed(error)
    }
    let result: unknown
    try {
      result = run()
    } catch (error) {
      return failed(error)
    }
    const answered = (value: unknown) => {
      if (write !== undefined) {
        const outcome = value === false ? 'refused' : 'landed'
        this.writes[outcome]++
        publishStoreWrite(write.key, outcome, write.t, write.bytes)
      }
      this.succeeded()
    }
    if (!isPromise(result)) return answered(result)
    return this.bounded(result, operation).then(answered, failed)
  }

  /**
   * Race a store call against the timeout; the timer never keeps the process alive. When the
   * timer fires, one round of I/O still runs before the call counts as timed out: after the
   * event loop was busy for longer than the timeout, timers run before sockets are read, and
   * an answer that arrived in time would otherwise be blamed on the store (and count towards
   * the breaker).
   */
  private bounded<T>(promise: Promise<T>, operation: string, ms = this.timeout): Promise<T> {
    return race(promise, ms, true).then((value) => {
      if (value === TIMED_OUT) throw new StoreTimeoutError(operation, ms)
      return value
    })
  }

  private isOpen(): boolean {
    if (this.openUntil === 0) return false
    if (this.now() < this.openUntil) return true
    // Half-open: let calls through; the next failure opens the circuit again at once.
    this.openUntil = 0
    this.failures = this.failureThreshold - 1
    return false
  }

  /**
   * Failures since the store was last quiet for `coolDown` (successes in between do not reset
   * it: a store that answers reads but refuses every write is failing too). Reaching
   * `failureThreshold` emits the CACHET_STORE_FAILING warning, once per failure period.
   */
  private recentFailures = 0
  /** A CACHET_STORE_FAILING warning went out and no CACHET_STORE_RECOVERED since. */
  private warnedFailing = false

  private succeeded(): void {
    this.failures = 0
    // Hot path: one comparison while the store is healthy.
    if (this.recentFailures !== 0 && this.now() - this.lastFailure >= this.coolDown) this.recovered()
  }

  /** The store has worked for `coolDown` since its last failure: the failure period is over. */
  private recovered(): void {
    this.recentFailures = 0
    if (!this.warnedFailing) return
    this.warnedFailing = false
    debug('store %s recovered: caching again', storeName(this.store))
    process.emitWarning(`cachet: the store ${storeName(this.store)} works again; responses are cached again.`, {
      type: 'CachetWarning',
      code: 'CACHET_STORE_RECOVERED',
    })
  }

  private failed(error: unknown): void {
    const err = asError(error)
    this.lastFailure = this.now()
    this.report(err)
    if (++this.failures >= this.failureThreshold && this.openUntil === 0) {
      this.openUntil = this.now() + this.coolDown
      debug('store failed %d times in a row: skipping it for %d ms', this.failures, this.coolDown)
      this.report(new StoreUnavailableError())
    }
    if (++this.recentFailures >= this.failureThreshold && !this.warnedFailing) {
      this.warnedFailing = true
      process.emitWarning(
        `cachet: the store ${storeName(this.store)} is failing (${this.recentFailures} errors, the last: ${err.message}); ` +
          'requests are served uncached until it works again. Every error goes to the onError option of ' +
          'responseCache(), and to the log under DEBUG=cachet.',
        { type: 'CachetWarning', code: 'CACHET_STORE_FAILING' },
      )
    }
  }
}

/** Publish a read's outcome (when anyone listens) and hand the entry on. */
function readOutcome<T extends Entry | undefined>(key: string, entry: T, t: number): T {
  publishStoreRead(key, entry === undefined ? 'miss' : 'hit', t)
  return entry
}

/** Validate a list of cache tags (trimmed, deduplicated); a TypeError names what is wrong. */
export function checkTags(tags: unknown): string[] {
  if (!Array.isArray(tags) || tags.length === 0 || !tags.every((t) => typeof t === 'string' && t.trim() !== '')) {
    throw new TypeError(`tags must be a non-empty array of non-empty strings, got ${describe(tags)}`)
  }
  return [...new Set(tags.map((t: string) => t.trim()))]
}

/** What invalidationState() reads of an entry: its tags and when it was computed. */
export type Invalidatable = Pick<ResponseEntry, 'since' | 'responseTime' | 'tags'>

/** What invalidations mean for an entry read back (see `invalidationState`). */
export type InvalidationState = { state: 'ok' } | { state: 'gone' } | { state: 'stale'; at: number }
const OK: InvalidationState = Object.freeze({ state: 'ok' })
const GONE: InvalidationState = Object.freeze({ state: 'gone' })

/** The marks an entry of one key is judged by on a byte store (see `markPlans`). */
export interface MarkPlan {
  /** The entry's own tags. */
  own: readonly string[] | undefined
  /** Those and, with `softShared`, SOFT_PATTERNS, last. */
  tags: readonly string[]
  /** Where each tag's mark is stored (`markKey`). */
  keys: readonly string[]
}

/** What `Storage.ask` answers for a store call that failed or ran out of time. */
const FAILED: unique symbol = Symbol('cachet.failed')

/**
 * `settle(values)` once every read has answered: at once when none is a promise (a local tier, an
 * object store), else after them.
 */
function whenAll<T, R>(reads: readonly Maybe<T>[], settle: (values: readonly T[]) => Maybe<R>): Maybe<R> {
  if (!reads.some(isPromise)) return settle(reads as readonly T[])
  return Promise.all(reads).then(settle)
}

/**
 * Set `key` in a map kept in the order of use, newest last, of at most `max` entries: the oldest
 * goes beyond that, and is returned.
 */
function keepNewest<K, V>(map: Map<K, V>, key: K, value: V, max: number): V | undefined {
  map.delete(key)
  map.set(key, value)
  if (map.size <= max) return undefined
  const [oldest, dropped] = map.entries().next().value as [K, V]
  map.delete(oldest)
  return dropped
}

/** A mark of a `getMany` that has not answered yet (see `Storage.readMany`). */
const PENDING: Promise<undefined> = Promise.resolve(undefined)

/** Mark reads a lookup started before it read the entry they judge (see `Storage.readAhead`). */
export interface MarksAhead {
  readonly plan: MarkPlan
  readonly reads: readonly Maybe<Entry | undefined>[]
}

/** Whether `found` (read back from the store) is the entry `written` was: the same kind, computed at the same times. */
function sameWrite(found: Entry | undefined, written: Entry): boolean {
  if (found === undefined || found.kind !== written.kind) return false
  if (found.kind === 'response' && written.kind === 'response') return found.responseTime === written.responseTime && found.since === written.since
  if (found.kind === 'value' && written.kind === 'value') return found.storedAt === written.storedAt && found.since === written.since
  return false
}

/** Whether two entries carry the same tags, in the same order. */
function sameTags(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === b) return true
  if (a === undefined || b === undefined || a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/**
 * Marks whose bytes are kept as the first guess of their next compare-and-set (see `markBytes`):
 * a miss costs one round trip, not a wrong answer.
 */
const MAX_MARK_GUESSES = 256
/** `mark` raised to `hard` and `soft`, each kept where it is later already. */
function raise<M extends { hard: number; soft: number }>(mark: M, hard: number, soft: number): M {
  mark.hard = Math.max(mark.hard, hard)
  mark.soft = Math.max(mark.soft, soft)
  return mark
}

/** A fresh copy of the mark `entry` is, or a mark of no invalidation when it is none. */
function markOf(entry: Entry | undefined): TagMark {
  return entry?.kind === 'mark' ? { kind: 'mark', hard: entry.hard, soft: entry.soft } : { kind: 'mark', hard: 0, soft: 0 }
}

/** A raise of one mark waiting for the running one (see `Storage.raiseMark`): the latest times asked for, and its outcome. */
interface WaitingRaise {
  hard: number
  soft: number
  settled: Promise<void>
  resolve(): void
  reject(error: unknown): void
}

function waitingRaise(): WaitingRaise {
  const waiting = { hard: 0, soft: 0 } as WaitingRaise
  waiting.settled = new Promise<void>((resolve, reject) => Object.assign(waiting, { resolve, reject }))
  return waiting
}

/** Keys whose mark plan is kept (see `markPlans`). */
const MAX_MARK_PLANS = 10_000

/** Tags whose invalidation this process remembers; beyond that the oldest is forgotten (see tagMarks). */
const MAX_TAG_MARKS = 100_000
/**
 * Compare-and-set attempts of one mark before the invalidation reports failure: each failed one
 * means another process's mark landed in between, so this many in a row needs as many writers.
 */
const MARK_ATTEMPTS = 16
/** How long a tag mark is kept in a store: longer than the entries it may cover are kept. */
const MARK_TTL = 30 * 86_400_000

/** The tag whose soft mark stands for a soft pattern purge of `namespace` (see softInvalidate). */
function namespaceTag(namespace: string): string {
  return `~ns:${namespace}`
}

/**
 * The tag whose soft mark records the latest soft pattern purge of any namespace (see
 * softInvalidate): every hit on a byte store reads it with its entry.
 */
const SOFT_PATTERNS = '~soft-patterns'

/** The plan of an untagged entry, and of a key this process knows no tags of: the record of soft pattern purges. */
const UNKNOWN_PLAN: MarkPlan = Object.freeze({ own: undefined, tags: [SOFT_PATTERNS], keys: [markKey(SOFT_PATTERNS)] })
/** The same where soft pattern purges stay in-process (no `softShared`): no mark at all. */
const NO_MARKS: MarkPlan = Object.freeze({ own: undefined, tags: [], keys: [] })

/** The tag whose hard mark records the latest invalidation of any key, for writers (see markForWriters). */
const ANY_INVALIDATION = '~invalidations'

/** The tag whose hard mark records invalidations of `namespace` for writers (see markForWriters). */
function writersTag(namespace: string): string {
  return `~inv:${namespace}`
}

/** Where the literal head of a pattern ends: its first `*`, or its end. */
function starAt(pattern: string): number {
  const star = pattern.indexOf('*')
  return star === -1 ? pattern.length : star
}

/** Where a tag's mark is stored: outside every key the default key function makes (they never contain `~`). */
function markKey(tag: string): string {
  return `${RECORD_PREFIX}tag:${tag}`
}

/**
 * How much longer than its ttl a lock may live: a store that counts ttls in whole seconds
 * (memcached) rounds up.
 */
const LOCK_SLACK = 2000

/** Waiting for a key another process holds the lock for: the first pause between reads, and the longest (doubling in between), ms. */
export const POLL_FIRST = 10
export const POLL_MAX = 200

/** Orphaned locks remembered at most; beyond that they are forgotten (each expires on its own). */
const MAX_ORPHAN_LOCKS = 1000

/** Invalidations remembered for `invalidatedSince`; a computation older than all of them does not store. */
const MAX_INVALIDATIONS = 1024

/** The key `ping()` reads; nothing writes it, and reading it changes nothing. */
const PING_KEY = 'cachet-ping'

/** A write on its way (or an entry staged ahead of one). */
interface InFlight {
  entry: Entry
  invalidated: boolean
  /** The write and, once invalidated, the deletion after it; never rejects. Unset when staged. */
  settled: Promise<void> | undefined
}

/** A store as warnings name it: its `name` in quotes, or "(unnamed)". */
function storeName(store: Store): string {
  return typeof store.name === 'string' && store.name !== '' ? JSON.stringify(store.name) : '(unnamed)'
}

export function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error))
}

/**
 * Format `error`'s stack now. Until its `stack` is read, V8 keeps each captured frame's receiver
 * and function alive — for an error raised while a request was being handled, its request and
 * response — so an app that keeps the errors it is told of would keep those too.
 */
export function releaseFrames(error: Error): void {
  void error.stack
}
