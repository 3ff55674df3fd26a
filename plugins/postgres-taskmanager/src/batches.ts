import {count, duration, InFlightOutcomeUnknown, NoBatchInFlight, OpsError, plural, Progress} from 'ops-cli/base'

import type {Archive} from './archive.js'
import {CommitOutcomeUnknown} from './commit-outcome.js'
import type {TaskFilter} from './filter.js'
import {KeyShare, KeyShares} from './key-shares.js'
import type {BatchLimits, BatchOutcome, BatchRequest} from './task-manager-table.js'
import type {Throttle} from './throttle.js'

/** Anything that deletes one keyset batch in its own transaction: the raw-SQL table or the TypeORM path. */
export interface BatchDeleter {
  deleteBatch(request: BatchRequest): Promise<BatchOutcome>
  /** One round trip on the deleter's connection, so that it does not count as idle while the worker waits (keepAwake()). */
  ping(): Promise<void>
  /**
   * Whether every batch of its that deleted rows is on disk: true until one commits asynchronously, and again once a
   * later one that deletes rows commits synchronously (BatchRequest.durableWhenShort), as its COMMIT flushes the WAL
   * up to it, every batch before included.
   */
  readonly deletionsDurable?: boolean
}

/** Ids in (after, upTo]: one worker's share of the primary key. */
export interface IdRange {
  after: string
  upTo: string
}

export interface BatchPlan {
  filter: TaskFilter
  /** Disjoint ranges, one per worker, together covering the ids of the rows the plan counted (ClearPlan.span). */
  ranges: IdRange[]
  batchSize: number
  /** Adapt the batch size so a batch takes about this long; 0 keeps `batchSize` fixed. */
  targetMs: number
  maxBatchSize: number
  limits: BatchLimits
  /** Batches commit without waiting for the disk (batch-commit.ts): the run waits for the WAL flush before it reports. */
  asynchronousCommit?: boolean
  /** Pause between batches (as pt-archiver's --sleep), to leave room for other traffic. */
  sleepMs: number
  archive?: Archive
  /** With `archive`: the bytes of a deleted row's JSON line, as sampled by the plan; batches are kept under ARCHIVE_BATCH_BYTES. */
  archiveRowBytes?: number
  /** Checked before every batch: replica lag, autovacuum. */
  throttle?: Throttle
  /** Epoch ms after which no batch starts (--max-runtime). */
  deadline?: number
}

/** How the run ended: every range walked, or stopped by --max-runtime (the base handles Ctrl-C). */
export type StopReason = 'completed' | 'max-runtime'

/** What the run did, kept up to date batch by batch (reported in --json and by the bench). */
export interface BatchStats {
  batches: number
  deleted: number
  /** Rows a batch picked but could not delete: changed so they no longer matched, gone, or locked. */
  skipped: number
  links: number
  longestTransactionMs: number
  batchSize: number
  retries: number
  /** Walks over the key range: a second one picks up rows skipped while they were locked or being updated. */
  passes: number
  workers: number
  /** Times a worker done with its range took over part of a busier worker's (KeyShares). */
  takeovers: number
  pausedMs: number
  /**
   * Rows that matched the plan and still match the filter when the run ended (null until counted): passed over while
   * another session held them locked, or never changed since the plan (a walk that missed them). A re-run is needed.
   */
  stillMatching: number | null
  /**
   * Other rows of the plan's id range that match the filter when the run ended (null until counted): changed into it
   * after their batch had passed (a task that finished, for --status DONE), or inserted with an id the plan covers.
   * They did not match the plan; a later run deletes them.
   */
  newlyMatching: number | null
  stoppedBy: StopReason | null
}

export const newStats = (batchSize: number, workers = 1): BatchStats => ({
  batches: 0,
  deleted: 0,
  skipped: 0,
  links: 0,
  longestTransactionMs: 0,
  batchSize,
  retries: 0,
  passes: 0,
  workers,
  takeovers: 0,
  pausedMs: 0,
  stillMatching: null,
  newlyMatching: null,
  stoppedBy: null,
})

