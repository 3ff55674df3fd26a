import {resolve} from 'node:path'

import {count, duration, Plan, plural, Progress, Step} from 'ops-cli/base'

import {Archive} from './archive.js'
import {ArchiveTable} from './archive-table.js'
import {BatchCommit, chooseBatchCommit, describeBatchCommit} from './batch-commit.js'
import {ARCHIVE_BATCH_BYTES, BatchDeleter, BatchStats, deleteInBatches, newStats, splitIdRange} from './batches.js'
import {APPLICATION_NAMES, keepAwake, openTaskManager, TaskManagerConnection} from './connection.js'
import {describeFilter, filterRecord, TaskFilter} from './filter.js'
import {PrimaryHealth, ReplicaProbe, UNWATCHED} from './server-health.js'
import {qualified, TableName} from './table-name.js'
import {TaskManagerOperation} from './taskmanager-operation.js'
import type {BatchLimits, IdSpan, ReferencingForeignKey} from './task-manager-table.js'
import {lagText, Throttle} from './throttle.js'

/** clear_task_manager_queue's threshold: below it the ORM path, at or above it raw SQL. */
export const ORM_THRESHOLD = 50_000
export const MAX_BATCH_SIZE = 50_000
/** TypeORM materialises each batch's ids as objects: a lower ceiling keeps its memory well bounded. */
export const MAX_ORM_BATCH_SIZE = 20_000

export type Method = 'raw-sql' | 'typeorm'

export interface ClearOptions {
  url: string
  /** --dry-run: the plan may then be made on a read-only server (a standby). */
  dryRun?: boolean
  table: string
  filter: TaskFilter
  useCursor: boolean
  /** Hidden, for the bench: the TypeORM path whatever the row count. */
  useOrm?: boolean
  batchSize: number
  targetBatchMs: number
  limits: BatchLimits
  sleepMs: number
  archive?: string
  /** Workers over disjoint id ranges, each on its own connection. */
  concurrency?: number
  /** Pause between batches while a replica lags more than this. */
  maxReplicaLagMs?: number
  /** Standbys whose lag is measured on the standby itself. */
  replicaUrls?: string[]
  pauseOnAutovacuum?: boolean
  /** Start no batch after this long; what is left is reported. */
  maxRuntimeMs?: number
  /** --archive-table [schema.]NAME: each batch's statement also inserts its deleted rows there. */
  archiveTable?: string
  /** --synchronous-commit: every batch's COMMIT waits for the disk, instead of one commit at the end (batch-commit.ts). */
  synchronousCommit?: boolean
}

export interface ClearPlan extends Plan {
  method: Method
  /** The ids of the rows the plan counted: the walk covers these, and the final count reads these. */
  span: IdSpan
  /** The plan count's snapshot (pg_current_snapshot()): rows unchanged since still matched it. */
  snapshot: string
  messages: NonNullable<Plan['messages']>
  data: {
    table: string
    method: Method
    batchSize: number
    targetBatchMs: number
    concurrency: number
    watcherLinks: number
    foreignKeys: ReferencingForeignKey[]
    archive: string | null
    /** The --archive-table and whether it exists already (false: created before the first batch). */
    archiveTable: {name: string; exists: boolean} | null
    batchCommit: BatchCommit
    /** Filled in batch by batch while the deletion runs. */
    execution: BatchStats
  }
}

/** Which path clear_task_manager_queue would take, and why (printed with the plan). */
export function chooseMethod(matching: number, useCursor: boolean, useOrm = false): {method: Method; reason: string} {
  if (useCursor) return {method: 'raw-sql', reason: '--use-cursor'}
  if (useOrm) return {method: 'typeorm', reason: '--use-orm'}
  if (matching >= ORM_THRESHOLD) return {method: 'raw-sql', reason: `${count(ORM_THRESHOLD)} or more matching rows`}
  return {method: 'typeorm', reason: `fewer than ${count(ORM_THRESHOLD)} matching rows`}
}

/** 370 KB, 32,768 KB: whole kilobytes, grouped. */
const kilobytes = (bytes: number) => `${count(Math.ceil(bytes / 1024))} KB`

