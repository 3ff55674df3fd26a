import {Flags} from '@oclif/core'
import {choiceFlag, DestructiveCommand, UsageError} from 'ops-cli/base'

import {ClearOperation, MAX_BATCH_SIZE, ORM_THRESHOLD} from '../../clear-operation.js'
import {databaseFlags, resolveDatabaseUrl} from '../../connection.js'
import {parseAge, STATUS_CHOICES} from '../../filter.js'

const DURATION = /^\d+(ms|s|min)?$/

export default class Clear extends DestructiveCommand {
  static override summary = 'Delete TaskManager records in short committed batches (the seed clear_task_manager_queue).'
  static override description = `No filter means every row. Below ${ORM_THRESHOLD.toLocaleString('en-US')} matching rows the TypeORM path is used, at or above it (or with --use-cursor) raw SQL through pg. Both walk the primary key in batches, each its own short transaction that also deletes the task_manager_taskwatcher_tasks link rows; Ctrl-C stops after the batch in flight and a re-run finishes the job.`

  static override examples = [
    '<%= config.bin %> <%= command.id %> --status SCHEDULED --dry-run',
    '<%= config.bin %> <%= command.id %> --status SCHEDULED --task-module breathecode.assignments.tasks',
    '<%= config.bin %> <%= command.id %> --status ERROR --task-name process_file --force',
    '<%= config.bin %> <%= command.id %> --status DONE --older-than 30d --archive done-tasks.jsonl --force',
    '<%= config.bin %> <%= command.id %> --status DONE --use-cursor --database-url postgres://app@db:5432/app',
    '<%= config.bin %> <%= command.id %> --dry-run --show-summary',
  ]

  static override flags = {
    ...databaseFlags,
    status: choiceFlag({description: 'Status to clear (ALL: no status filter).', choices: STATUS_CHOICES}),
    'task-module': Flags.string({description: "Only this task module (e.g. 'breathecode.notify.tasks').", helpValue: 'MODULE'}),
    'task-name': Flags.string({description: "Only this task name (e.g. 'async_deliver_hook').", helpValue: 'NAME'}),
    'older-than': Flags.string({description: 'Only rows whose created_at is older than this age: 30d, 12h, 90m, 2w.', helpValue: 'AGE'}),
    'use-cursor': Flags.boolean({description: 'Force the raw-SQL path (pg) whatever the row count.', default: false}),
    'use-orm': Flags.boolean({description: 'Force the TypeORM path whatever the row count (for benchmarks).', default: false, hidden: true, exclusive: ['use-cursor']}),
    archive: Flags.string({description: 'Append every deleted row as a JSON line to FILE, flushed to disk before its batch commits.', helpValue: 'FILE'}),
    'batch-size': Flags.integer({description: 'Rows per batch (the starting size when adaptive).', default: 5000, min: 1, max: MAX_BATCH_SIZE}),
    'target-batch-ms': Flags.integer({description: 'Adapt the batch size so one batch takes about this long; 0 keeps --batch-size fixed.', default: 250, min: 0}),
    'statement-timeout': Flags.string({description: 'statement_timeout of each batch (e.g. 30s, 500ms).', default: '30s', helpValue: 'DURATION'}),
    'lock-timeout': Flags.string({description: 'lock_timeout of each batch; a batch that waits longer is retried smaller.', default: '2s', helpValue: 'DURATION'}),
    'sleep-ms': Flags.integer({description: 'Pause between batches, to leave room for other traffic.', default: 0, min: 0}),
  }

  async run() {
    const {flags} = await this.parse(Clear)
    for (const name of ['statement-timeout', 'lock-timeout'] as const) {
      if (!DURATION.test(flags[name])) throw new UsageError(`Invalid --${name} "${flags[name]}": use e.g. 30s, 500ms or 1min.`)
    }
    if (flags['older-than'] !== undefined) parseAge(flags['older-than'])
    const {url} = resolveDatabaseUrl(flags['database-url'])
    this.registerSecretsOf(url)
    const operation = new ClearOperation({
      url,
      table: flags.table,
      filter: {
        status: flags.status as (typeof STATUS_CHOICES)[number] | undefined,
        taskModule: flags['task-module'],
        taskName: flags['task-name'],
        olderThan: flags['older-than'],
      },
      useCursor: flags['use-cursor'],
      useOrm: flags['use-orm'],
      batchSize: flags['batch-size'],
      targetBatchMs: flags['target-batch-ms'],
      limits: {statementTimeout: flags['statement-timeout'], lockTimeout: flags['lock-timeout']},
      sleepMs: flags['sleep-ms'],
      archive: flags.archive,
    })
    return this.runDestructive(operation, flags)
  }
}
