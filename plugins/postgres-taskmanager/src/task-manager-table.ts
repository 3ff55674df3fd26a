import {OpsError} from 'ops-cli/base'
import type pg from 'pg'

import type {ArchiveTable} from './archive-table.js'
import type {Left} from './batches.js'
import {commitSettingSql, type CommitSettings, endsDurably, SYNCHRONOUS_COMMIT} from './batch-commit.js'
import {commitOrUnknown} from './commit-outcome.js'
import {TaskFilter, whereClause} from './filter.js'
import {readWithoutTimeout} from './long-read.js'
import {qualified, quoteIdent, TableName} from './table-name.js'

/** A foreign key of another table that points at the TaskManager table, read from pg_constraint. */
export interface ReferencingForeignKey {
  constraint: string
  table: TableName
  columns: string[]
  /** ON DELETE action: NO ACTION, RESTRICT, CASCADE, SET NULL, SET DEFAULT. */
  onDelete: string
  deferrable: boolean
  /** True for Django's TaskWatcher.tasks many-to-many link table, which ops deletes from itself. */
  isWatcherLink: boolean
}

export interface StatusCount {
  status: string
  count: number
}
export interface ModuleCount {
  taskModule: string
  count: number
}

export interface StuckGroup {
  taskModule: string
  taskName: string
  count: number
  byStatus: Record<string, number>
  oldestLastRun: string
  samples: {id: string; taskId: string; status: string; lastRun: string; attempts: number; arguments: unknown}[]
}

/** Per-batch settings: SET LOCAL values, so they end with the transaction. */
export interface BatchLimits {
  statementTimeoutMs: number
  lockTimeoutMs: number
  /** The synchronous_commit of each batch's transaction (batch-commit.ts); undefined keeps the session's. */
  synchronousCommit?: 'off' | 'on'
}

/** The least and greatest id of the rows a plan counted (inclusive, as text: bigint); both 0 when none matched. */
export interface IdSpan {
  min: string
  max: string
}

export interface BatchRequest {
  filter: TaskFilter
  /** Keyset: only ids greater than this (exclusive) and at most `upToId`. */
  afterId: string
  upToId: string
  limit: number
  limits: BatchLimits
  /** Return each deleted row as JSON text (for --archive). */
  withRows: boolean
  /** With withRows: the batch ends before the row whose JSON line would take its lines past this many bytes (raw-SQL path). */
  maxBytes?: number
  /** Pass over rows another session holds locked (after a batch hit lock_timeout) instead of waiting for them. */
  skipLocked?: boolean
  /** Runs after the deletes and before COMMIT; throwing rolls the batch back. */
  beforeCommit?: (rows: string[]) => Promise<void>
  /**
   * Batches commit asynchronously: one that picked fewer rows than its limit (the range's last, most often) and deleted
   * some commits synchronously, so its COMMIT waits until the WAL up to it, every batch before included, is on disk.
   */
  durableWhenShort?: boolean
}

export interface BatchOutcome {
  /** Matching rows the batch picked from its snapshot, in id order. */
  candidates: number
  deleted: number
  /** Candidates not deleted: changed so they no longer match, deleted by someone else, or (TypeORM path) locked. */
  skipped: number
  links: number
  /** The greatest candidate id: the next batch starts after it. Undefined when no row matched: the range is done. */
  scannedTo?: string
  /** Ids of rows that matched but that another session held locked (a `skipLocked` batch passed over them). */
  passedOver?: string[]
}

const ACTIONS: Record<string, string> = {a: 'NO ACTION', r: 'RESTRICT', c: 'CASCADE', n: 'SET NULL', d: 'SET DEFAULT'}

/** Django names the M2M table <app>_taskwatcher_tasks with the column taskmanager_id. */
const isWatcherLink = (table: string, columns: string[]) =>
  /taskwatcher_tasks$/.test(table) && columns.length === 1 && columns[0] === 'taskmanager_id'

/**
 * All SQL for the Django TaskManager table (docs/taskmanager-table.md): it has no
 * index but the primary key, so every batch walks the PK (keyset on id), never
 * re-scanning from the start.
 */