function describeForeignKey(fk: ReferencingForeignKey, table: TableName): string {
  const what =
    `${fk.table.schema}.${fk.table.name}(${fk.columns.join(', ')}) references ${table.schema}.${table.name} ` +
    `(constraint ${fk.constraint}, ON DELETE ${fk.onDelete})`
  if (fk.onDelete === 'CASCADE') return `${what}: its rows pointing at deleted records will be deleted too.`
  if (fk.onDelete === 'SET NULL' || fk.onDelete === 'SET DEFAULT')
    return `${what}: its rows pointing at deleted records will be changed (${fk.onDelete}).`
  return `${what}: ops does not delete from it, so a batch containing a referenced record fails and is rolled back.`
}

/** taskmanager:clear as an operation of the base protocol: plan here, render and guard in the base. */
export class ClearOperation extends TaskManagerOperation<ClearPlan> {
  /** Everything opened for the run beyond the main connection: worker connections, ORM sources, replica probes. */
  private readonly closers: (() => Promise<void>)[] = []
  private archiveTable?: ArchiveTable
  /** --archive: the largest JSON line of the plan's sample of matching rows, which sizes the first batch. */
  private archiveRowBytes?: number
  /** One probe per --replica-url, connected with the main connection. */
  private replicas: ReplicaProbe[] = []

  constructor(private readonly options: ClearOptions) {
    super(options, 'clear')
  }

  /** The plan's count reads the whole table (it has no index but the primary key), or waits while a migration locks it. */
  get planning(): string {
    return `Counting the matching rows of ${this.connection?.table.displayName ?? 'the TaskManager table'}`
  }

  async connect(): Promise<void> {
    const connection = await this.openConnection()
    await new PrimaryHealth(connection.client).assertCanWatch({
      replicaLag: this.options.maxReplicaLagMs !== undefined,
      vacuum: this.options.pauseOnAutovacuum ?? false,
    })
    // Every --replica-url is reached and checked to be a standby now, before the plan: a dry run proves them too, and
    // a wrong one fails here rather than after the confirmation.
    const probes = await Promise.allSettled(
      (this.options.replicaUrls ?? []).map((url) => ReplicaProbe.connect(url, `${this.applicationName} (replica lag)`)),
    )
    for (const probe of probes) if (probe.status === 'fulfilled') this.closers.push(() => probe.value.close())
    this.replicas = probes.flatMap((probe) => (probe.status === 'fulfilled' ? [probe.value] : []))
    const failed = probes.find((probe) => probe.status === 'rejected')
    if (failed) throw failed.reason
  }

  /** A new main connection after the prompt: the --archive-table is inspected again on it. */
  protected override async reopened(connection: TaskManagerConnection): Promise<void> {
    if (this.options.archiveTable)
      this.archiveTable = await ArchiveTable.inspect(connection.client, this.options.archiveTable, connection.table.table)
  }

