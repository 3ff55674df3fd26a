import type {Hook} from '@oclif/core'

/**
 * prerun — before `ops plugins update`, refuses the whole update when a
 * plugin's release would be one built for another ops (the check the
 * plugins:preinstall hook makes for `ops plugins install`, which update
 * skips). Any other command returns at once, loading nothing.
 */
const hook: Hook<'prerun'> = async function ({Command}) {
  if (Command.id !== 'plugins:update') return
  const {refusedUpdates} = await import('./compat.js')
  const refusals = await refusedUpdates(this.config)
  if (refusals.length > 0)
    this.error(
      `${refusals.join(' ')} Nothing was updated; ` +
        `the other plugins can be updated one at a time with \`${this.config.bin} plugins install <name>\`.`,
      {exit: 1},
    )
}

export default hook
