import {UsageError} from 'ops-cli/base'
import pg from 'pg'

/** Which rows of the table a run touches. Undefined fields do not filter. */
export interface WidgetFilter {
  /** Only rows created strictly before this instant. */
  createdBefore?: Date
  /** Only rows with id <= upToId: rows inserted after the plan are never touched. */
  upToId?: string
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/

/** `widgets` or `app.widgets`, double-quoted so any valid identifier is safe in SQL. */
export function qualifiedName(table: string): string {
  const parts = table.split('.')
  if (parts.length > 2 || !parts.every((p) => IDENTIFIER.test(p))) {
    throw new UsageError(`Invalid table name "${table}": use NAME or SCHEMA.NAME (letters, digits, underscores).`)
  }
  return parts.map((p) => pg.escapeIdentifier(p)).join('.')
}

/**
 * A table with a numeric primary key `id` and a timestamp column (default
 * `created_at`). The SQL of the plugin lives here and nowhere else.
 */
export class WidgetTable {
  readonly sqlName: string
  private readonly column: string

  constructor(
    private readonly client: pg.Client,
    readonly name: string,
    createdColumn = 'created_at',
  ) {
    this.sqlName = qualifiedName(name)
    if (!IDENTIFIER.test(createdColumn)) throw new UsageError(`Invalid column name "${createdColumn}".`)
    this.column = pg.escapeIdentifier(createdColumn)
  }

  private where(filter: WidgetFilter, first: number): {sql: string; params: unknown[]} {
    const predicates: string[] = []
    const params: unknown[] = []
    if (filter.createdBefore) predicates.push(`${this.column} < $${first + params.push(filter.createdBefore) - 1}`)
    if (filter.upToId !== undefined) predicates.push(`id <= $${first + params.push(filter.upToId) - 1}`)
    return {sql: predicates.join(' AND ') || 'TRUE', params}
  }

  /** Fails with a clear message when the table or its columns do not exist. */
  async assertExists(): Promise<void> {
    const {rows} = await this.client.query('SELECT to_regclass($1) AS oid', [this.sqlName])
    if (!rows[0].oid) throw new UsageError(`Table ${this.name} does not exist in this database.`)
  }

  /** How many rows match now, and the highest matching id (the plan's upper bound). */
  async countMatching(filter: WidgetFilter): Promise<{count: number; maxId: string | null}> {
    const {sql, params} = this.where(filter, 1)
    const {rows} = await this.client.query(`SELECT count(*)::int AS n, max(id)::text AS max FROM ${this.sqlName} WHERE ${sql}`, params)
    return {count: rows[0].n, maxId: rows[0].max}
  }

  /**
   * Deletes the next `limit` matching rows after `afterId`, walking the primary
   * key (keyset pagination: no OFFSET, no scan of what is already gone). One
   * statement, so one short transaction per batch.
   */
  async deleteBatch(filter: WidgetFilter, afterId: string | null, limit: number): Promise<{deleted: number; lastId: string | null}> {
    const {sql, params} = this.where(filter, 3)
    const {rows} = await this.client.query(
      `WITH batch AS (
         SELECT id FROM ${this.sqlName} WHERE ($1::text IS NULL OR id > $1::bigint) AND ${sql} ORDER BY id LIMIT $2
       ), deleted AS (
         DELETE FROM ${this.sqlName} WHERE id IN (SELECT id FROM batch) RETURNING id
       )
       SELECT count(*)::int AS n, max(id)::text AS last FROM deleted`,
      [afterId, limit, ...params],
    )
    return {deleted: rows[0].n, lastId: rows[0].last}
  }

  /** Total rows and the age range, for --show-summary. */
  async summary(): Promise<{rows: number; oldest: Date | null; newest: Date | null}> {
    const {rows} = await this.client.query(
      `SELECT count(*)::int AS n, min(${this.column}) AS oldest, max(${this.column}) AS newest FROM ${this.sqlName}`,
    )
    return {rows: rows[0].n, oldest: rows[0].oldest, newest: rows[0].newest}
  }
}
