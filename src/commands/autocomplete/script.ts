import {Args, Command} from '@oclif/core'
import {join} from 'node:path'

/**
 * Replaces @oclif/plugin-autocomplete's `autocomplete:script` (the root's command wins):
 * its setup line is appended with `printf "$(ops autocomplete:script bash)" >> ~/.bashrc`,
 * and `$(...)` drops the trailing newline, so the next line anyone appended ran on after it.
 * This one ends in a literal "\n" inside the line's comment: printf turns it into the newline,
 * and `eval` or `source` of the line reads it as part of the comment.
 */
export default class AutocompleteScript extends Command {
  static override summary = 'Print the line that loads shell completion, for ~/.bashrc or ~/.zshrc.'
  static override hidden = true
  static override args = {shell: Args.string({description: 'Shell type.', options: ['zsh', 'bash'], required: false})}

  async run(): Promise<void> {
    const {args} = await this.parse(AutocompleteScript)
    const shell = args.shell ?? (this.config.shell === 'zsh' ? 'zsh' : 'bash')
    const bin = this.config.bin
    const variable = `${bin.toUpperCase().replaceAll('-', '_')}_AC_${shell.toUpperCase()}_SETUP_PATH`
    const setup = join(this.config.cacheDir, 'autocomplete', `${shell}_setup`)
    this.log(`\n${variable}=${setup} && test -f $${variable} && source $${variable}; # ${bin} autocomplete setup\\n`)
  }
}
