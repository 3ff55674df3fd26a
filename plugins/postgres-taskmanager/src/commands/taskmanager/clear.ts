import {Flags} from '@oclif/core'
import {choiceFlag, count, DestructiveCommand, durationFlag, UsageError} from 'ops-cli/base'

import {ClearOperation, MAX_BATCH_SIZE, ORM_THRESHOLD} from '../../clear-operation.js'
import {databaseFlags, resolveDatabaseUrl} from '../../connection.js'
import {STATUS_CHOICES} from '../../filter.js'

/** Each worker holds a connection of its own; more than the server's cores rarely helps. */
const MAX_CONCURRENCY = 16

export default class Clear extends DestructiveCommand {
  static override summary = 'Delete TaskManager records in short committed batches (what clear_task_manager_queue does, safely).'
  static override description = [
    [
      `No filter means every row. Below ${count(ORM_THRESHOLD)} matching rows the TypeORM path is used,`,
      'at or above it (or with --use-cursor) raw SQL through pg. Both walk the primary key in batches, each its own short',
      'transaction that also deletes the task_manager_taskwatcher_tasks link rows; a row that changes while the run goes on',
      'is deleted if it still matches and left alone if not. Ctrl-C stops after the batch in flight and a re-run finishes the job.',
    ].join(' '),
    'Exit codes: 0 done (also when --max-runtime stopped the run: what is left is printed; and when rows came to match ' +
      'the filter during the run, after their batch: they are counted and left for the next run), 1 a failure or rows of ' +
      'the plan that still match at the end (another session held them locked: run again), 2 bad usage, 130 interrupted.',
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> --status SCHEDULED --dry-run',
    '<%= config.bin %> <%= command.id %> --status SCHEDULED --task-module breathecode.assignments.tasks',
    '<%= config.bin %> <%= command.id %> --status ERROR --task-name process_file --force',
    '<%= config.bin %> <%= command.id %> --status DONE --older-than 30d --archive done-tasks.jsonl --force',
    '<%= config.bin %> <%= command.id %> --status DONE --older-than 30d --archive-table task_manager_archive --force',
    '<%= config.bin %> <%= command.id %> --status DONE --use-cursor --database-url postgres://app@db:5432/app',
    '<%= config.bin %> <%= command.id %> --status DONE --max-replica-lag 5s --replica-url postgres://ops@replica:5432/app ' +
      '--pause-on-autovacuum --max-runtime 50m --force',
    '<%= config.bin %> <%= command.id %> --status DONE --concurrency 2 --force',
    '<%= config.bin %> <%= command.id %> --dry-run --show-summary',
  ]

