import {count, DestructiveOperation, Plan, Progress, Step, Summary} from 'ops-cli/base'

import {Archive} from './archive.js'
import {ArchiveTable} from './archive-table.js'
import {BatchDeleter, BatchStats, deleteInBatches, newStats} from './batches.js'
import {openTaskManager, TaskManagerConnection} from './connection.js'
import {describeFilter, filterRecord, parseAge, TaskFilter} from './filter.js'
import {TaskManagerOrm} from './orm-path.js'
import {summaryLines} from './summary-format.js'
import {qualified, TableName} from './table-name.js'
import type {BatchLimits, ReferencingForeignKey} from './task-manager-table.js'

/** The seed's threshold: below it the ORM path, at or above it raw SQL. */
export const ORM_THRESHOLD = 50_000
export const MAX_BATCH_SIZE = 50_000
/** TypeORM materialises each batch's ids as objects: a lower ceiling keeps its memory well bounded. */
export const MAX_ORM_BATCH_SIZE = 20_000
const APPLICATION_NAME = 'ops taskmanager:clear'

export type Method = 'raw-sql' | 'typeorm'

export interface ClearOptions {
  url: string
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
  /** issue 12: --archive-table [schema.]NAME */
  archiveTable?: string
}

export interface ClearPlan extends Plan {
  method: Method
  upToId: string
  data: {
    table: string
    method: Method
    batchSize: number
    targetBatchMs: number
    watcherLinks: number
    foreignKeys: ReferencingForeignKey[]
    archive: string | null
    /** issue 12: the --archive-table and whether it must be created first. */
    archiveTable: {name: string; exists: boolean} | null
    /** Filled in batch by batch while the deletion runs. */
    execution: BatchStats
  }
}

/** Which path the seed would take, and why (printed with the plan). */
export function chooseMethod(matching: number, useCursor: boolean, useOrm = false): {method: Method; reason: string} {
  if (useCursor) return {method: 'raw-sql', reason: '--use-cursor'}
  if (useOrm) return {method: 'typeorm', reason: '--use-orm'}
  if (matching >= ORM_THRESHOLD) return {method: 'raw-sql', reason: `${count(ORM_THRESHOLD)} or more matching rows`}
  return {method: 'typeorm', reason: `fewer than ${count(ORM_THRESHOLD)} matching rows`}
}

function describeForeignKey(fk: ReferencingForeignKey, table: TableName): string {
  const what = `${fk.table.schema}.${fk.table.name}(${fk.columns.join(', ')}) references ${table.schema}.${table.name} (constraint ${fk.constraint}, ON DELETE ${fk.onDelete})`
  if (fk.onDelete === 'CASCADE') return `${what}: its rows pointing at deleted records will be deleted too.`
  if (fk.onDelete === 'SET NULL' || fk.onDelete === 'SET DEFAULT') return `${what}: its rows pointing at deleted records will be changed (${fk.onDelete}).`
  return `${what}: ops does not delete from it, so a batch containing a referenced record fails and is rolled back.`
}

/** taskmanager:clear as an operation of the base protocol: plan here, render and guard in the base. */
export class ClearOperation implements DestructiveOperation<ClearPlan> {
  private connection?: TaskManagerConnection
  private orm?: TaskManagerOrm
  private archiveTable?: ArchiveTable

  constructor(private readonly options: ClearOptions) {}

  async connect(): Promise<void> {
    this.connection = await openTaskManager(this.options.url, this.options.table, APPLICATION_NAME)
  }

  private get db(): TaskManagerConnection {
    if (!this.connection) throw new Error('not connected')
    return this.connection
  }