export class TaskManagerTable {
  private watcherLinks: ReferencingForeignKey[] = []
  /** The server's idle_session_timeout for this session (0: none), which closes a connection idle that long. */
  idleSessionTimeoutMs = 0
  /** --archive-table, set by the clear: each batch's DELETE then feeds its INSERT into this table. */
  archive?: ArchiveTable
  /** BatchDeleter.deletionsDurable */
  deletionsDurable = true

  private constructor(
    private readonly client: pg.Client,
    readonly table: TableName,
  ) {}

  /** Resolves the name through search_path and fails clearly when the table is missing. */
  static async open(client: pg.Client, table: {schema?: string; name: string}, where: string): Promise<TaskManagerTable> {
    const regclass = table.schema ? `${quoteIdent(table.schema)}.${quoteIdent(table.name)}` : quoteIdent(table.name)
    const {rows} = await client.query(
      `SELECT n.nspname AS schema, c.relname AS name, current_database() AS db,
              (SELECT setting::int FROM pg_settings WHERE name = 'idle_session_timeout') AS idle_ms
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = to_regclass($1) AND c.relkind IN ('r', 'p')`,
      [regclass],
    )
    if (rows.length === 0) {
      const {rows: db} = await client.query('SELECT current_database() AS db')
      const shown = table.schema ? `${table.schema}.${table.name}` : table.name
      throw new OpsError(`Table ${shown} does not exist in database "${db[0].db}" at ${where}.`, {
        suggestions: [
          'Name the TaskManager table with --table, e.g. --table public.task_manager_taskmanager',
          'Check --database-url / DATABASE_URL points at the Django database',
        ],
      })
    }
    const found = new TaskManagerTable(client, {schema: rows[0].schema, name: rows[0].name})
    found.watcherLinks = (await found.referencingForeignKeys()).filter((fk) => fk.isWatcherLink)
    found.idleSessionTimeoutMs = rows[0].idle_ms ?? 0
    return found
  }

  /** One round trip that keeps the session from counting as idle (keepAwake()). */
  async ping(): Promise<void> {
    await this.client.query('SELECT 1')
  }

  get sql(): string {
    return qualified(this.table)
  }

  get displayName(): string {
    return `${this.table.schema}.${this.table.name}`
  }

  /** What a COMMIT of this session waits for: its synchronous_commit, and the standbys it waits for where that is on. */
  async commitSettings(): Promise<CommitSettings> {
    const {rows} = await this.client.query(
      `SELECT current_setting('synchronous_commit') AS level, current_setting('synchronous_standby_names') AS standbys`,
    )
    return {level: rows[0].level, synchronousStandbys: rows[0].standbys}
  }

  /** Where the server's WAL ends now: every transaction committed before this call, by any session, has its commit record before it. */
  async walInsertPosition(): Promise<string> {
    const {rows} = await this.client.query('SELECT pg_current_wal_insert_lsn()::text AS lsn')
    return rows[0].lsn as string
  }

  /** Whether the server has flushed its WAL to disk up to `position`: the transactions committed before it are then durable. */
  async walFlushedTo(position: string): Promise<boolean> {
    const {rows} = await this.client.query('SELECT pg_current_wal_flush_lsn() >= $1::pg_lsn AS flushed', [position])
    return rows[0].flushed as boolean
  }

  /** The server's now() minus an age, fixed once so every batch uses the same cutoff. */
  async cutoff(ageMs: number): Promise<Date> {
    const {rows} = await this.client.query('SELECT now() - make_interval(secs => $1) AS cutoff', [ageMs / 1000])
    return rows[0].cutoff as Date
  }

