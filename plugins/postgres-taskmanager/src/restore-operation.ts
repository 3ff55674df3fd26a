import {count, InFlightOutcomeUnknown, OpsError, Plan, Progress, Step} from 'ops-cli/base'

import {ArchiveFile} from './archive-reader.js'
import {ArchivedWindow, ArchiveTable} from './archive-table.js'
import {ARCHIVE_BATCH_BYTES} from './batches.js'
import {CommitOutcomeUnknown} from './commit-outcome.js'
import {keepAwake, TaskManagerConnection} from './connection.js'
import {describeFilter, filterRecord, TaskFilter} from './filter.js'
import {RestoreTarget} from './restore-target.js'
import {TaskManagerOperation} from './taskmanager-operation.js'

/** Rows sent to the server per classification query while planning a file restore. */
const PLAN_CHUNK = 5000

export interface RestoreOptions {
  url: string
  /** --dry-run: the plan may then be made on a read-only server (a standby). */
  dryRun?: boolean
  table: string
  /** Exactly one of the two sources. */
  fromTable?: string
  fromFile?: string
  /** status, task module and name; the age comes as `olderThanMs`. */
  filter: TaskFilter
  olderThanMs?: number
  window: ArchivedWindow
  batchSize: number
  /** Pause between batches (as pt-archiver's --sleep). */
  sleepMs?: number
}

export interface RestoreStats {
  batches: number
  restored: number
  /**
   * Matching rows the batches met and did not insert because their id is in the
   * TaskManager table: those the plan counted in skippedExisting and any that
   * appeared since. The same for both sources: batches walk every matching row.
   */
  skipped: number
}

export interface RestorePlan extends Plan {
  data: {
    table: string
    source: {archiveTable: string} | {file: string; rows: number; distinctRows: number}
    batchSize: number
    /** Matching rows left out because their id already exists in the TaskManager table. */
    skippedExisting: number
    sequence: string | null
    /** Filled in batch by batch while the restore runs. */
    execution: RestoreStats
  }
}

/** taskmanager:restore as an operation of the base protocol: puts back what a clear archived. */
export class RestoreOperation extends TaskManagerOperation<RestorePlan> {
  private target?: RestoreTarget
  private archive?: ArchiveTable
  private file?: ArchiveFile
  /** File source: the matching ids (existing ones too, met and skipped as from a table), ascending, worked out by the plan. */
  private fileIds: string[] = []
  private upToId = '0'
  private filter: TaskFilter

  constructor(private readonly options: RestoreOptions) {
    super(options, 'restore')
    this.filter = {...options.filter}
  }

  async connect(): Promise<void> {
    const connection = await this.openConnection()
    this.target = await RestoreTarget.open(connection.client, connection.table.table)
  }

  /** The plan reads the whole archive (file or table) and looks up which of its rows are already back. */
  get planning(): string {
    return this.options.fromTable !== undefined
      ? `Counting the restorable rows of ${this.options.fromTable}`
      : `Reading ${this.options.fromFile} and looking up which of its rows are already in the table`
  }

  /** A new main connection after the prompt: the target, and the archive table read from, are opened again on it. */
  protected override async reopened(connection: TaskManagerConnection): Promise<void> {
    this.target = await RestoreTarget.open(connection.client, connection.table.table)
    if (this.archive) this.archive = await ArchiveTable.inspect(connection.client, this.options.fromTable!, connection.table.table)
  }

  protected async readPlan(): Promise<RestorePlan> {
    const {table} = this.db
    const target = this.target!
    if (this.options.olderThanMs !== undefined) {
      this.filter.olderThanMs = this.options.olderThanMs
      this.filter.createdBefore = await target.cutoff(this.options.olderThanMs)
    }
    const {window} = this.options
    const details = [...describeFilter(this.filter), ...(this.readOnly ? [this.readOnly] : [])]
    if (window.after) details.push(`Archived after: ${window.after.toISOString()}`)
    if (window.before) details.push(`Archived before: ${window.before.toISOString()}`)
    const warnings: string[] = []
    let restorable: number
    let existing: number
    let source: RestorePlan['data']['source']
    if (this.options.fromTable !== undefined) {
      this.archive = await ArchiveTable.inspect(this.db.client, this.options.fromTable, table.table)
      if (!this.archive.exists) throw new OpsError(`The archive table ${this.archive.displayName} does not exist: nothing to restore from.`)
      const counts = await this.archive.countRestorable(this.filter, window)
      this.upToId = counts.maxId
      existing = counts.existing
      restorable = counts.matching - counts.existing
      source = {archiveTable: this.archive.displayName}
      details.push(
        `From archive table ${this.archive.displayName} (${count(await this.archive.rowCount())} rows): ` +
          `in batches of ${count(this.options.batchSize)} walked by id, ` +
          'each one transaction that inserts the rows and removes exactly the inserted ones from the archive table',
      )
    } else {
      this.file = await ArchiveFile.open(this.options.fromFile!)
      warnings.push(...this.file.warnings)
      existing = 0
      const ids = this.file.ids()
      for (let i = 0, n = 0; i < ids.length; i += n) {
        n = this.file.fitting(ids, i, PLAN_CHUNK, ARCHIVE_BATCH_BYTES)
        for (const row of await target.classifyJson(await this.file.read(ids.slice(i, i + n)), this.filter)) {
          if (row.existing) existing++
          this.fileIds.push(row.id)
        }
      }
      restorable = this.fileIds.length - existing
      source = {file: this.file.path, rows: this.file.rows, distinctRows: this.file.size}
      const repeated = this.file.rows - this.file.size
      details.push(
        `From file ${this.file.path}: ${count(this.file.rows)} rows, ${count(this.file.size)} distinct` +
          (repeated > 0 ? ` (${count(repeated)} repeated by an interrupted clear: each row is restored once, from its last line)` : '') +
          `; in batches of ${count(this.options.batchSize)} walked by id, one transaction each; the file is left as it is`,
      )
    }
    if (existing > 0) {
      details.push(
        `Skipped: ${count(existing)} matching rows whose id already exists in ${table.displayName} ` +
          `(never overwritten${this.archive ? '; they stay in the archive table' : ''})`,
      )
    }
    details.push('Rows come back with their original ids and values')
    if (target.sequence) details.push(`Sequence: ${target.sequence} is moved past the greatest restored id whenever it is behind it`)
    details.push('Watcher links (task_manager_taskwatcher_tasks) are not restored: they name watchers that may be gone')
    return {
      store: 'PostgreSQL',
      target: this.db.maskedUrl,
      noun: 'archived TaskManager records',
      verb: {present: 'restore', past: 'restored'},
      count: restorable,
      filters: {
        ...filterRecord(this.filter),
        archivedAfter: window.after?.toISOString() ?? null,
        archivedBefore: window.before?.toISOString() ?? null,
        table: table.displayName,
        ...('archiveTable' in source ? {fromArchiveTable: source.archiveTable} : {fromFile: source.file}),
      },
      messages: {
        nothing:
          'No archived TaskManager records to restore with the specified criteria' +
          (existing > 0 ? ` (${count(existing)} matching rows skipped: their id already exists in ${table.displayName})` : ''),
      },
      details,
      warnings,
      data: {
        table: table.displayName,
        source,
        batchSize: this.options.batchSize,
        skippedExisting: existing,
        sequence: target.sequence,
        execution: {batches: 0, restored: 0, skipped: 0},
      },
    }
  }