  protected async readPlan(): Promise<ClearPlan> {
    const {table} = this.db
    const filter = {...this.options.filter}
    if (filter.olderThanMs !== undefined) filter.createdBefore = await table.cutoff(filter.olderThanMs)
    this.options.filter = filter
    if (this.options.archive) await Archive.assertWritable(this.options.archive)
    // A table that cannot be the archive is refused here, before anything is deleted (a dry run too).
    if (this.options.archiveTable) this.archiveTable = await ArchiveTable.inspect(this.db.client, this.options.archiveTable, table.table)
    // The walk covers the ids of the rows counted, no more: where the matching rows are the oldest (or newest) ids,
    // no batch reads through the rest of the table to find nothing.
    const {matching, links: watcherLinks, span, snapshot} = await table.countMatchingWithLinks(filter)
    const foreignKeys = await table.referencingForeignKeys()
    const others = (await table.otherSessionsOf(Object.values(APPLICATION_NAMES))).map(
      (run) =>
        `${run.command} is also running on this database (backend ${run.pid}` +
        `${run.since ? `, since ${run.since.toISOString()}` : ''}${run.client ? `, from ${run.client}` : ''}): ` +
        (run.command === this.applicationName
          ? 'where both match the same rows, each reports the rows the other deleted as skipped.'
          : 'a row it puts back that matches this filter may be deleted again.'),
    )
    const {method, reason} = chooseMethod(matching, this.options.useCursor, this.options.useOrm)
    const batchCommit = chooseBatchCommit(await table.commitSettings(), this.options.synchronousCommit ?? false)
    const sizing =
      this.options.targetBatchMs > 0
        ? `starting at ${count(this.options.batchSize)}, adapted toward ${this.options.targetBatchMs}ms per batch`
        : 'fixed size'
    const how = method === 'raw-sql' ? 'raw SQL (pg)' : 'TypeORM'
    const workers = this.workers
    const details = [
      ...describeFilter(filter),
      `Using ${how} in batches of ${count(this.options.batchSize)} (${reason}; ${sizing}), ` +
        'walking the primary key, one short transaction per batch' +
        (workers > 1 ? `, ${workers} workers over disjoint id ranges` : ''),
      describeBatchCommit(batchCommit),
      ...(await this.throttleLines()),
      ...(this.readOnly ? [this.readOnly] : []),
    ]
    const links = foreignKeys.filter((fk) => fk.isWatcherLink)
    if (links.length)
      details.push(
        `Watcher links: ${count(watcherLinks)} rows of ${links.map((fk) => `${fk.table.schema}.${fk.table.name}`).join(', ')} ` +
          'are deleted in the same transactions',
      )
    if (this.archiveTable)
      details.push(...this.archiveTable.describe(matching, matching > 0 ? await this.archiveTable.countArchivedAlready(filter) : 0))
    if (this.options.archive) {
      this.archiveRowBytes = matching > 0 ? await table.largestRowBytes(filter) : 0
      const rows = Math.floor(ARCHIVE_BATCH_BYTES / Math.max(1, this.archiveRowBytes))
      const cap =
        `; rows of up to ${kilobytes(this.archiveRowBytes)} (a sample), ` +
        `so at most ${count(rows)} to a batch (${kilobytes(ARCHIVE_BATCH_BYTES)} of JSON)`
      details.push(
        `Archive: each deleted row is appended as a JSON line to ${this.options.archive} before its batch commits` +
          (rows < this.options.batchSize ? cap : ''),
      )
    }
    return {
      store: 'PostgreSQL',
      target: this.db.maskedUrl,
      noun: 'TaskManager records',
      count: matching,
      filters: {
        ...filterRecord(filter),
        table: table.displayName,
        // Where the deleted rows went, for the audit line and --json.
        archiveTable: this.archiveTable?.displayName ?? null,
        archive: this.options.archive ? resolve(this.options.archive) : null,
      },
      details,
      warnings: [...foreignKeys.filter((fk) => !fk.isWatcherLink).map((fk) => describeForeignKey(fk, table.table)), ...others],
      method,
      span,
      snapshot,
      messages: {},
      data: {
        table: table.displayName,
        method,
        batchSize: this.options.batchSize,
        targetBatchMs: this.options.targetBatchMs,
        concurrency: workers,
        watcherLinks,
        foreignKeys,
        archive: this.options.archive ?? null,
        archiveTable: this.archiveTable ? {name: this.archiveTable.displayName, exists: this.archiveTable.exists} : null,
        batchCommit,
        execution: newStats(this.options.batchSize, workers),
      },
    }
  }

  private get workers(): number {
    return Math.max(1, this.options.concurrency ?? 1)
  }

