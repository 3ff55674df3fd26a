import {Args, Flags} from '@oclif/core'

import {maskUrl} from '../../base/connection.js'
import {OpsCommand} from '../../base/ops-command.js'

export default class ProfilesSet extends OpsCommand {
  static override summary = 'Create or update a named profile of connection settings.'
  static override description = `Use it with --profile NAME (or OPS_PROFILE) on any command. Precedence is
flag > environment > profile > default. A profile marked --production makes
destructive commands ask for the database (or Redis host:port) name to be typed;
there --force alone is not enough and automation passes --confirm NAME.`

  static override examples = [
    '<%= config.bin %> profiles:set staging --database-url postgres://ops@db.staging:5432/app --redis-url redis://cache.staging:6379/0',
    '<%= config.bin %> profiles:set prod --database-url postgres://ops@db.prod:5432/app --production',
    '<%= config.bin %> taskmanager:clear --profile prod --status DONE --older-than 30d --confirm app',
  ]

  static override args = {
    name: Args.string({description: 'Profile name.', required: true}),
  }

  static override flags = {
    'database-url': Flags.string({description: 'PostgreSQL URL (stands in for DATABASE_URL).'}),
    'redis-url': Flags.string({description: 'Redis URL (stands in for REDIS_URL).'}),
    production: Flags.boolean({description: 'Mark as production: destructive commands require typing the target name.', allowNo: true}),
    description: Flags.string({description: 'Free text shown by profiles:list.'}),
  }

  async run() {
    const {args, flags} = await this.parse(ProfilesSet)
    const profile = this.profiles.set(args.name, {
      settings: {DATABASE_URL: flags['database-url'], REDIS_URL: flags['redis-url']},
      production: flags.production,
      description: flags.description,
    })
    this.log(`Saved profile "${profile.name}"${profile.production ? ' (production)' : ''} in ${this.profiles.path}.`)
    return {...profile, settings: Object.fromEntries(Object.entries(profile.settings).map(([k, v]) => [k, maskUrl(v)]))}
  }
}
