import {Flags} from '@oclif/core'
import {OpsCommand} from 'ops-cli/base'

import {databaseFlags, openTaskManager, resolveDatabaseUrl} from '../../connection.js'
import {stuckLines} from '../../summary-format.js'

export default class Stuck extends OpsCommand {
  static override summary = 'SCHEDULED or PENDING tasks whose last_run is older than --hours, grouped by module and name (read-only).'
  static override description = 'What the seed check_task_status diagnoses. Clear them with taskmanager:clear --status SCHEDULED --task-module M --task-name N.'
  static override examples = ['<%= config.bin %> <%= command.id %> --hours 24', '<%= config.bin %> <%= command.id %> --hours 6 --samples 5 --json']
  static override flags = {
    ...databaseFlags,
    hours: Flags.integer({description: 'A task is stuck when its last_run is older than this many hours.', default: 24, min: 0}),
    samples: Flags.integer({description: 'Sample rows shown per module and name (oldest first).', default: 3, min: 0}),
  }

  async run() {
    const {flags} = await this.parse(Stuck)
    const {url} = resolveDatabaseUrl(flags['database-url'])
    this.registerSecretsOf(url)
    const db = await openTaskManager(url, flags.table, 'ops taskmanager:stuck')
    try {
      const {cutoff, groups} = await db.table.stuckTasks(flags.hours, flags.samples)
      this.logLines(stuckLines(flags.hours, cutoff, groups))
      return {table: db.table.displayName, hours: flags.hours, cutoff, total: groups.reduce((sum, g) => sum + g.count, 0), groups}
    } finally {
      await db.client.end().catch(() => {})
    }
  }
}
