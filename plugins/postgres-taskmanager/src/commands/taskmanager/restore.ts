import {Flags} from '@oclif/core'
import {choiceFlag, DestructiveCommand, durationFlag, UsageError} from 'ops-cli/base'

import {databaseFlags, resolveDatabaseUrl} from '../../connection.js'
import {STATUS_CHOICES} from '../../filter.js'
import {RestoreOperation} from '../../restore-operation.js'

const timestampFlag = Flags.custom<Date>({
  helpValue: 'TIMESTAMP',
  async parse(input, _context, flag) {
    const value = new Date(input)
    if (Number.isNaN(value.getTime()))
      throw new UsageError(`Invalid --${flag.name} "${input}": use an ISO-8601 timestamp, e.g. 2026-12-01 or 2026-12-01T08:00:00Z.`)
    return value
  },
})

export default class Restore extends DestructiveCommand {
  static override summary = 'Put back TaskManager records a clear archived, with their original ids and values.'
  static override description =
    'From --from-archive-table (written by taskmanager:clear --archive-table) ' +
    'or --from-file (the JSON lines of taskmanager:clear --archive). ' +
    'Rows are inserted in batches walked by id, each batch one transaction that, ' +
    'for an archive table, also removes exactly the rows it inserted from it. ' +
    'A row whose id already exists in the TaskManager table is skipped and counted, never overwritten. ' +
    'The id sequence is left ahead of every restored id. ' +
    'Watcher links (task_manager_taskwatcher_tasks) are not restored. Ctrl-C stops after the batch in flight and a re-run finishes the job.'

  static override examples = [
    '<%= config.bin %> <%= command.id %> --from-archive-table task_manager_archive --dry-run',
    '<%= config.bin %> <%= command.id %> --from-archive-table archive.task_manager_archive --status ERROR ' +
      '--archived-after 2026-12-01T00:00:00Z --force',
    '<%= config.bin %> <%= command.id %> --from-file done-tasks.jsonl --task-module breathecode.notify.tasks --force',
  ]

  static override flags = {
    ...databaseFlags,
    'from-archive-table': Flags.string({
      description: "The archive table written by taskmanager:clear --archive-table (unqualified: the TaskManager table's schema).",
      helpValue: '[SCHEMA.]NAME',
      exactlyOne: ['from-archive-table', 'from-file'],
    }),
    'from-file': Flags.string({
      description: 'A JSON-lines file written by taskmanager:clear --archive.',
      helpValue: 'FILE',
      exactlyOne: ['from-archive-table', 'from-file'],
    }),
    status: choiceFlag({description: 'Only rows of this status (ALL: no status filter).', choices: STATUS_CHOICES}),
    'task-module': Flags.string({description: 'Only this task module.', helpValue: 'MODULE'}),
    'task-name': Flags.string({description: 'Only this task name.', helpValue: 'NAME'}),
    'older-than': durationFlag({description: 'Only rows whose created_at is older than this age: 30d, 12h, 90m, 2w.', helpValue: 'AGE'}),
    'archived-after': timestampFlag({
      description: "Only rows archived at or after this time (the archive table's archived_at; not with --from-file).",
    }),
    'archived-before': timestampFlag({
      description: "Only rows archived before this time (the archive table's archived_at; not with --from-file).",
    }),
    'batch-size': Flags.integer({description: 'Rows per batch.', default: 5000, min: 1, max: 50_000}),
    'sleep-ms': Flags.integer({description: 'Pause between batches, to leave room for other traffic.', default: 0, min: 0}),
  }

  async run() {
    const {flags} = await this.parse(Restore)
    const archivedFlag = ['archived-after', 'archived-before'].find((name) => flags[name as 'archived-after'] !== undefined)
    if (flags['from-file'] !== undefined && archivedFlag)
      throw new UsageError(
        `--${archivedFlag} filters on the archive table's archived_at column, which a file written by --archive does not have: ` +
          'use it with --from-archive-table, or filter the file by --status, --task-module, --task-name or --older-than.',
      )
    const {url} = resolveDatabaseUrl(flags['database-url'])
    this.registerSecretsOf(url)
    const operation = new RestoreOperation({
      url,
      dryRun: flags['dry-run'],
      table: flags.table,
      fromTable: flags['from-archive-table'],
      fromFile: flags['from-file'],
      filter: {
        status: flags.status as (typeof STATUS_CHOICES)[number] | undefined,
        taskModule: flags['task-module'],
        taskName: flags['task-name'],
      },
      olderThanMs: flags['older-than'],
      window: {after: flags['archived-after'], before: flags['archived-before']},
      batchSize: flags['batch-size'],
      sleepMs: flags['sleep-ms'],
    })
    return this.runDestructive(operation, flags)
  }
}
