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

/**
 * The live rows and the archived ones (as TaskManager row text) in one map, and
 * the ids found in both: after any interruption the map must equal the original.
 */
export async function bothTables(db: pg.Client, archive: string): Promise<{union: Map<string, string>; inBoth: string[]}> {
  const {rows} = await db.query('SELECT t.id::text AS id, t::text AS row FROM task_manager_taskmanager t ORDER BY t.id')
  const union = new Map(rows.map((r) => [r.id as string, r.row as string]))
  const inBoth: string[] = []
  for (const [id, text] of await archivedTexts(db, archive)) {
    if (union.has(id)) inBoth.push(id)
    else union.set(id, text)
  }
  return {union: new Map([...union].sort(([a], [b]) => Number(a) - Number(b))), inBoth}
}

/**
 * A test-only statement trigger on `table` that holds every INSERT and DELETE
 * statement for `seconds` (pg_sleep): a batch's statement, and so its open
 * transaction, is then easy to catch in flight.
 */
export async function holdStatements(db: pg.Client, table: string, seconds = 0.3): Promise<void> {
  await db.query(`CREATE OR REPLACE FUNCTION ops_test_hold() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_sleep(TG_ARGV[0]::float8); RETURN NULL; END $$`)
  await db.query(`DROP TRIGGER IF EXISTS ops_test_hold ON ${table}`)
  await db.query(
    `CREATE TRIGGER ops_test_hold BEFORE INSERT OR DELETE ON ${table} FOR EACH STATEMENT EXECUTE FUNCTION ops_test_hold('${seconds}')`,
  )
}

export async function releaseStatements(db: pg.Client, table: string): Promise<void> {
  await db.query(`DROP TRIGGER IF EXISTS ops_test_hold ON ${table}`)
}

/** Whether a connection of `application` (a prefix: workers add a suffix) is inside a statement held by holdStatements(). */
export async function statementHeld(db: pg.Client, application: string): Promise<boolean> {
  const {rows} = await db.query(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND application_name LIKE $1 || '%' AND state = 'active' AND wait_event = 'PgSleep'`,
    [application],
  )
  return rows[0].n > 0
}

/** Waits until the server has ended every backend of `application` (a killed client's backend rolls back first). */
export async function backendsGone(db: pg.Client, application: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const {rows} = await db.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE $1 || '%'`,
      [application],
    )
    if (rows[0].n === 0) return
    if (Date.now() > deadline) throw new Error(`backends of ${application} still there after ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

/** The archive table exactly as taskmanager:clear --archive-table creates it, made beforehand (to attach a trigger). */
export async function createArchiveTable(db: pg.Client, archive: string): Promise<void> {
  await db.query(
    `CREATE TABLE ${archive} (
       LIKE task_manager_taskmanager, archived_at timestamp with time zone NOT NULL DEFAULT now(), PRIMARY KEY (id))`,
  )
}
