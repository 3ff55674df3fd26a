import {count, OpsError, UsageError} from 'ops-cli/base'
import type pg from 'pg'

import {TaskFilter, whereClause} from './filter.js'
import {parseTableName, qualified, quoteIdent, TableName} from './table-name.js'

/** The one column an archive table has beyond the TaskManager table's own: when its row was moved there. */
export const ARCHIVED_AT = 'archived_at'

interface Column {
  name: string
  type: string
}

/** Restore's extra filters, on the archive's own column. */
export interface ArchivedWindow {
  after?: Date
  before?: Date
}

export interface MoveBackOutcome {
  /** Archived rows the batch looked at (restored or skipped). */
  seen: number
  restored: number
  /** Their id already exists in the TaskManager table: left in the archive, never overwritten. */
  skipped: number
  lastId?: string
}

async function columnsOf(client: pg.Client, table: TableName): Promise<Column[]> {
  const {rows} = await client.query(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [qualified(table)],
  )
  return rows as Column[]
}

/** What is wrong with an existing table as an archive of `task`, or undefined when it fits. */
function mismatch(task: Column[], found: Column[]): string | undefined {
  const wanted = [...task, {name: ARCHIVED_AT, type: 'timestamp with time zone'}]
  const have = new Map(found.map((c) => [c.name, c.type]))
  const wrong: string[] = []
  const missing: string[] = []
  for (const c of wanted) {
    const type = have.get(c.name)
    if (type === undefined) missing.push(`missing ${c.name} ${c.type}`)
    else if (type !== c.type) wrong.push(`${c.name} is ${type}, not ${c.type}`)
    have.delete(c.name)
  }
  const problems = [...[...have].map(([name, type]) => `extra column ${name} ${type}`), ...wrong, ...missing]
  if (problems.length === 0) return undefined
  return problems.length > 4 ? `${problems.slice(0, 4).join('; ')} and ${problems.length - 4} more differences` : problems.join('; ')
}

/**
 * An archive table of the Django TaskManager table: the same columns plus
 * archived_at, created on first use. Its rows are written only by the same
 * statement that deletes them from the TaskManager table (clear), and leave it
 * only by the same statement that puts them back (restore), so a row is always
 * in exactly one of the two.
 */
export class ArchiveTable {
  private constructor(
    private readonly client: pg.Client,
    readonly table: TableName,
    readonly task: TableName,
    /** The TaskManager table's columns, in its order: the archive's column lists name them explicitly. */
    private readonly columns: string[],
    /** False until `ensure()` creates it (never in the plan or a dry run). */
    public exists: boolean,
  ) {}