  /** What the run pauses for; with --max-replica-lag, which of the primary's WAL receivers now count as replicas. */
  private async throttleLines(): Promise<string[]> {
    const {maxReplicaLagMs, replicaUrls = [], pauseOnAutovacuum, maxRuntimeMs} = this.options
    const lines: string[] = []
    if (maxReplicaLagMs !== undefined) {
      const where = ['pg_stat_replication on the primary', ...(replicaUrls.length ? [`${replicaUrls.length} --replica-url`] : [])].join(
        ' and ',
      )
      lines.push(`Pausing between batches while a replica lags more than ${lagText(maxReplicaLagMs)} (measured from ${where})`)
      const receivers = await new PrimaryHealth(this.db.client).replicaLags()
      const standbys = receivers.filter((r) => r.kind === 'standby').map((r) => r.name)
      lines.push(
        standbys.length ? `Standbys streaming from the primary now: ${standbys.join(', ')}` : 'No standby streams from the primary now',
      )
      const others = receivers.flatMap((r) => (r.kind === 'standby' ? [] : [`${r.name} (${UNWATCHED[r.kind]})`]))
      if (others.length) lines.push(`Not waited for: ${others.join('; ')}`)
    }
    if (pauseOnAutovacuum) lines.push('Pausing between batches while autovacuum (or VACUUM) works on the table')
    if (maxRuntimeMs !== undefined)
      lines.push(`Starting no batch after ${duration(maxRuntimeMs)}; what is left is reported and a re-run finishes it`)
    return lines
  }

  steps(plan: ClearPlan): Step[] {
    const run = async function* (this: ClearOperation, signal: AbortSignal): AsyncGenerator<Progress> {
      // Created once, before the first batch (never by the plan or a dry run); every batch statement archives its own rows.
      await this.archiveTable?.ensure()
      const started = Date.now()
      const deleters = await this.deleters(plan)
      const throttle = this.throttle()
      const archive = this.options.archive ? await Archive.open(this.options.archive) : undefined
      const stats = plan.data.execution
      const {table} = this.db
      const stopPings = keepAwake(
        [() => table.ping(), ...deleters.filter((deleter) => deleter !== table).map((deleter) => () => deleter.ping())],
        table.idleSessionTimeoutMs,
      )
      try {
        yield* deleteInBatches(
          {
            deleters,
            countLeft: (passedOver) => this.db.table.countLeft(this.options.filter, plan.span, plan.snapshot, passedOver),
            walPosition: () => this.db.table.walInsertPosition(),
            walFlushedTo: (position) => this.db.table.walFlushedTo(position),
          },
          {
            filter: this.options.filter,
            ranges: splitIdRange(plan.span.min, plan.span.max, this.workers),
            batchSize: this.options.batchSize,
            targetMs: this.options.targetBatchMs,
            maxBatchSize: plan.method === 'typeorm' ? Math.max(this.options.batchSize, MAX_ORM_BATCH_SIZE) : MAX_BATCH_SIZE,
            limits: {...this.options.limits, synchronousCommit: plan.data.batchCommit.setting},
            asynchronousCommit: plan.data.batchCommit.asynchronous,
            sleepMs: this.options.sleepMs,
            archive,
            archiveRowBytes: this.archiveRowBytes,
            throttle: throttle.active ? throttle : undefined,
            deadline: this.options.maxRuntimeMs === undefined ? undefined : started + this.options.maxRuntimeMs,
          },
          signal,
          stats,
        )
      } finally {
        stopPings()
        await archive?.close()
      }
      plan.messages.success = outcomeLine(stats, plan, this.options.maxRuntimeMs)
    }
    const how = plan.method === 'raw-sql' ? 'raw SQL' : 'TypeORM'
    return [
      {
        title: `Deleting TaskManager records from ${qualified(this.db.table.table)} (${how})`,
        total: plan.count,
        run: (signal) => run.call(this, signal),
      },
    ]
  }

  /** One deleter per worker, each on its own connection (a single raw-SQL worker uses the main one). */
  private async deleters(plan: ClearPlan): Promise<BatchDeleter[]> {
    const deleters = await this.openDeleters(plan)
    // Every worker's batch statement archives its own rows.
    for (const deleter of deleters) deleter.archive = this.archiveTable
    return deleters
  }

