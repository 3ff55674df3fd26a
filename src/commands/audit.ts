import {Flags} from '@oclif/core'

import {AuditEntry, AuditLog} from '../base/audit.js'
import {count, duration, table} from '../base/format.js'
import {OpsCommand} from '../base/ops-command.js'

export default class Audit extends OpsCommand {
  static override summary = 'Show recent destructive runs from the audit log.'
  static override description = `Every destructive run that is not a dry-run appends one JSON line (time, user, host,
command, masked connection, filters, planned and done counts, duration, outcome) to
audit.log in the data directory (OPS_DATA_DIR).`

  static override examples = [
    '<%= config.bin %> audit',
    '<%= config.bin %> audit --limit 100 --command taskmanager:clear',
    '<%= config.bin %> audit --json | jq \'.entries[] | select(.outcome != "done")\'',
  ]

  static override flags = {
    limit: Flags.integer({description: 'How many recent entries to show.', default: 20, min: 1}),
    command: Flags.string({description: 'Only entries of this command id.'}),
  }

  async run(): Promise<{path: string; entries: AuditEntry[]}> {
    const {flags} = await this.parse(Audit)
    const log = new AuditLog(this.config.dataDir)
    const all = log.recent(flags.command ? Number.MAX_SAFE_INTEGER : flags.limit)
    const entries = (flags.command ? all.filter((e) => e.command === flags.command) : all).slice(-flags.limit)
    if (entries.length === 0) {
      this.log(`No destructive runs recorded yet in ${log.path}.`)
      return {path: log.path, entries}
    }
    this.logLines(
      table(
        ['Time', 'User', 'Command', 'Outcome', 'Planned', 'Done', 'Duration', 'Connection'],
        entries.map((e) => [
          e.time.replace('T', ' ').slice(0, 19),
          `${e.user}@${e.host}`,
          e.command,
          e.outcome,
          e.planned === null ? '-' : count(e.planned),
          count(e.done),
          duration(e.durationMs),
          e.connection ?? '-',
        ]),
      ),
    )
    return {path: log.path, entries}
  }
}
