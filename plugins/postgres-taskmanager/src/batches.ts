import {OpsError, Progress} from 'ops-cli/base'

import type {Archive} from './archive.js'
import type {TaskFilter} from './filter.js'
import type {BatchLimits, BatchOutcome, BatchRequest} from './task-manager-table.js'

/** Anything that deletes one keyset batch in its own transaction: the raw-SQL table or the TypeORM path. */
export interface BatchDeleter {
  deleteBatch(request: BatchRequest): Promise<BatchOutcome>
}

export interface BatchPlan {
  filter: TaskFilter
  /** Max id when the plan was made: rows inserted later are not touched. */
  upToId: string
  batchSize: number
  /** Adapt the batch size so a batch takes about this long; 0 keeps `batchSize` fixed. */
  targetMs: number
  maxBatchSize: number
  limits: BatchLimits
  /** Pause between batches (as pt-archiver's --sleep), to leave room for other traffic. */
  sleepMs: number
  archive?: Archive
}

/** What the run did, kept up to date batch by batch (reported in --json and by the bench). */
export interface BatchStats {
  batches: number
  deleted: number
  links: number
  longestTransactionMs: number
  batchSize: number
  retries: number
}

export const newStats = (batchSize: number): BatchStats => ({batches: 0, deleted: 0, links: 0, longestTransactionMs: 0, batchSize, retries: 0})

const MIN_BATCH = 10
const MAX_RETRIES = 5
/** statement_timeout / query_canceled, lock_timeout, deadlock, serialization: the batch rolled back and can be retried smaller. */
const RETRYABLE = new Set(['57014', '55P03', '40P01', '40001'])

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/**
 * pt-archiver's loop: take the next N matching ids in primary-key order, delete
 * exactly those (and their link rows) in one short transaction, commit, repeat.
 * Stops between batches when `signal` aborts; every committed batch is final,
 * so a re-run simply finds what is left.
 */
export async function* deleteInBatches(deleter: BatchDeleter, plan: BatchPlan, signal: AbortSignal, stats: BatchStats): AsyncGenerator<Progress> {
  let afterId = '0'
  let size = plan.batchSize
  let retries = 0
  while (!signal.aborted) {
    const started = performance.now()
    const mark = plan.archive?.mark()
    let outcome: BatchOutcome
    try {
      outcome = await deleter.deleteBatch({
        filter: plan.filter,
        afterId,
        upToId: plan.upToId,
        limit: size,
        limits: plan.limits,
        withRows: plan.archive !== undefined,
        beforeCommit: plan.archive ? (rows) => plan.archive!.append(rows) : undefined,
      })
    } catch (error) {
      if (plan.archive && mark !== undefined) await plan.archive.truncate(mark).catch(() => {})
      const code = (error as {code?: string}).code
      if (code && RETRYABLE.has(code) && retries < MAX_RETRIES && !signal.aborted) {
        retries++
        stats.retries++
        size = Math.max(MIN_BATCH, Math.floor(size / 2))
        yield {done: stats.deleted, note: `batch rolled back (${(error as Error).message}); retrying with ${size} rows`}
        await sleep(200 * retries)
        continue
      }
      throw explain(error)
    }
    retries = 0
    const elapsed = performance.now() - started
    stats.batches++
    stats.deleted += outcome.deleted
    stats.links += outcome.links
    stats.longestTransactionMs = Math.max(stats.longestTransactionMs, elapsed)
    if (outcome.lastId !== undefined) afterId = outcome.lastId
    const note = `batch ${stats.batches} of ${size} in ${Math.round(elapsed)}ms, last id ${afterId}`
    yield {done: stats.deleted, note}
    // Fewer rows than asked: FOR UPDATE already skipped rows that stopped matching, so the range is exhausted.
    if (outcome.lastId === undefined || outcome.deleted < size) break
    if (plan.targetMs > 0) size = nextSize(size, elapsed, plan.targetMs, plan.maxBatchSize)
    stats.batchSize = size
    if (plan.sleepMs > 0 && !signal.aborted) await sleep(plan.sleepMs)
  }
}

/** Grows or shrinks the batch toward the target duration, at most 2x per step. */
export function nextSize(size: number, elapsedMs: number, targetMs: number, max: number): number {
  const ratio = Math.min(2, Math.max(0.5, targetMs / Math.max(1, elapsedMs)))
  return Math.min(max, Math.max(MIN_BATCH, Math.round(size * ratio)))
}

function explain(error: unknown): unknown {
  const e = error as {code?: string; message?: string; constraint?: string; table?: string}
  if (e.code === '23503') {
    return new OpsError(
      `${e.message}: another table still references rows being deleted (constraint ${e.constraint ?? '?'}). ` +
        'That batch was rolled back. Delete or detach the referencing rows first, or narrow the filter.',
      {cause: error},
    )
  }
  if (e.code === '57P01' || e.code === '57P02' || e.code === '57P03' || /Connection terminated|ECONNRESET/i.test(e.message ?? '')) {
    return new OpsError(`The database connection was lost (${e.message}). The batch in flight was rolled back by the server.`, {cause: error})
  }
  return error
}