/** What matches the filter in the plan's id range once a walk is over (BatchWork.countLeft). */
export interface Left {
  /** Rows that matched the plan: passed over (`passedOver`) or never changed since the plan. */
  planned: number
  /** Every row that matches, those included. */
  matching: number
}

/** The deleters (one per range), how to count what is left, and how to make asynchronously committed batches durable. */
export interface BatchWork {
  deleters: BatchDeleter[]
  /** `passedOver`: the ids batches passed over while another session held them locked (BatchOutcome.passedOver). */
  countLeft(passedOver: readonly string[]): Promise<Left>
  /** Where the server's WAL ends now: after a walk, past the commit record of every batch it committed. */
  walPosition(): Promise<string>
  /** Whether the server has flushed its WAL to disk up to `position`. */
  walFlushedTo(position: string): Promise<boolean>
}

const MIN_BATCH = 10
/**
 * --archive: the JSON lines of a batch come back in one result and are written at once, so a batch holds at most this
 * much of them (rows of 300 KB at the starting size of 5,000 made one string past V8's limit of 512 MB: a crash).
 */
export const ARCHIVE_BATCH_BYTES = 32 * 1024 * 1024
const MAX_RETRIES = 5
/** A row still matching after this many walks keeps being changed or locked: report it and let the user re-run. */
export const MAX_PASSES = 3
/** statement_timeout / query_canceled, lock_timeout, deadlock, serialization: the batch rolled back and can be retried smaller. */
const RETRYABLE = new Set(['57014', '55P03', '40P01', '40001'])
const LOCK_NOT_AVAILABLE = '55P03'

/**
 * How long the run waits for the server to flush its WAL past the last batch: its WAL writer does within three
 * wal_writer_delays (30 s at most).
 */
const WAL_FLUSH_TIMEOUT_MS = 60_000
const WAL_FLUSH_POLL_MS = 10

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** `promise`, or a rejection after `ms` (a connection that no longer answers). */
const within = <T>(promise: Promise<T>, ms: number): Promise<T> =>
  Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms).unref())])

/**
 * pt-archiver's loop, per worker: take the next N matching ids in primary-key
 * order, delete those that still match (and their link rows) in one short transaction,
 * commit, repeat after the greatest id picked. A range ends only when a batch
 * picks no row at all, never because fewer rows were deleted than picked. A
 * worker done with its range takes over the far half of the busiest other one
 * (KeyShares), so the workers end together. When
 * every range is walked, the rows of the planned id range that match are counted: those that matched the
 * plan (passed over while locked, or unchanged since the plan) and those that came to match after their batch
 * had passed; while rows of the plan remain, the ranges are walked again (up to MAX_PASSES), not for the
 * others, which a live application makes without end (tasks finishing, for --status DONE). Stops between
 * batches when `signal` aborts or the deadline passes; every committed batch is final, so a re-run simply finds what is left. Where
 * batches commit asynchronously, a walk that did not end on a synchronous short batch
 * notes where the WAL ends and waits, before it reports, until the server has flushed
 * it that far: what it reports deleted is then as durable as the one statement is
 * after its COMMIT.
 */