  /**
   * What matches once a walk is over, of the plan's ids `span` (a read of the whole table, in readWithoutTimeout()): every
   * such row, and those that matched the plan, whose count `snapshot` (pg_current_snapshot()) is: ids in `passedOver`,
   * and rows whose version the plan saw (its xmin committed before that snapshot). Any other row was written after the
   * plan: it did not match then, or it did and was changed since (that batch deleted it if it still matched, or it
   * was locked, and so passed over). Transaction ids as 32 bits, compared by age(): an unfrozen one is never older
   * than 2^31 transactions; a frozen row keeps its xmin, and one older than that reads a negative age(), also older.
   * A row written by a subtransaction of one in progress at the plan reads as the plan's (the snapshot lists top-level
   * ids only): at worst one more walk.
   */
  async countLeft(filter: TaskFilter, span: IdSpan, snapshot: string, passedOver: readonly string[]): Promise<Left> {
    const [, xmax, inProgress = ''] = snapshot.split(':')
    const low32 = (xid: string) => (BigInt(xid) & 0xffffffffn).toString()
    const xip = inProgress ? inProgress.split(',').map(low32) : []
    const where = whereClause(filter, 6, 't')
    const {rows} = await readWithoutTimeout(this.client, async () => {
      // age() may not run in a parallel worker, so the workers of a parallel scan would pass every matching row up to
      // this backend, and the table's statistics still count the rows the walk deleted (not analyzed since): priced at
      // parallel_tuple_cost a row, the planner scanned alone. Few rows match after a walk; priced at nothing, the scan is
      // parallel (measured on 1,000,000 rows just walked: 0.17 s instead of 0.24 s).
      await this.client.query(`SELECT set_config('parallel_tuple_cost', '0', true)`)
      return this.client.query(
        `SELECT count(*) FILTER (WHERE ((age(t.xmin) > age($3::text::xid) OR age(t.xmin) < 0) AND NOT t.xmin = ANY($4::text[]::xid[]))
                                    OR t.id = ANY($5::bigint[]))::bigint AS planned,
                count(*)::bigint AS matching
           FROM ${this.sql} AS t WHERE t.id BETWEEN $1 AND $2 AND ${where.sql}`,
        [span.min, span.max, low32(xmax), xip, passedOver, ...where.params],
      )
    })
    return {planned: Number(rows[0].planned), matching: Number(rows[0].matching)}
  }

  /**
   * The plan's two counts in one scan of the table: matching rows, and the TaskWatcher.tasks link rows that
   * point at them (deleted with them); and the least and greatest id of those rows, the span the walk covers (a
   * row that comes to match outside it later is not the plan's, as a row inserted after the plan is not). The link
   * table is small: grouped and hashed, it is probed by every matching row, where one primary-key probe per link
   * row would read the cold table page by page.
   */
  async countMatchingWithLinks(filter: TaskFilter): Promise<{matching: number; links: number; span: IdSpan; snapshot: string}> {
    const where = whereClause(filter, 1, 't')
    const joins = this.watcherLinks.map((fk, i) => {
      const column = quoteIdent(fk.columns[0])
      return ` LEFT JOIN (SELECT ${column} AS id, count(*) AS n FROM ${qualified(fk.table)} GROUP BY 1) l${i} ON l${i}.id = t.id`
    })
    const links = this.watcherLinks.length ? this.watcherLinks.map((_, i) => `coalesce(sum(l${i}.n), 0)`).join(' + ') : '0'
    const {rows} = await this.client.query(
      // The snapshot the count saw (this statement's): countLeft() tells from it which rows changed since.
      `SELECT count(*)::bigint AS matching, (${links})::bigint AS links, pg_current_snapshot()::text AS snapshot,
              coalesce(min(t.id), 0)::text AS min, coalesce(max(t.id), 0)::text AS max
         FROM ${this.sql} AS t${joins.join('')} WHERE ${where.sql}`,
      where.params,
    )
    const r = rows[0]
    return {matching: Number(r.matching), links: Number(r.links), span: {min: r.min, max: r.max}, snapshot: r.snapshot as string}
  }

  /** The size of the largest of the first `sample` matching rows as the JSON line --archive writes (row_to_json), in bytes. */
  async largestRowBytes(filter: TaskFilter, sample = 200): Promise<number> {
    const where = whereClause(filter, 2, 't')
    const {rows} = await this.client.query(
      `SELECT coalesce(max(octet_length(row_to_json(s)::text)), 0)::int AS bytes
         FROM (SELECT t.* FROM ${this.sql} AS t WHERE ${where.sql} ORDER BY t.id LIMIT $1) s`,
      [sample, ...where.params],
    )
    return rows[0].bytes as number
  }

