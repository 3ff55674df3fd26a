import {DataSource, EntitySchema, QueryRunner, SelectQueryBuilder} from 'typeorm'

import type {ArchiveTable} from './archive-table.js'
import {commitOrUnknown} from './commit-outcome.js'
import type {BatchDeleter} from './batches.js'
import {predicatesOf} from './filter.js'
import type {TableName} from './table-name.js'
import {commitSettingSql, endsDurably, SYNCHRONOUS_COMMIT} from './batch-commit.js'
import type {BatchOutcome, BatchRequest, ReferencingForeignKey} from './task-manager-table.js'

/** celery-task-manager's TaskManager model as Django creates it (docs/taskmanager-table.md). */
export interface TaskManagerRow {
  id: string
  current_page: number | null
  total_pages: number | null
  attempts: number
  task_module: string
  task_name: string
  reverse_module: string | null
  reverse_name: string | null
  exception_module: string | null
  exception_name: string | null
  arguments: unknown
  status: string
  status_message: string | null
  task_id: string
  priority: number | null
  killed: boolean
  fixed: boolean
  last_run: Date
  started_at: Date | null
  created_at: Date
  updated_at: Date
}

const varchar = (nullable: boolean) => ({type: 'varchar' as const, length: 200, nullable})
const integer = (nullable: boolean) => ({type: 'integer' as const, nullable})
const timestamptz = (nullable: boolean) => ({type: 'timestamp with time zone' as const, nullable})

/** EntitySchema (no decorators): the table name comes from --table at run time. */
export function taskManagerEntity(table: TableName): EntitySchema<TaskManagerRow> {
  return new EntitySchema<TaskManagerRow>({
    name: 'TaskManager',
    tableName: table.name,
    schema: table.schema,
    columns: {
      id: {type: 'bigint', primary: true},
      current_page: integer(true),
      total_pages: integer(true),
      attempts: integer(false),
      task_module: varchar(false),
      task_name: varchar(false),
      reverse_module: varchar(true),
      reverse_name: varchar(true),
      exception_module: varchar(true),
      exception_name: varchar(true),
      arguments: {type: 'jsonb', nullable: true},
      status: {type: 'varchar', length: 20},
      status_message: {type: 'text', nullable: true},
      task_id: {type: 'varchar', length: 36},
      priority: integer(true),
      killed: {type: 'boolean'},
      fixed: {type: 'boolean'},
      last_run: timestamptz(false),
      started_at: timestamptz(true),
      created_at: timestamptz(false),
      updated_at: timestamptz(false),
    },
  })
}

interface WatcherLinkRow {
  id: string
  taskwatcher_id: string
  taskmanager_id: string
}

/** Django's auto-created TaskWatcher.tasks through table. */
function watcherLinkEntity(fk: ReferencingForeignKey, i: number): EntitySchema<WatcherLinkRow> {
  return new EntitySchema<WatcherLinkRow>({
    name: `TaskWatcherTasks${i}`,
    tableName: fk.table.name,
    schema: fk.table.schema,
    columns: {
      id: {type: 'bigint', primary: true},
      taskwatcher_id: {type: 'bigint'},
      taskmanager_id: {type: 'bigint'},
    },
  })
}

/**
 * The ORM path (clear_task_manager_queue's choice below 50,000 rows), with the
 * same keyset batches as the raw path: memory stays bounded by one batch of ids.
 */
export class TaskManagerOrm implements BatchDeleter {
  /** --archive-table, set by the clear: each batch is then deleted and archived by one raw statement. */
  archive?: ArchiveTable
  /** BatchDeleter.deletionsDurable */
  deletionsDurable = true

  private constructor(
    private readonly source: DataSource,
    private readonly runner: QueryRunner,
    private readonly task: EntitySchema<TaskManagerRow>,
    private readonly links: EntitySchema<WatcherLinkRow>[],
  ) {}

  static async connect(
    url: string,
    table: TableName,
    foreignKeys: ReferencingForeignKey[],
    applicationName: string,
  ): Promise<TaskManagerOrm> {
    const task = taskManagerEntity(table)
    const links = foreignKeys.filter((fk) => fk.isWatcherLink).map(watcherLinkEntity)
    const source = new DataSource({
      type: 'postgres',
      url,
      applicationName,
      entities: [task, ...links],
      synchronize: false,
      logging: false,
      // The pg pool's options: one connection, with the keepalives of every other ops connection (connectPostgres).
      extra: {max: 1, connectionTimeoutMillis: 15_000, keepAlive: true, keepAliveInitialDelayMillis: 30_000},
    })
    await source.initialize()
    const runner = source.createQueryRunner()
    await runner.connect()
    return new TaskManagerOrm(source, runner, task, links)
  }