  private async openDeleters(plan: ClearPlan): Promise<(BatchDeleter & {archive?: ArchiveTable})[]> {
    if (plan.method === 'raw-sql' && this.workers === 1) return [this.db.table]
    return Promise.all(
      Array.from({length: this.workers}, async (_, i) => {
        const name = `${this.applicationName} (${plan.method === 'typeorm' ? 'typeorm ' : ''}worker ${i + 1})`
        if (plan.method === 'typeorm') {
          // Loaded only here: importing TypeORM costs the raw-SQL path a noticeable part of its start-up.
          const {TaskManagerOrm} = await import('./orm-path.js')
          const orm = await TaskManagerOrm.connect(this.options.url, this.db.table.table, plan.data.foreignKeys, name)
          this.closers.push(() => orm.close())
          return orm
        }
        const worker = await openTaskManager(this.options.url, this.options.table, name)
        this.closers.push(() => worker.client.end().catch(() => {}))
        return worker.table
      }),
    )
  }

  private throttle(): Throttle {
    return new Throttle({
      primary: new PrimaryHealth(this.db.client),
      table: this.db.table.table,
      maxReplicaLagMs: this.options.maxReplicaLagMs,
      replicas: this.replicas,
      pauseOnAutovacuum: this.options.pauseOnAutovacuum ?? false,
    })
  }

  /** Rows that matched the plan still match after every walk (they stayed locked): the user must re-run. */
  unfinished(plan: ClearPlan): string | undefined {
    const {execution} = plan.data
    if (execution.stoppedBy !== 'completed' || !execution.stillMatching) return undefined
    const left = execution.stillMatching
    return (
      `${plural(left, 'row that matched the plan still matches the filter', 'rows that matched the plan still match the filter')}: ` +
      `another session held ${left === 1 ? 'it' : 'them'} locked (or kept changing ${left === 1 ? 'it' : 'them'}) ` +
      `while ${plural(execution.passes, 'walk')} went by. Nothing else was touched. Run the same command again to finish.` +
      (execution.newlyMatching ? ` ${newcomers(execution.newlyMatching)}.` : '')
    )
  }

  async disconnect(): Promise<void> {
    await Promise.all(this.closers.splice(0).map((close) => close()))
    await this.connection?.client.end().catch(() => {})
  }
}

/** The report's last line: what was deleted, what was skipped, and what still matches. */
function outcomeLine(stats: BatchStats, plan: ClearPlan, maxRuntimeMs?: number): string {
  const deleted = `${count(stats.deleted)} ${plan.noun}`
  const skipped =
    stats.skipped > 0
      ? plural(
          stats.skipped,
          'skipped because it changed or was locked when its batch came',
          'skipped because they changed or were locked when their batch came',
        )
      : ''
  const left = stats.stillMatching ?? 0
  if (stats.stoppedBy === 'max-runtime') {
    // Rows of the plan and the others alike: the next window's run deletes both.
    const matching = left + (stats.newlyMatching ?? 0)
    const rest =
      matching > 0
        ? `${plural(matching, 'matching row is', 'matching rows are')} left; run the same command again (in the next window) to finish`
        : 'none is left'
    return `Stopped by --max-runtime ${duration(maxRuntimeMs ?? 0)}: deleted ${deleted}${skipped ? `, ${skipped}` : ''}; ${rest}.`
  }
  const still = plural(left, 'row of the plan still matches', 'rows of the plan still match')
  if (left > 0) return `Deleted ${deleted}${skipped ? `, ${skipped}` : ''}; ${still} the filter.`
  const none = stats.skipped === 1 ? 'it no longer matches' : 'none of them still matches'
  const others = stats.newlyMatching ? `. ${newcomers(stats.newlyMatching)}` : ''
  return `Successfully deleted ${deleted}${skipped ? ` (${skipped}; ${none})` : ''}${others}`
}

/** The `n` rows that came to match the filter after their batch: not of the plan, left for a later run (exit 0). */
function newcomers(n: number): string {
  return (
    `${plural(n, 'other row came', 'other rows came')} to match the filter during the run, after ${n === 1 ? 'its' : 'their'} ` +
    `batch had passed (changed by another session); ${n === 1 ? 'it was' : 'they were'} not of the plan and ` +
    `${n === 1 ? 'is' : 'are'} left for the next run`
  )
}