  /**
   * Other sessions connected to this database now under one of `applicationNames` (pg_stat_activity shows every role
   * that column): other runs of ops' writing commands, as two clears on the same rows report each other's deletions
   * as skipped. Not one idle for longer than `idleMs`: behind a pooler in transaction mode, a server connection keeps
   * the application_name of the last client it served, so an earlier run's would read as a run of its own; a run
   * that is working, or paused by its throttle (which looks every second), is never idle that long.
   */
  async otherSessionsOf(
    applicationNames: string[],
    idleMs = 60_000,
  ): Promise<{command: string; pid: number; since: Date | null; client: string | null}[]> {
    const {rows} = await this.client.query(
      `SELECT application_name AS command, pid, backend_start AS since, host(client_addr) AS client FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = ANY($1)
          AND (state IS DISTINCT FROM 'idle' OR state_change > now() - make_interval(secs => $2))
        ORDER BY backend_start`,
      [applicationNames, idleMs / 1000],
    )
    return rows
  }

  /** The sessions holding a lock on the table (a migration, a VACUUM FULL, a LOCK TABLE), for a plan that could not get its own. */
  async lockHolders(): Promise<{pid: number; application: string; query: string}[]> {
    const {rows} = await this.client.query(
      `SELECT a.pid, coalesce(nullif(a.application_name, ''), a.usename::text) AS application, left(a.query, 80) AS query
         FROM pg_locks l JOIN pg_stat_activity a USING (pid)
        WHERE l.relation = $1::regclass AND l.granted AND a.pid <> pg_backend_pid() ORDER BY a.pid`,
      [this.sql],
    )
    return rows
  }

  async referencingForeignKeys(): Promise<ReferencingForeignKey[]> {
    const {rows} = await this.client.query(
      `SELECT con.conname AS constraint, n.nspname AS schema, c.relname AS name, con.confdeltype AS action,
              con.condeferrable AS deferrable,
              array(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
                      JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord) AS columns
         FROM pg_constraint con
         JOIN pg_class c ON c.oid = con.conrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE con.contype = 'f' AND con.confrelid = $1::regclass
        ORDER BY n.nspname, c.relname, con.conname`,
      [this.sql],
    )
    return rows.map((r) => ({
      constraint: r.constraint,
      table: {schema: r.schema, name: r.name},
      columns: r.columns,
      onDelete: ACTIONS[r.action] ?? r.action,
      deferrable: r.deferrable,
      isWatcherLink: isWatcherLink(r.name, r.columns),
    }))
  }

