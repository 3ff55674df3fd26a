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

/** Whether `table` has a unique key on id alone that ON CONFLICT (id) can use (immediate, not partial). */
async function hasUniqueId(client: pg.Client, table: TableName): Promise<boolean> {
  const {rows} = await client.query(
    `SELECT EXISTS (
       SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = $1::regclass AND a.attname = 'id' AND i.indisunique AND i.indimmediate AND i.indisvalid
          AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL) AS ok`,
    [qualified(table)],
  )
  return rows[0].ok as boolean
}

/**
 * An archive table of the Django TaskManager table: the same columns plus
 * archived_at and a unique id, created on first use. A clear's batch deletes
 * and archives its rows in one statement, and a restore's batch inserts rows
 * and removes exactly the inserted ones in one statement, so neither loses a
 * row nor leaves one in both tables. One case puts an id in both on purpose: a
 * restore skips an archived row whose id exists again (it stays archived, the
 * live row is never overwritten); a later clear of that live row then replaces
 * the archived copy (the newest deleted wins).
 */
export class ArchiveTable {
  private constructor(
    private readonly client: pg.Client,
    readonly table: TableName,
    readonly task: TableName,
    /** The TaskManager table's columns, in its order: the archive's column lists name them explicitly. */
    private readonly columns: string[],
    /** Whether the table is there: found by `inspect()`, or made by `ensure()` (never by the plan or a dry run). */
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
        `Schema "${table.schema}" of the archive table ${table.schema}.${table.name} does not exist; ` +
          'create it first or name another schema.',
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
      await archive.check(taskColumns, await columnsOf(client, table))
    }
    return archive
  }

  /** schema.name, each part double-quoted where PostgreSQL needs it, so it can be pasted back into --from-archive-table. */
  get displayName(): string {
    const shown = (part: string) => (/^[a-z_][a-z0-9_$]*$/.test(part) ? part : quoteIdent(part))
    return `${shown(this.table.schema)}.${shown(this.table.name)}`
  }

  get sql(): string {
    return qualified(this.table)
  }

  private async check(task: Column[], found: Column[]): Promise<void> {
    const problem = mismatch(task, found)
    if (problem) {
      throw new OpsError(
        `${this.displayName} exists but is not an archive of ${this.task.schema}.${this.task.name} (${problem}). ` +
          'Nothing was deleted or restored.',
        {suggestions: ['Name a new table with --archive-table: ops creates it with the TaskManager columns plus archived_at']},
      )
    }
    // ON CONFLICT (id) needs it, and without it a restore batch could meet two rows of one id.
    if (!(await hasUniqueId(this.client, this.table))) {
      throw new OpsError(
        `${this.displayName} has the archive's columns but no unique key on id: ` +
          'ops keeps one archived row per id (the newest deleted) and needs it. Nothing was deleted or restored.',
        {suggestions: [`Add it, e.g. ALTER TABLE ${this.sql} ADD PRIMARY KEY (id), or name a new table`]},
      )
    }
  }

  /** Creates the table if it is still missing (before the first batch), then re-checks its columns. */
  async ensure(): Promise<void> {
    // LIKE copies the columns and NOT NULL but not the identity: archived ids are plain values.
    await this.client.query(
      `CREATE TABLE IF NOT EXISTS ${this.sql} (LIKE ${qualified(this.task)},
         ${quoteIdent(ARCHIVED_AT)} timestamp with time zone NOT NULL DEFAULT now(), PRIMARY KEY (id))`,
    )
    this.exists = true
    await this.check(await columnsOf(this.client, this.task), await columnsOf(this.client, this.table))
  }

  private get columnList(): string {
    return this.columns.map(quoteIdent).join(', ')
  }

  /**
   * INSERT of the rows of `source` with archived_at now(). An id already archived
   * (a restore skipped it because the id existed again) gets the row just deleted,
   * the newest version, as the file reader keeps an id's last line.
   */
  private insertSql(source: string): string {
    const columns = [...this.columns.filter((c) => c !== 'id'), ARCHIVED_AT].map(quoteIdent)
    return `INSERT INTO ${this.sql} (${this.columnList}, ${quoteIdent(ARCHIVED_AT)}) SELECT ${this.columnList}, now() FROM ${source}
      ON CONFLICT (id) DO UPDATE SET ${columns.map((c) => `${c} = EXCLUDED.${c}`).join(', ')}`
  }

  /**
   * The clear's archiving CTE: appended to a statement whose `source` CTE is the
   * DELETE ... RETURNING t.*, it archives exactly the deleted rows in the same statement.
   */
  insertFrom(source: string): string {
    return `, archived AS (${this.insertSql(source)})`
  }

  /** Deletes the rows whose ids are $1 (a bigint[]) and archives them, in one statement; its row count is the rows moved. */
  deleteAndArchiveSql(): string {
    return `WITH deleted AS (DELETE FROM ${qualified(this.task)} WHERE id = ANY($1::bigint[]) RETURNING *) ${this.insertSql('deleted')}`
  }

  /** Rows matching the clear's filter whose id is already archived: a clear replaces those archived copies. */
  async countArchivedAlready(filter: TaskFilter): Promise<number> {
    if (!this.exists) return 0
    const where = whereClause(filter, 1, 't')
    const {rows} = await this.client.query(
      `SELECT count(*)::bigint AS n FROM ${qualified(this.task)} t JOIN ${this.sql} a ON a.id = t.id WHERE ${where.sql}`,
      where.params,
    )
    return Number(rows[0].n)
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
      `SELECT count(*)::bigint AS matching,
              count(*) FILTER (WHERE EXISTS (SELECT 1 FROM ${qualified(this.task)} t WHERE t.id = a.id))::bigint AS existing,
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
          SELECT a.* FROM ${this.sql} a
           WHERE a.id > $1 AND a.id <= $2 AND ${where.sql} ORDER BY a.id LIMIT $3 FOR UPDATE OF a
        ), restored AS (
          INSERT INTO ${qualified(this.task)} (${this.columnList}) OVERRIDING SYSTEM VALUE
          SELECT ${this.columnList} FROM batch ORDER BY id ON CONFLICT (id) DO NOTHING RETURNING id
        ), removed AS (
          DELETE FROM ${this.sql} a WHERE a.id IN (SELECT id FROM restored) RETURNING 1
        )
        SELECT (SELECT count(*) FROM batch)::int AS seen, (SELECT count(*) FROM removed)::int AS restored,
               (SELECT max(id) FROM batch)::text AS last_id`,
      [afterId, upToId, limit, ...where.params],
    )
    const r = rows[0]
    return {seen: r.seen, restored: r.restored, skipped: r.seen - r.restored, lastId: r.last_id ?? undefined}
  }

  /** The plan's lines about the archive table; `replacing`: matching rows whose id is archived already. */
  describe(moving: number, replacing: number): string[] {
    const how = 'by the same statement that deletes them, so a batch is archived and deleted together or not at all'
    const lines = [
      this.exists
        ? `Archive table: the ${count(moving)} deleted rows are inserted into the existing ${this.displayName} ${how}`
        : `Archive table: ${this.displayName} does not exist yet; it is created before the first batch ` +
          `(the TaskManager columns plus ${ARCHIVED_AT}), and the ${count(moving)} deleted rows are inserted into it ${how}`,
    ]
    if (replacing > 0)
      lines.push(
        `Archive table: ${count(replacing)} of them have an id archived there already (a restore skipped it); ` +
          'the archive keeps the newer row, the one deleted now',
      )
    return lines
  }
}