  /**
   * One short transaction: pick the next `limit` matching ids from the snapshot,
   * lock those that still match (FOR UPDATE re-checks the filter on a row updated
   * meanwhile; SKIP LOCKED passes over rows another session holds), delete the
   * locked rows and their watcher links, COMMIT. Candidates not locked are skipped.
   */
  async deleteBatch(request: BatchRequest): Promise<BatchOutcome> {
    const {runner} = this
    const matching = <T extends SelectQueryBuilder<TaskManagerRow>>(query: T): T => {
      predicatesOf(request.filter).forEach((p, i) => query.andWhere(`t.${p.column} ${p.op} :p${i}`, {[`p${i}`]: p.value}))
      return query
    }
    // READ COMMITTED whatever the default, as the raw-SQL batch (TaskManagerTable.deleteBatch) says why.
    await runner.startTransaction('READ COMMITTED')
    try {
      const commit = commitSettingSql(request.limits.synchronousCommit)
      await runner.query(`SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $2, true)${commit}`, [
        String(request.limits.statementTimeoutMs),
        String(request.limits.lockTimeoutMs),
      ])
      const candidates = (
        await matching(
          runner.manager
            .createQueryBuilder(this.task, 't')
            .select('t.id', 'id')
            .where('t.id > :afterId AND t.id <= :upToId', {afterId: request.afterId, upToId: request.upToId}),
        )
          .orderBy('t.id', 'ASC')
          .limit(request.limit)
          .getRawMany<{id: string}>()
      ).map((r) => String(r.id))
      if (candidates.length === 0) {
        await runner.commitTransaction()
        return {candidates: 0, deleted: 0, skipped: 0, links: 0}
      }
      const lock = matching(
        runner.manager.createQueryBuilder(this.task, 't').select('t.id', 'id').where('t.id = ANY(:candidates)', {candidates}),
      )
      if (request.withRows) lock.addSelect('row_to_json(t)::text', 'row')
      const locked = await lock
        .orderBy('t.id', 'ASC')
        .setLock('pessimistic_write')
        .setOnLocked('skip_locked')
        .getRawMany<{id: string; row?: string}>()
      const ids = locked.map((r) => String(r.id))
      let links = 0
      let deleted = 0
      if (ids.length > 0) {
        for (const link of this.links) {
          const result = await runner.manager.createQueryBuilder().delete().from(link).where('taskmanager_id = ANY(:ids)', {ids}).execute()
          links += result.affected ?? 0
        }
        // With --archive-table, DELETE ... RETURNING feeds the archive INSERT: one statement through the DataSource.
        const result = this.archive
          ? await runner.query(this.archive.deleteAndArchiveSql(), [ids], true)
          : await runner.manager.createQueryBuilder().delete().from(this.task).where('id = ANY(:ids)', {ids}).execute()
        deleted = result.affected ?? ids.length
      }
      await request.beforeCommit?.(request.withRows ? locked.map((r) => r.row ?? '') : [])
      const durable = endsDurably(request, candidates.length, deleted)
      if (durable) await runner.query(SYNCHRONOUS_COMMIT)
      await commitOrUnknown(() => runner.commitTransaction())
      if (deleted > 0) this.deletionsDurable = durable
      // Candidates not locked here: another session held them (SKIP LOCKED), or they changed meanwhile.
      const lockedIds = new Set(ids)
      const passedOver = candidates.filter((id) => !lockedIds.has(id))
      return {candidates: candidates.length, deleted, skipped: candidates.length - deleted, links, scannedTo: candidates.at(-1), passedOver}
    } catch (error) {
      if (runner.isTransactionActive) await runner.rollbackTransaction().catch(() => {})
      throw error
    }
  }

  /** One round trip on the runner's connection (the pool's only one), for keepAwake(). */
  async ping(): Promise<void> {
    await this.runner.query('SELECT 1')
  }

  async close(): Promise<void> {
    await this.runner.release().catch(() => {})
    if (this.source.isInitialized) await this.source.destroy().catch(() => {})
  }
}
