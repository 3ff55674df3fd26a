import {Flags} from '@oclif/core'
import {OpsCommand} from 'ops-cli/base'

import {databaseFlags, openTaskManager, resolveDatabaseUrl} from '../../connection.js'
import {stuckReport} from '../../stuck-report.js'

/** A screen's worth by default: 10 groups of 2 lines and the header and footer fit in 35 rows. */
const DEFAULT_LIMIT = 10

export default class Stuck extends OpsCommand {
  static override summary = 'SCHEDULED or PENDING tasks whose last_run is older than --hours, grouped by module and name (read-only).'
  static override description = [
    `What check_task_status diagnoses. The biggest ${DEFAULT_LIMIT} groups are shown with one sample row each`,
    "(cut to the terminal's width; --json has them whole); --limit and --samples show more.",
    'Clear them with taskmanager:clear --status SCHEDULED --task-module M --task-name N.',
  ].join(' ')
  static override examples = [
    '<%= config.bin %> <%= command.id %> --hours 24',
    '<%= config.bin %> <%= command.id %> --hours 1 --limit 50 --samples 0',
    '<%= config.bin %> <%= command.id %> --hours 6 --samples 5 --json',
  ]
  static override flags = {
    ...databaseFlags,
    hours: Flags.integer({description: 'A task is stuck when its last_run is older than this many hours.', default: 24, min: 0}),
    limit: Flags.integer({
      description: 'How many groups (module and name) to show, biggest first; the rest are counted in one line.',
      default: DEFAULT_LIMIT,
      min: 1,
    }),
    samples: Flags.integer({description: 'Sample rows shown per group (oldest first).', default: 1, min: 0}),
  }

  async run() {
    const {flags} = await this.parse(Stuck)
    const {url} = resolveDatabaseUrl(flags['database-url'])
    this.registerSecretsOf(url)
    const db = await openTaskManager(url, flags.table, 'ops taskmanager:stuck')
    try {
      const {cutoff, groups} = await db.table.stuckTasks(flags.hours, flags.samples)
      const width = Math.min(120, process.stdout.columns || 100)
      this.logLines(stuckReport({hours: flags.hours, cutoff, groups, limit: flags.limit, width}))
      const total = groups.reduce((sum, g) => sum + g.count, 0)
      return {
        table: db.table.displayName,
        hours: flags.hours,
        cutoff,
        total,
        groupCount: groups.length,
        groups: groups.slice(0, flags.limit),
      }
    } finally {
      await db.client.end().catch(() => {})
    }
  }
}