export async function* deleteInBatches(work: BatchWork, plan: BatchPlan, signal: AbortSignal, stats: BatchStats): AsyncGenerator<Progress> {
  /** With asynchronous batches: where the WAL ends once a walk is over, past every batch it committed. */
  const walEnd = async (): Promise<string | undefined> => {
    if (!plan.asynchronousCommit) return undefined
    try {
      return await work.walPosition()
    } catch (error) {
      throw notWrittenToDisk(error)
    }
  }
  /** Waits until the server has flushed its WAL to `position`. */
  const durable = async (position: string | undefined, timeoutMs = WAL_FLUSH_TIMEOUT_MS) => {
    if (position === undefined) return
    const deadline = Date.now() + timeoutMs
    try {
      while (!(await work.walFlushedTo(position))) {
        if (Date.now() >= deadline) throw new Error(`the server had not flushed its WAL to ${position} after ${duration(timeoutMs)}`)
        await sleep(WAL_FLUSH_POLL_MS)
      }
    } catch (error) {
      throw notWrittenToDisk(error)
    }
  }
  const passedOver = new Set<string>()
  for (;;) {
    stats.passes++
    try {
      yield* walkRanges(work.deleters, plan, signal, stats, passedOver)
    } catch (error) {
      // A worker failed: the batches committed so far are still waited for, briefly, where the main connection answers.
      if (plan.asynchronousCommit)
        await within(
          walEnd().then((end) => durable(end, 5000)),
          6000,
        ).catch(() => {})
      throw error
    }
    // Each worker's deletions durable (its last deleting batch committed synchronously): so are all of them; else wait.
    const committed = work.deleters.every((deleter) => deleter.deletionsDurable) ? undefined : await walEnd()
    if (signal.aborted) {
      await durable(committed)
      return
    }
    const left = await work.countLeft([...passedOver])
    stats.stillMatching = left.planned
    stats.newlyMatching = left.matching - left.planned
    // Before anything is reported: what the run says it deleted stays deleted, a crash of the server included.
    await durable(committed)
    if (stats.stoppedBy === 'max-runtime') return
    if (stats.stillMatching === 0 || stats.passes >= MAX_PASSES) break
    yield {
      done: stats.deleted,
      note: `${plural(
        stats.stillMatching,
        'row of the plan still matches (locked when its batch came)',
        'rows of the plan still match (locked when their batch came)',
      )}: walking again`,
    }
    await sleep(100)
  }
  stats.stoppedBy = 'completed'
}

/** Runs one worker per range and yields their progress as it comes; a worker waits until its event was taken. */
async function* walkRanges(
  deleters: BatchDeleter[],
  plan: BatchPlan,
  signal: AbortSignal,
  stats: BatchStats,
  passedOver: Set<string>,
): AsyncGenerator<Progress> {
  const events: {progress: Progress; taken: () => void}[] = []
  let wake: (() => void) | undefined
  const push = (progress: Progress) =>
    new Promise<void>((taken) => {
      events.push({progress, taken})
      wake?.()
    })
  // One worker failing stops the others between batches, as Ctrl-C does.
  const stop = new AbortController()
  const onAbort = () => stop.abort()
  signal.addEventListener('abort', onAbort)
  let failure: unknown
  let running = plan.ranges.length
  const shares = new KeyShares(plan.ranges)
  // A worker walks its share, then the far half of the busiest other one, until none is worth splitting.
  const work = async (deleter: BatchDeleter, first: KeyShare) => {
    // The batch size a worker has adapted to goes with it to the share it takes over.
    let size = plan.batchSize
    // Every share a worker gets is closed once it is done with it, walked or not (stopped), so no worker waits on it forever.
    for (let share: KeyShare | undefined = first; share; share = await shares.takeOver()) {
      try {
        if (stop.signal.aborted) continue
        if (share !== first) {
          stats.takeovers++
          await push({done: stats.deleted, note: `a worker took over ids ${share.after}-${share.upTo} from a busier one`})
        }
        size = await walkRange(deleter, share, size, plan, stop.signal, stats, passedOver, push)
      } finally {
        share.close()
      }
    }
  }
  for (const [i, deleter] of deleters.entries()) {
    work(deleter, shares.at(i))
      .catch((error: unknown) => {
        failure ??= error
        stop.abort()
      })
      .finally(() => {
        running--
        wake?.()
      })
  }
  try {
    while (running > 0 || events.length > 0) {
      const next = events.shift()
      if (next) {
        yield next.progress
        // The consumer asked for more: the worker may go on (so an abort on this event stops it before its next batch).
        next.taken()
      } else await new Promise<void>((resolve) => (wake = resolve))
    }
  } finally {
    signal.removeEventListener('abort', onAbort)
    for (const event of events.splice(0)) event.taken()
  }
  if (failure) throw explain(failure, plan.asynchronousCommit ?? false)
}

