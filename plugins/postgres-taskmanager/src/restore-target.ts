import type pg from 'pg'

import {commitOrUnknown} from './commit-outcome.js'
import {TaskFilter, whereClause} from './filter.js'
import {qualified, TableName} from './table-name.js'

/** The JSON lines of `--archive` as one json array parameter: row_to_json text needs no re-encoding. */
const jsonArray = (lines: string[]) => `[${lines.join(',')}]`

/**
 * The SQL restore runs against the TaskManager table: rows put back with their
 * own ids, the identity sequence kept ahead of them, one transaction per batch.
 */
export class RestoreTarget {
  private constructor(
    private readonly client: pg.Client,
    readonly table: TableName,
    /** The identity (or serial) sequence of id; null when id has none. */
    readonly sequence: string | null,
  ) {}

  static async open(client: pg.Client, table: TableName): Promise<RestoreTarget> {
    const {rows} = await client.query(`SELECT pg_get_serial_sequence($1, 'id') AS seq`, [qualified(table)])
    return new RestoreTarget(client, table, rows[0].seq ?? null)
  }

  private get sql(): string {
    return qualified(this.table)
  }

  /**
   * BEGIN, `work`, COMMIT; ROLLBACK when it throws. READ COMMITTED, as clear's batches, whatever the default; bounded as
   * they are by default (30 s), whatever the role's own statement_timeout, which the plan's reads of whole tables run
   * without (readWithoutTimeout).
   */
  async inTransaction<T>(work: () => Promise<T>): Promise<T> {
    await this.client.query('BEGIN ISOLATION LEVEL READ COMMITTED')
    try {
      await this.client.query(`SET LOCAL statement_timeout = '30s'`)
      const result = await work()
      await commitOrUnknown(() => this.client.query('COMMIT'))
      return result
    } catch (error) {
      await this.client.query('ROLLBACK').catch(() => {})
      throw error
    }
  }

  /**
   * Moves the sequence to `maxId` when its next value is not past it, so the
   * application's next insert never collides with a restored id; never moves it back.
   * Read from the sequence itself: after RESTART WITH n (not called yet) the next
   * value is last_value, where pg_sequence_last_value() says NULL.
   */
  async keepSequenceAhead(maxId: string | undefined): Promise<void> {
    if (!this.sequence || maxId === undefined) return
    await this.client.query(`SELECT setval($1::regclass, $2::bigint) FROM ${this.sequence} s WHERE $2::bigint >= s.last_value`, [
      this.sequence,
      maxId,
    ])
  }

  /** Of these JSON lines, the ids that match the filter, and whether each id is already in the table. */
  async classifyJson(lines: string[], filter: TaskFilter): Promise<{id: string; existing: boolean}[]> {
    const where = whereClause(filter, 2, 'r')
    const {rows} = await this.client.query(
      `SELECT r.id::text AS id, EXISTS (SELECT 1 FROM ${this.sql} t WHERE t.id = r.id) AS existing
         FROM json_populate_recordset(NULL::${this.sql}, $1::json) r WHERE ${where.sql}`,
      [jsonArray(lines), ...where.params],
    )
    return rows as {id: string; existing: boolean}[]
  }

  /** Inserts the matching rows of these JSON lines with their own ids; an id already present is skipped. Returns the ids inserted. */
  async insertJson(lines: string[], filter: TaskFilter): Promise<string[]> {
    const where = whereClause(filter, 2, 'r')
    const {rows} = await this.client.query(
      `INSERT INTO ${this.sql} OVERRIDING SYSTEM VALUE
       SELECT r.* FROM json_populate_recordset(NULL::${this.sql}, $1::json) r WHERE ${where.sql} ORDER BY r.id
       ON CONFLICT (id) DO NOTHING RETURNING id::text`,
      [jsonArray(lines), ...where.params],
    )
    return rows.map((r) => r.id as string)
  }

  /** The server's now() minus `ms` milliseconds, fixed once for the whole run. */
  async cutoff(ms: number): Promise<Date> {
    const {rows} = await this.client.query(`SELECT now() - $1::double precision * interval '1 millisecond' AS cutoff`, [ms])
    return rows[0].cutoff as Date
  }
}
