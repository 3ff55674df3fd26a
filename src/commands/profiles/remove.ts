import {Args} from '@oclif/core'

import {OpsCommand} from '../../base/ops-command.js'

export default class ProfilesRemove extends OpsCommand {
  static override summary = 'Remove a named profile.'
  static override examples = ['<%= config.bin %> profiles:remove staging']
  static override args = {name: Args.string({description: 'Profile name.', required: true})}

  async run() {
    const {args} = await this.parse(ProfilesRemove)
    this.profiles.remove(args.name)
    this.log(`Removed profile "${args.name}".`)
    return {removed: args.name}
  }
}