  /**
   * Resolves NAME (unqualified: the TaskManager table's schema) and checks, without
   * writing, that it is absent or has exactly the TaskManager columns plus archived_at.
   */
  static async inspect(client: pg.Client, text: string, task: TableName): Promise<ArchiveTable> {
    const parsed = parseTableName(text)
    const table = {schema: parsed.schema ?? task.schema, name: parsed.name}
    if (table.schema === task.schema && table.name === task.name)
      throw new UsageError(`The archive table cannot be the TaskManager table itself (${task.schema}.${task.name}).`)
    const {rows: schema} = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [table.schema])
    if (schema.length === 0)
      throw new UsageError(
        `Schema "${table.schema}" of the archive table ${table.schema}.${table.name} does not exist; create it first or name another schema.`,
      )
    const taskColumns = await columnsOf(client, task)
    const {rows} = await client.query(`SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass($1)`, [qualified(table)])
    const archive = new ArchiveTable(
      client,
      table,
      task,
      taskColumns.map((c) => c.name),
      rows.length > 0,
    )
    if (rows.length > 0) {
      if (!['r', 'p'].includes(rows[0].relkind))
        throw new UsageError(`${archive.displayName} exists and is not a table; name another archive table.`)
      archive.check(taskColumns, await columnsOf(client, table))
    }
    return archive
  }

  get displayName(): string {
    return `${this.table.schema}.${this.table.name}`
  }

  get sql(): string {
    return qualified(this.table)
  }

  private check(task: Column[], found: Column[]): void {
    const problem = mismatch(task, found)
    if (problem) {
      throw new OpsError(
        `${this.displayName} exists but is not an archive of ${this.task.schema}.${this.task.name} (${problem}). Nothing was deleted or restored.`,
        {suggestions: ['Name a new table with --archive-table: ops creates it with the TaskManager columns plus archived_at']},
      )
    }
  }

  /** Creates the table if it is still missing (before the first batch), then re-checks its columns. */
  async ensure(): Promise<void> {
    // LIKE copies the columns and NOT NULL but not the identity: archived ids are plain values.
    await this.client.query(
      `CREATE TABLE IF NOT EXISTS ${this.sql} (LIKE ${qualified(this.task)}, ${quoteIdent(ARCHIVED_AT)} timestamp with time zone NOT NULL DEFAULT now(), PRIMARY KEY (id))`,
    )
    this.exists = true
    this.check(await columnsOf(this.client, this.task), await columnsOf(this.client, this.table))
  }

  private get columnList(): string {
    return this.columns.map(quoteIdent).join(', ')
  }

  /**
   * The clear's archiving CTE: appended to a statement whose `source` CTE is the
   * DELETE ... RETURNING t.*, it inserts exactly the deleted rows in the same statement.
   */
  insertFrom(source: string): string {
    return `, archived AS (INSERT INTO ${this.sql} (${this.columnList}, ${quoteIdent(ARCHIVED_AT)}) SELECT ${this.columnList}, now() FROM ${source})`
  }

  /** Deletes the rows whose ids are $1 (a bigint[]) and archives them, in one statement; its row count is the rows moved. */
  deleteAndArchiveSql(): string {
    return `WITH deleted AS (DELETE FROM ${qualified(this.task)} WHERE id = ANY($1::bigint[]) RETURNING *)
      INSERT INTO ${this.sql} (${this.columnList}, ${quoteIdent(ARCHIVED_AT)}) SELECT ${this.columnList}, now() FROM deleted`
  }

  async rowCount(): Promise<number> {
    if (!this.exists) return 0
    const {rows} = await this.client.query(`SELECT count(*)::bigint AS n FROM ${this.sql}`)
    return Number(rows[0].n)
  }

  private where(filter: TaskFilter, window: ArchivedWindow, first: number, alias: string): {sql: string; params: (string | Date)[]} {
    const base = whereClause(filter, first, alias)
    const parts = [base.sql]
    const params = [...base.params]
    if (window.after) parts.push(`${alias}.${quoteIdent(ARCHIVED_AT)} >= $${first + params.push(window.after) - 1}`)
    if (window.before) parts.push(`${alias}.${quoteIdent(ARCHIVED_AT)} < $${first + params.push(window.before) - 1}`)
    return {sql: parts.join(' AND '), params}
  }

  /** Archived rows matching, and how many of them would be skipped because their id is back in the TaskManager table. */
  async countRestorable(filter: TaskFilter, window: ArchivedWindow): Promise<{matching: number; existing: number; maxId: string}> {
    const where = this.where(filter, window, 1, 'a')
    const {rows} = await this.client.query(
      `SELECT count(*)::bigint AS matching, count(*) FILTER (WHERE EXISTS (SELECT 1 FROM ${qualified(this.task)} t WHERE t.id = a.id))::bigint AS existing,
              coalesce(max(a.id), 0)::text AS max_id
         FROM ${this.sql} a WHERE ${where.sql}`,
      where.params,
    )
    return {matching: Number(rows[0].matching), existing: Number(rows[0].existing), maxId: rows[0].max_id}
  }

  /**
   * One restore batch, one statement: the next `limit` matching archived rows by
   * id go back with their own ids (ON CONFLICT DO NOTHING: an id already present
   * is skipped, never overwritten), and only the rows actually inserted leave
   * the archive. The caller commits it together with the sequence update.
   */
  async moveBack(filter: TaskFilter, window: ArchivedWindow, afterId: string, upToId: string, limit: number): Promise<MoveBackOutcome> {
    const where = this.where(filter, window, 4, 'a')
    const {rows} = await this.client.query(
      `WITH batch AS (
          SELECT a.ctid AS archived_ctid, a.* FROM ${this.sql} a WHERE a.id > $1 AND a.id <= $2 AND ${where.sql} ORDER BY a.id LIMIT $3 FOR UPDATE OF a
        ), restored AS (
          INSERT INTO ${qualified(this.task)} (${this.columnList}) OVERRIDING SYSTEM VALUE
          SELECT ${this.columnList} FROM batch ORDER BY id ON CONFLICT (id) DO NOTHING RETURNING id
        ), removed AS (
          DELETE FROM ${this.sql} a USING batch b WHERE a.ctid = b.archived_ctid AND b.id IN (SELECT id FROM restored) RETURNING 1
        )
        SELECT (SELECT count(*) FROM batch)::int AS seen, (SELECT count(*) FROM removed)::int AS restored,
               (SELECT max(id) FROM batch)::text AS last_id`,
      [afterId, upToId, limit, ...where.params],
    )
    const r = rows[0]
    return {seen: r.seen, restored: r.restored, skipped: r.seen - r.restored, lastId: r.last_id ?? undefined}
  }

  /** The plan's line about the archive table. */
  describe(moving: number): string {
    const how = 'by the same statement that deletes them, so a batch is archived and deleted together or not at all'
    return this.exists
      ? `Archive table: the ${count(moving)} deleted rows are inserted into ${this.displayName} ${how}`
      : `Archive table: ${this.displayName} does not exist yet; it is created before the first batch (the TaskManager columns plus ${ARCHIVED_AT}), and the ${count(moving)} deleted rows are inserted into it ${how}`
  }
}
