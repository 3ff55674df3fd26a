/** Drives clear --archive-table and restore in-process (no CLI), and reads both tables for the checks. */
import type {DestructiveOperation, Plan} from 'ops-cli/base'
import pg from 'pg'

import {ClearOperation, ClearPlan} from '../../src/clear-operation.js'
import type {TaskFilter} from '../../src/filter.js'
import {RestoreOperation, RestoreOptions, RestorePlan} from '../../src/restore-operation.js'

/** Connect, plan, run every step (aborting after `abortAfterBatches` progress events), disconnect. */
export async function runDirect<P extends Plan>(operation: DestructiveOperation<P>, abortAfterBatches?: number): Promise<{plan: P; done: number}> {
  await operation.connect()
  try {
    const plan = await operation.plan()
    const controller = new AbortController()
    let done = 0
    let batches = 0
    for (const step of operation.steps(plan)) {
      for await (const progress of step.run(controller.signal)) {
        done = progress.done
        if (abortAfterBatches !== undefined && ++batches >= abortAfterBatches) controller.abort()
      }
    }
    return {plan, done}
  } finally {
    await operation.disconnect()
  }
}

export function clearIntoArchive(url: string, archiveTable: string, filter: TaskFilter, options: {useCursor: boolean; batchSize?: number}): Promise<{plan: ClearPlan; done: number}> {
  return runDirect(
    new ClearOperation({
      url,
      table: 'task_manager_taskmanager',
      filter,
      useCursor: options.useCursor,
      useOrm: !options.useCursor,
      batchSize: options.batchSize ?? 7,
      targetBatchMs: 0,
      limits: {statementTimeout: '30s', lockTimeout: '2s'},
      sleepMs: 0,
      archiveTable,
    }),
  )
}

export function restoreDirect(url: string, options: Partial<RestoreOptions>, abortAfterBatches?: number): Promise<{plan: RestorePlan; done: number}> {
  return runDirect(new RestoreOperation({url, table: 'task_manager_taskmanager', filter: {}, window: {}, batchSize: 5, ...options}), abortAfterBatches)
}

/** The archive's rows as TaskManager row text (archived_at dropped), keyed by id: comparable with rowTexts(). */
export async function archivedTexts(db: pg.Client, archive: string): Promise<Map<string, string>> {
  const {rows} = await db.query(`SELECT a.id::text, jsonb_populate_record(NULL::task_manager_taskmanager, to_jsonb(a))::text AS row FROM ${archive} a ORDER BY a.id`)
  return new Map(rows.map((r) => [r.id as string, r.row as string]))
}

/** Ids in both tables, and ids of `original` in neither: both must stay empty whatever was interrupted. */
export async function placement(db: pg.Client, archive: string, original: Iterable<string>): Promise<{inBoth: string[]; inNeither: string[]}> {
  const live = new Set((await db.query('SELECT id::text FROM task_manager_taskmanager')).rows.map((r) => r.id as string))
  const archived = new Set((await db.query(`SELECT id::text FROM ${archive}`)).rows.map((r) => r.id as string))
  const ids = [...original]
  return {inBoth: ids.filter((id) => live.has(id) && archived.has(id)), inNeither: ids.filter((id) => !live.has(id) && !archived.has(id))}
}
