import {OpsCommand} from 'ops-cli/base'

import {databaseFlags, openTaskManager, resolveDatabaseUrl} from '../../connection.js'
import {summaryLines} from '../../summary-format.js'

export default class Summary extends OpsCommand {
  static override summary = 'Status summary and task-module summary of the TaskManager table (read-only).'
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --json --database-url postgres://app@db/app',
  ]
  static override flags = {...databaseFlags}

  async run() {
    const {flags} = await this.parse(Summary)
    const {url} = resolveDatabaseUrl(flags['database-url'])
    this.registerSecretsOf(url)
    const db = await openTaskManager(url, flags.table, 'ops taskmanager:summary')
    try {
      const {statuses, modules} = await db.table.summaries()
      this.logLines(summaryLines(statuses, modules))
      return {table: db.table.displayName, total: statuses.reduce((sum, s) => sum + s.count, 0), statuses, modules}
    } finally {
      await db.client.end().catch(() => {})
    }
  }
}
