/** Drives clear --archive-table and restore in-process (no CLI), and reads both tables for the checks. */
import pg from 'pg'

import type {TaskFilter} from '../../src/filter.js'
import {RestoreOperation, RestoreOptions, RestorePlan} from '../../src/restore-operation.js'
import {clearDirect, DirectRun, runDirect} from './direct.js'

export function clearIntoArchive(url: string, archiveTable: string, filter: TaskFilter, options: {useCursor: boolean}): Promise<DirectRun> {
  return clearDirect(url, filter, {useCursor: options.useCursor, useOrm: !options.useCursor, batchSize: 7, archiveTable})
}

export function restoreDirect(
  url: string,
  options: Partial<RestoreOptions>,
  abortAfterBatches?: number,
): Promise<{plan: RestorePlan; done: number}> {
  return runDirect(
    new RestoreOperation({url, table: 'task_manager_taskmanager', filter: {}, window: {}, batchSize: 5, ...options}),
    abortAfterBatches,
  )
}

/** The archive's rows as TaskManager row text (archived_at dropped), keyed by id: comparable with rowTexts(). */
export async function archivedTexts(db: pg.Client, archive: string): Promise<Map<string, string>> {
  const {rows} = await db.query(
    `SELECT a.id::text, jsonb_populate_record(NULL::task_manager_taskmanager, to_jsonb(a))::text AS row FROM ${archive} a ORDER BY a.id`,
  )
  return new Map(rows.map((r) => [r.id as string, r.row as string]))
}

/** Ids in both tables, and ids of `original` in neither: both must stay empty whatever was interrupted. */
export async function placement(
  db: pg.Client,
  archive: string,
  original: Iterable<string>,
): Promise<{inBoth: string[]; inNeither: string[]}> {
  const live = new Set((await db.query('SELECT id::text FROM task_manager_taskmanager')).rows.map((r) => r.id as string))
  const archived = new Set((await db.query(`SELECT id::text FROM ${archive}`)).rows.map((r) => r.id as string))
  const ids = [...original]
  return {inBoth: ids.filter((id) => live.has(id) && archived.has(id)), inNeither: ids.filter((id) => !live.has(id) && !archived.has(id))}
}