async function walkRange(
  deleter: BatchDeleter,
  share: KeyShare,
  startSize: number,
  plan: BatchPlan,
  signal: AbortSignal,
  stats: BatchStats,
  passedOver: Set<string>,
  push: (p: Progress) => Promise<void>,
): Promise<number> {
  // The largest average size of an archived row seen so far (the plan's sample first): it caps the batch size.
  let rowBytes = plan.archive ? (plan.archiveRowBytes ?? 0) : 0
  const withinArchiveBudget = (n: number) =>
    rowBytes > 0 ? Math.min(n, Math.max(MIN_BATCH, Math.floor(ARCHIVE_BATCH_BYTES / rowBytes))) : n
  const archiveRows = async (rows: string[]) => {
    if (rows.length) rowBytes = Math.max(rowBytes, rows.reduce((sum, row) => sum + Buffer.byteLength(row), 0) / rows.length)
    await plan.archive!.append(rows)
  }
  let size = withinArchiveBudget(startSize)
  let retries = 0
  // Set after a lock_timeout: the retry passes over the locked rows instead of waiting for them again.
  let skipLocked = false
  const pastDeadline = () => plan.deadline !== undefined && Date.now() >= plan.deadline
  while (!signal.aborted) {
    if (plan.throttle) stats.pausedMs = await plan.throttle.wait(signal, plan.deadline, (note) => void push({done: stats.deleted, note}))
    if (signal.aborted) return size
    if (pastDeadline()) {
      stats.stoppedBy = 'max-runtime'
      return size
    }
    const started = performance.now()
    const mark = plan.archive?.mark()
    let outcome: BatchOutcome
    try {
      outcome = await deleter.deleteBatch({
        filter: plan.filter,
        afterId: share.after,
        upToId: share.upTo,
        limit: size,
        limits: plan.limits,
        withRows: plan.archive !== undefined,
        maxBytes: plan.archive ? ARCHIVE_BATCH_BYTES : undefined,
        skipLocked,
        beforeCommit: plan.archive ? archiveRows : undefined,
        durableWhenShort: plan.asynchronousCommit,
      })
    } catch (error) {
      // A batch that may have committed keeps its lines: a row archived twice is restored once, a row not archived is lost.
      if (error instanceof CommitOutcomeUnknown) throw unknownCommit(error, plan)
      if (plan.archive && mark !== undefined) await plan.archive.truncate(mark).catch(() => {})
      const code = (error as {code?: string}).code
      if (code && RETRYABLE.has(code) && retries < MAX_RETRIES && !signal.aborted) {
        retries++
        stats.retries++
        if (code === LOCK_NOT_AVAILABLE) skipLocked = true
        size = Math.max(MIN_BATCH, Math.floor(size / 2))
        await push({done: stats.deleted, note: `batch rolled back (${(error as Error).message}); retrying with ${size} rows`})
        await sleep(200 * retries)
        continue
      }
      throw error
    }
    retries = 0
    skipLocked = false
    const elapsed = performance.now() - started
    stats.batches++
    stats.deleted += outcome.deleted
    stats.skipped += outcome.skipped
    stats.links += outcome.links
    for (const id of outcome.passedOver ?? []) passedOver.add(id)
    stats.longestTransactionMs = Math.max(stats.longestTransactionMs, elapsed)
    // No matching row left after afterId in this range (a short batch is not the end: rows may have been skipped).
    if (outcome.scannedTo === undefined) return size
    share.advance(outcome.scannedTo)
    const skipped = stats.skipped > 0 ? `, ${count(stats.skipped)} skipped (changed or locked)` : ''
    await push({
      done: stats.deleted,
      batch: {number: stats.batches, size: outcome.deleted, ms: elapsed},
      note: `last id ${share.after}${skipped}`,
    })
    if (plan.targetMs > 0) size = nextSize(size, elapsed, plan.targetMs, plan.maxBatchSize)
    size = withinArchiveBudget(size)
    stats.batchSize = size
    if (plan.sleepMs > 0 && !signal.aborted) await sleep(plan.sleepMs)
  }
  return size
}

