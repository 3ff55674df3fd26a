import {maskUrl} from '../../base/connection.js'
import {table} from '../../base/format.js'
import {OpsCommand} from '../../base/ops-command.js'

export default class ProfilesList extends OpsCommand {
  static override summary = 'List the named profiles (passwords masked).'
  static override examples = ['<%= config.bin %> profiles:list', '<%= config.bin %> profiles:list --json']

  async run() {
    await this.parse(ProfilesList)
    const profiles = this.profiles.list().map((p) => ({
      ...p,
      settings: Object.fromEntries(Object.entries(p.settings).map(([k, v]) => [k, maskUrl(v)])),
    }))
    if (profiles.length === 0) {
      this.log(`No profiles yet (${this.profiles.path}). Create one with: ops profiles:set NAME --database-url URL`)
    } else {
      this.logLines(
        table(
          ['Name', 'Production', 'DATABASE_URL', 'REDIS_URL', 'Description'],
          profiles.map((p) => [
            p.name,
            p.production ? 'yes' : 'no',
            p.settings.DATABASE_URL ?? '-',
            p.settings.REDIS_URL ?? '-',
            p.description ?? '',
          ]),
        ),
      )
    }
    return {path: this.profiles.path, profiles}
  }
}