  static override flags = {
    ...databaseFlags,
    status: choiceFlag({description: 'Status to clear (ALL: no status filter).', choices: STATUS_CHOICES}),
    'task-module': Flags.string({description: "Only this task module (e.g. 'breathecode.notify.tasks').", helpValue: 'MODULE'}),
    'task-name': Flags.string({description: "Only this task name (e.g. 'async_deliver_hook').", helpValue: 'NAME'}),
    'older-than': durationFlag({
      description: "Only rows whose created_at is older than this age (30d, 12h, 90m, 2w), from the server's now().",
      helpValue: 'AGE',
    }),
    'use-cursor': Flags.boolean({description: 'Force the raw-SQL path (pg) whatever the row count.', default: false}),
    'use-orm': Flags.boolean({
      description: 'Force the TypeORM path whatever the row count (for benchmarks).',
      default: false,
      hidden: true,
      exclusive: ['use-cursor'],
    }),
    archive: Flags.string({
      description: 'Append every deleted row as a JSON line to FILE, flushed to disk before its batch commits.',
      helpValue: 'FILE',
    }),
    'archive-table': Flags.string({
      description:
        'Insert every deleted row into this table, in the same statement as its delete ' +
        "(created on first use; unqualified: the TaskManager table's schema). taskmanager:restore puts rows back.",
      helpValue: '[SCHEMA.]NAME',
    }),
    'batch-size': Flags.integer({
      description: 'Rows per batch (the starting size when adaptive).',
      default: 5000,
      min: 1,
      max: MAX_BATCH_SIZE,
    }),
    'target-batch-ms': Flags.integer({
      description: 'Adapt the batch size so one batch takes about this long; 0 keeps --batch-size fixed.',
      default: 250,
      min: 0,
    }),
    'statement-timeout': durationFlag({description: 'statement_timeout of each batch.', default: '30s', min: '1ms'}),
    'lock-timeout': durationFlag({
      description: 'lock_timeout of each batch; a batch that waits longer is retried smaller.',
      default: '2s',
      min: '1ms',
    }),
    'sleep-ms': Flags.integer({description: 'Pause between batches, to leave room for other traffic.', default: 0, min: 0}),
    concurrency: Flags.integer({
      description:
        'Workers over disjoint primary-key ranges, each on its own connection with its own short transactions; ' +
        'a worker done with its range takes over half of the busiest other one.',
      default: 1,
      min: 1,
      max: MAX_CONCURRENCY,
    }),
    'max-replica-lag': durationFlag({
      description:
        'Pause between batches while any replica lags more than this (pg_stat_replication on the primary, and each --replica-url).',
    }),
    'replica-url': Flags.string({
      description: 'A standby to measure lag on directly (repeatable); needs --max-replica-lag.',
      multiple: true,
      helpValue: 'URL',
      dependsOn: ['max-replica-lag'],
    }),
    'pause-on-autovacuum': Flags.boolean({
      description: 'Pause between batches while autovacuum (or a VACUUM) works on the table.',
      default: false,
    }),
    'max-runtime': durationFlag({description: 'Start no batch after this long (a cron window); reports what is left and exits 0.'}),
    'synchronous-commit': Flags.boolean({
      description:
        "Wait at every batch's COMMIT until it is durable. By default batches commit asynchronously and the run waits, " +
        'before it reports, until the server has flushed them to disk: a crash of the server mid-run may undo its last ' +
        "moment's batches (a re-run deletes their rows).",
      default: false,
    }),
  }

  async run() {
    const {flags} = await this.parse(Clear)
    if (flags.archive !== undefined && flags.concurrency > 1)
      throw new UsageError('--archive writes one file in batch order: use it with --concurrency 1.')
    const {url} = resolveDatabaseUrl(flags['database-url'])
    this.registerSecretsOf(url)
    for (const replica of flags['replica-url'] ?? []) this.registerSecretsOf(replica)
    const operation = new ClearOperation({
      url,
      dryRun: flags['dry-run'],
      table: flags.table,
      filter: {
        status: flags.status as (typeof STATUS_CHOICES)[number] | undefined,
        taskModule: flags['task-module'],
        taskName: flags['task-name'],
        olderThanMs: flags['older-than'],
      },
      useCursor: flags['use-cursor'],
      useOrm: flags['use-orm'],
      batchSize: flags['batch-size'],
      targetBatchMs: flags['target-batch-ms'],
      limits: {statementTimeoutMs: flags['statement-timeout'], lockTimeoutMs: flags['lock-timeout']},
      sleepMs: flags['sleep-ms'],
      archive: flags.archive,
      concurrency: flags.concurrency,
      maxReplicaLagMs: flags['max-replica-lag'],
      replicaUrls: flags['replica-url'],
      pauseOnAutovacuum: flags['pause-on-autovacuum'],
      maxRuntimeMs: flags['max-runtime'],
      archiveTable: flags['archive-table'],
      synchronousCommit: flags['synchronous-commit'],
    })
    return this.runDestructive(operation, flags)
  }

  /** A run that left matching rows still reports what it did, under `data`. */
  protected override toErrorJson(error: unknown): unknown {
    const shaped = super.toErrorJson(error) as Record<string, unknown>
    return this.lastResult ? {...shaped, data: this.lastResult.data, done: this.lastResult.done} : shaped
  }
}