/** Splits (min - 1, max] into `n` disjoint ranges of about equal width. */
export function splitIdRange(min: string, max: string, n: number): IdRange[] {
  const lo = BigInt(min) - 1n
  const hi = BigInt(max)
  const width = hi - lo
  const parts = BigInt(Math.max(1, Math.min(n, Number(width > 0n ? width : 1n))))
  const ranges: IdRange[] = []
  for (let i = 0n; i < parts; i++) {
    ranges.push({after: String(lo + (width * i) / parts), upTo: String(lo + (width * (i + 1n)) / parts)})
  }
  return ranges
}

/** Grows or shrinks the batch toward the target duration, at most 2x per step. */
export function nextSize(size: number, elapsedMs: number, targetMs: number, max: number): number {
  const ratio = Math.min(2, Math.max(0.5, targetMs / Math.max(1, elapsedMs)))
  return Math.min(max, Math.max(MIN_BATCH, Math.round(size * ratio)))
}

/**
 * Said when the connection was lost with batches committed asynchronously: only a crash of the server itself undoes them,
 * and only those whose commit had not reached its disk.
 */
const RECENT_BATCHES_MAY_BE_UNDONE =
  ' If the server itself went down, its recovery may also undo the batches committed in its last moment ' +
  '(they commit asynchronously, and the run waits for them to reach the disk only at its end; --synchronous-commit waits at each batch).'

/** The wait for the WAL flush after the last batch failed: every batch is committed, the last ones perhaps not yet on disk. */
function notWrittenToDisk(error: unknown): NoBatchInFlight {
  return new NoBatchInFlight(
    `Every batch was committed, but ops could not see the server write them to disk (${(error as Error).message}).` +
      `${RECENT_BATCHES_MAY_BE_UNDONE} Run the same command again: it deletes what is left.`,
    {cause: error},
  )
}

/** The run stops: whether the batch in flight committed, only the server knew. */
function unknownCommit(error: CommitOutcomeUnknown, plan: BatchPlan): InFlightOutcomeUnknown {
  const kept = plan.archive
    ? ` Its rows stay in the archive ${plan.archive.path} either way; those it did not delete are archived again by the next run ` +
      '(restore skips an id already in the table).'
    : ''
  return new InFlightOutcomeUnknown(
    `${error.message}: the server may have committed that batch or rolled it back.` +
      `${kept}${plan.asynchronousCommit ? RECENT_BATCHES_MAY_BE_UNDONE : ''} Run the same command again: it deletes what is left.`,
    {cause: error.cause},
  )
}

function explain(error: unknown, asynchronousCommit: boolean): unknown {
  if (error instanceof OpsError) return error
  const e = error as {code?: string; message?: string; constraint?: string; table?: string}
  if (e.code === '23503') {
    return new OpsError(
      `${e.message}: another table still references rows being deleted (constraint ${e.constraint ?? '?'}). ` +
        'That batch was rolled back. Delete or detach the referencing rows first, or narrow the filter.',
      {cause: error},
    )
  }
  const undone = asynchronousCommit ? RECENT_BATCHES_MAY_BE_UNDONE : ''
  // Lost while idle between batches: pg then refuses every query at once, without sending it ("not queryable").
  if (/not queryable/i.test(e.message ?? ''))
    return new NoBatchInFlight(
      `The database connection was lost between batches (${e.message}): no batch was in flight.${undone} ` +
        'Run the same command again: it deletes what is left.',
      {cause: error},
    )
  // Lost during a batch's statement (terminated, reset).
  if (e.code === '57P01' || e.code === '57P02' || e.code === '57P03' || /Connection terminated|ECONNRESET/i.test(e.message ?? '')) {
    return new OpsError(
      `The database connection was lost (${e.message}). The batch in flight was rolled back by the server.` +
        (undone ? `${undone} Run the same command again: it deletes what is left.` : ''),
      {cause: error},
    )
  }
  return error
}