  async plan(): Promise<ClearPlan> {
    const {table} = this.db
    const filter = {...this.options.filter}
    if (filter.olderThan !== undefined) filter.createdBefore = await table.cutoff(parseAge(filter.olderThan))
    this.options.filter = filter
    if (this.options.archive) await Archive.assertWritable(this.options.archive)
    // issue 12: a table that cannot be the archive is refused here, before anything is deleted.
    if (this.options.archiveTable) this.archiveTable = await ArchiveTable.inspect(this.db.client, this.options.archiveTable, table.table)
    const upToId = await table.maxId()
    const matching = await table.countMatching(filter)
    const foreignKeys = await table.referencingForeignKeys()
    const watcherLinks = matching > 0 ? await table.countWatcherLinks(filter) : 0
    const {method, reason} = chooseMethod(matching, this.options.useCursor, this.options.useOrm)
    const sizing = this.options.targetBatchMs > 0 ? `starting at ${count(this.options.batchSize)}, adapted toward ${this.options.targetBatchMs}ms per batch` : 'fixed size'
    const how = method === 'raw-sql' ? 'raw SQL (pg)' : 'TypeORM'
    const details = [
      ...describeFilter(filter),
      `Using ${how} in batches of ${count(this.options.batchSize)} (${reason}; ${sizing}), walking the primary key, one short transaction per batch`,
    ]
    const links = foreignKeys.filter((fk) => fk.isWatcherLink)
    if (links.length) details.push(`Watcher links: ${count(watcherLinks)} rows of ${links.map((fk) => `${fk.table.schema}.${fk.table.name}`).join(', ')} are deleted in the same transactions`)
    if (this.archiveTable) details.push(this.archiveTable.describe(matching))
    if (this.options.archive) details.push(`Archive: each deleted row is appended as a JSON line to ${this.options.archive} before its batch commits`)
    return {
      store: 'PostgreSQL',
      target: this.db.maskedUrl,
      noun: 'TaskManager records',
      count: matching,
      filters: {...filterRecord(filter), table: table.displayName},
      details,
      warnings: foreignKeys.filter((fk) => !fk.isWatcherLink).map((fk) => describeForeignKey(fk, table.table)),
      method,
      upToId,
      data: {
        table: table.displayName,
        method,
        batchSize: this.options.batchSize,
        targetBatchMs: this.options.targetBatchMs,
        watcherLinks,
        foreignKeys,
        archive: this.options.archive ?? null,
        archiveTable: this.archiveTable ? {name: this.archiveTable.displayName, exists: this.archiveTable.exists} : null,
        execution: newStats(this.options.batchSize),
      },
    }
  }

  steps(plan: ClearPlan): Step[] {
    const run = async function* (this: ClearOperation, signal: AbortSignal): AsyncGenerator<Progress> {
      // issue 12: created once, before the first batch (never by the plan or a dry run); every batch statement archives its own rows.
      await this.archiveTable?.ensure()
      const deleter = await this.deleter(plan)
      const archive = this.options.archive ? await Archive.open(this.options.archive) : undefined
      try {
        yield* deleteInBatches(
          deleter,
          {
            filter: this.options.filter,
            upToId: plan.upToId,
            batchSize: this.options.batchSize,
            targetMs: this.options.targetBatchMs,
            maxBatchSize: plan.method === 'typeorm' ? Math.max(this.options.batchSize, MAX_ORM_BATCH_SIZE) : MAX_BATCH_SIZE,
            limits: this.options.limits,
            sleepMs: this.options.sleepMs,
            archive,
          },
          signal,
          plan.data.execution,
        )
      } finally {
        await archive?.close()
      }
    }
    const how = plan.method === 'raw-sql' ? 'raw SQL' : 'TypeORM'
    return [{title: `Deleting TaskManager records from ${qualified(this.db.table.table)} (${how})`, total: plan.count, run: (signal) => run.call(this, signal)}]
  }

  private async deleter(plan: ClearPlan): Promise<BatchDeleter> {
    if (plan.method === 'raw-sql') {
      this.db.table.archive = this.archiveTable // issue 12
      return this.db.table
    }
    this.orm = await TaskManagerOrm.connect(this.options.url, this.db.table.table, plan.data.foreignKeys, `${APPLICATION_NAME} (typeorm)`)
    this.orm.archive = this.archiveTable // issue 12
    return this.orm
  }

  async summary(): Promise<Summary> {
    const statuses = await this.db.table.statusSummary()
    const modules = await this.db.table.moduleSummary()
    return {lines: summaryLines(statuses, modules), data: {statuses, modules}}
  }

  async disconnect(): Promise<void> {
    await this.orm?.close()
    await this.connection?.client.end().catch(() => {})
  }
}