  /**
   * One short transaction, one statement: `bound` picks the next `limit`
   * matching rows in id order and keeps only their count and greatest id; the
   * batch's DELETE (built here, in this one place) then deletes every row of
   * that id range that still matches the filter, and the watcher link rows of
   * exactly the rows deleted. A row another session updated after the
   * statement's snapshot is re-checked on its newest version (READ COMMITTED's
   * EvalPlanQual): deleted if it still matches, left alone if not. A row
   * locked by another session is waited for, up to lock_timeout; the retry of
   * such a batch (`skipLocked`) passes over locked rows, reported as skipped. The link
   * table's deferred foreign key is checked at COMMIT.
   */
  async deleteBatch(request: BatchRequest): Promise<BatchOutcome> {
    const where = whereClause(request.filter, 4, 't')
    const range = (column: string) => `${column} > $1 AND ${column} <= (SELECT upto FROM bound)`
    // With --archive-table, RETURNING every column feeds the archive INSERT (the CTE after the links) of the same statement.
    const returning = `${this.archive ? 't.*' : 't.id'}${request.withRows ? ', row_to_json(t)::text AS row' : ''}`
    const links = this.watcherLinks.map((fk, i) => {
      const column = quoteIdent(fk.columns[0])
      // A join, not IN (SELECT id FROM gone): the few link rows of the range are hashed, not the batch's ids
      // (measured: 42 ms of a 165 ms batch of 40,000 rows, 11 ms this way).
      return (
        `, links${i} AS (DELETE FROM ${qualified(fk.table)} AS l USING gone ` +
        `WHERE ${range(`l.${column}`)} AND l.${column} = gone.id RETURNING 1)`
      )
    })
    const linkCount = this.watcherLinks.length ? this.watcherLinks.map((_, i) => `(SELECT count(*) FROM links${i})`).join(' + ') : '0'
    const params: unknown[] = [request.afterId, request.upToId, request.limit, ...where.params]
    // With a byte budget (--archive: the batch's JSON lines come back as one text), each picked row carries the bytes of
    // its line, and the batch keeps the picked rows before the one that would take it past the budget (the first always).
    const budget = request.withRows && request.maxBytes !== undefined ? `$${params.push(request.maxBytes)}` : undefined
    const within = (rows: string) =>
      `SELECT id FROM (SELECT id, sum(bytes) OVER (ORDER BY id) - bytes AS before FROM ${rows}) sized WHERE before < ${budget}`
    const columns = budget ? `t.id, octet_length(row_to_json(t)::text) + 1 AS bytes` : 't.id'
    const picked = `SELECT ${columns} FROM ${this.sql} AS t WHERE t.id > $1 AND t.id <= $2 AND ${where.sql} ORDER BY t.id LIMIT $3`
    // Normally the range is deleted as one; after a lock_timeout only the rows locked here (SKIP LOCKED) are,
    // and when every one left is locked by others, the batch reaches the end of the range, counting them as skipped.
    const kept = budget ? 'kept' : 'picked'
    const head = request.skipLocked
      ? `WITH picked AS (${picked} FOR UPDATE OF t SKIP LOCKED)${budget ? `, kept AS (${within('picked')})` : ''},
          reach AS (SELECT coalesce(max(id), $2) AS upto FROM ${kept}), bound AS (
          SELECT (SELECT count(*) FROM ${this.sql} AS t WHERE t.id > $1 AND t.id <= (SELECT upto FROM reach) AND ${where.sql})::int
                 AS candidates, (SELECT upto FROM reach) AS upto)`
      : `WITH bound AS (SELECT count(*)::int AS candidates, max(id) AS upto FROM (${budget ? within(`(${picked}) p`) : picked}) picked)`
    const target = request.skipLocked ? `t.id IN (SELECT id FROM ${kept})` : range('t.id')
    // The rows of the range that matched but were not locked here: another session held them (or changed them meanwhile).
    const passedOver = request.skipLocked
      ? `ARRAY(SELECT t.id::text FROM ${this.sql} AS t WHERE ${range('t.id')} AND ${where.sql} AND t.id NOT IN (SELECT id FROM ${kept}))`
      : 'NULL::text[]'
    const statement = `${head}, gone AS (
        DELETE FROM ${this.sql} AS t WHERE ${target} AND ${where.sql} RETURNING ${returning}
      )${links.join('')}${this.archive?.insertFrom('gone') ?? ''}
      SELECT (SELECT candidates FROM bound) AS candidates, (SELECT upto FROM bound)::text AS scanned_to,
             (SELECT count(*) FROM gone)::int AS deleted, (${linkCount})::int AS links, ${passedOver} AS passed_over,
             ${request.withRows ? `(SELECT string_agg(row, E'\\n' ORDER BY id) FROM gone)` : 'NULL::text'} AS lines`
    // READ COMMITTED whatever the role's or database's default_transaction_isolation: the re-check of a row updated
    // meanwhile is this level's; under REPEATABLE READ or SERIALIZABLE that row fails the batch (40001) instead.
    await this.client.query('BEGIN ISOLATION LEVEL READ COMMITTED')
    // The run's synchronous_commit (batch-commit.ts), for this transaction only: 'off' or 'on', never text from outside.
    const commit = commitSettingSql(request.limits.synchronousCommit)
    try {
      await this.client.query(
        // Walk the primary key: the range's upper bound is only known at run time, and a sequential scan would read the whole
        // table. JIT off with it: a foreign-key check of a referencing table with no index on its column must scan it, and
        // that scan's disabled cost (1e10) got every check JIT-compiled, 30-140 ms each (300 rows: 9 s instead of 20 ms).
        `SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $2, true), set_config('enable_seqscan', 'off', true),
                set_config('jit', 'off', true)${commit}`,
        [String(request.limits.statementTimeoutMs), String(request.limits.lockTimeoutMs)],
      )
      const {rows} = await this.client.query(statement, params)
      const r = rows[0]
      // One text of JSON lines (row_to_json escapes every newline inside a value): a text[] of big rows took node-postgres'
      // array parser about 0.1 s a row of 370 KB.
      await request.beforeCommit?.(r.lines === null ? [] : (r.lines as string).split('\n'))
      const durable = endsDurably(request, r.candidates, r.deleted)
      if (durable) await this.client.query(SYNCHRONOUS_COMMIT)
      await commitOrUnknown(() => this.client.query('COMMIT'))
      if (r.deleted > 0) this.deletionsDurable = durable
      return {
        candidates: r.candidates,
        deleted: r.deleted,
        skipped: r.candidates - r.deleted,
        links: r.links,
        scannedTo: r.scanned_to ?? undefined,
        passedOver: r.passed_over ?? undefined,
      }
    } catch (error) {
      await this.client.query('ROLLBACK').catch(() => {})
      throw error
    }
  }