  steps(plan: RestorePlan): Step[] {
    const from = this.archive ? this.archive.displayName : this.file!.path
    return [
      {
        title: `Restoring TaskManager records into ${this.db.table.displayName} from ${from}`,
        total: plan.count,
        run: (signal) => this.restore(signal, plan.data.execution),
      },
    ]
  }

  /** One committed transaction per batch; stops between batches when `signal` aborts, so a re-run finds what is left. */
  private async *restore(signal: AbortSignal, stats: RestoreStats): AsyncGenerator<Progress> {
    // Its one connection sleeps between batches with --sleep-ms: under the server's idle_session_timeout, kept awake.
    const {table} = this.db
    const stopPings = keepAwake([() => table.ping()], table.idleSessionTimeoutMs)
    try {
      yield* this.restoreBatches(signal, stats)
    } finally {
      stopPings()
    }
  }

  /** One batch's transaction; one whose COMMIT got no answer may have restored its rows or not, and a re-run skips those back. */
  private async inBatch<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await this.target!.inTransaction(work)
    } catch (error) {
      if (!(error instanceof CommitOutcomeUnknown)) throw error
      throw new InFlightOutcomeUnknown(
        `${error.message}: the server may have restored that batch or rolled it back. ` +
          'Run the same command again: it skips the ids already back in the table.',
        {cause: error.cause},
      )
    }
  }

  private async *restoreBatches(signal: AbortSignal, stats: RestoreStats): AsyncGenerator<Progress> {
    const target = this.target!
    let afterId = '0'
    let next = 0
    while (!signal.aborted) {
      const started = performance.now()
      let outcome: {restored: number; skipped: number; lastId?: string; full: boolean}
      if (this.archive) {
        const archive = this.archive
        const moved = await this.inBatch(async () => {
          const result = await archive.moveBack(this.filter, this.options.window, afterId, this.upToId, this.options.batchSize)
          await target.keepSequenceAhead(result.lastId)
          return result
        })
        outcome = {...moved, full: moved.seen === this.options.batchSize}
      } else {
        const ids = this.fileIds.slice(next, next + this.file!.fitting(this.fileIds, next, this.options.batchSize, ARCHIVE_BATCH_BYTES))
        if (ids.length === 0) break
        next += ids.length
        const lines = await this.file!.read(ids)
        const inserted = await this.inBatch(async () => {
          const result = await target.insertJson(lines, this.filter)
          await target.keepSequenceAhead(ids.at(-1))
          return result
        })
        outcome = {restored: inserted.length, skipped: ids.length - inserted.length, lastId: ids.at(-1), full: next < this.fileIds.length}
      }
      stats.batches++
      stats.restored += outcome.restored
      stats.skipped += outcome.skipped
      if (outcome.lastId !== undefined) afterId = outcome.lastId
      const skipped = stats.skipped > 0 ? `, ${count(stats.skipped)} skipped (id exists)` : ''
      yield {
        done: stats.restored,
        batch: {number: stats.batches, size: outcome.restored, ms: performance.now() - started},
        note: `last id ${afterId}${skipped}`,
      }
      if (outcome.lastId === undefined || !outcome.full) break
      if (this.options.sleepMs && !signal.aborted) await new Promise((resolve) => setTimeout(resolve, this.options.sleepMs))
    }
  }

  async disconnect(): Promise<void> {
    await this.file?.close().catch(() => {})
    await this.connection?.client.end().catch(() => {})
  }
}