  /** The seed's two summaries, by status and by module: reads of the whole table, so in readWithoutTimeout() of their own. */
  async summaries(): Promise<{statuses: StatusCount[]; modules: ModuleCount[]}> {
    return readWithoutTimeout(this.client, async () => ({statuses: await this.statusSummary(), modules: await this.moduleSummary()}))
  }

  private async statusSummary(): Promise<StatusCount[]> {
    const {rows} = await this.client.query(`SELECT status, count(*)::bigint AS n FROM ${this.sql} GROUP BY status ORDER BY status`)
    return rows.map((r) => ({status: r.status, count: Number(r.n)}))
  }

  private async moduleSummary(): Promise<ModuleCount[]> {
    const {rows} = await this.client.query(
      `SELECT task_module, count(*)::bigint AS n FROM ${this.sql} GROUP BY task_module ORDER BY count(*) DESC, task_module`,
    )
    return rows.map((r) => ({taskModule: r.task_module, count: Number(r.n)}))
  }

  /** SCHEDULED or PENDING rows whose last_run is older than `hours`, grouped by module and name (in readWithoutTimeout()). */
  async stuckTasks(hours: number, samples: number): Promise<{cutoff: string; groups: StuckGroup[]}> {
    return readWithoutTimeout(this.client, () => this.readStuckTasks(hours, samples))
  }

  private async readStuckTasks(hours: number, samples: number): Promise<{cutoff: string; groups: StuckGroup[]}> {
    const {rows: cut} = await this.client.query(`SELECT now() - make_interval(hours => $1) AS cutoff`, [hours])
    const cutoff = cut[0].cutoff as Date
    const {rows} = await this.client.query(
      `SELECT task_module, task_name, status, count(*)::bigint AS n, min(last_run) AS oldest
         FROM ${this.sql} WHERE status IN ('SCHEDULED', 'PENDING') AND last_run < $1
        GROUP BY task_module, task_name, status`,
      [cutoff],
    )
    const groups = new Map<string, StuckGroup>()
    for (const r of rows) {
      const key = JSON.stringify([r.task_module, r.task_name])
      const group: StuckGroup = groups.get(key) ?? {
        taskModule: r.task_module,
        taskName: r.task_name,
        count: 0,
        byStatus: {},
        oldestLastRun: r.oldest.toISOString(),
        samples: [],
      }
      group.count += Number(r.n)
      group.byStatus[r.status] = Number(r.n)
      if (r.oldest.toISOString() < group.oldestLastRun) group.oldestLastRun = r.oldest.toISOString()
      groups.set(key, group)
    }
    if (samples > 0 && groups.size > 0) {
      const {rows: picked} = await this.client.query(
        `SELECT * FROM (
           SELECT id::text, task_id, status, last_run, attempts, arguments, task_module, task_name,
                  row_number() OVER (PARTITION BY task_module, task_name ORDER BY last_run, id) AS k
             FROM ${this.sql} WHERE status IN ('SCHEDULED', 'PENDING') AND last_run < $1) s
          WHERE k <= $2 ORDER BY task_module, task_name, k`,
        [cutoff, samples],
      )
      for (const r of picked) {
        groups.get(JSON.stringify([r.task_module, r.task_name]))?.samples.push({
          id: r.id,
          taskId: r.task_id,
          status: r.status,
          lastRun: r.last_run.toISOString(),
          attempts: r.attempts,
          arguments: r.arguments,
        })
      }
    }
    const sorted = [...groups.values()].sort(
      (a, b) => b.count - a.count || a.taskModule.localeCompare(b.taskModule) || a.taskName.localeCompare(b.taskName),
    )
    return {cutoff: cutoff.toISOString(), groups: sorted}
  }
}
