import type {Hook} from '@oclif/core'

import type {OpsHooks} from '../hook-types.js'
import {vetoReason} from '../policy.js'

/**
 * ops:plan — fired after the plan is counted, before dry-run and confirmation.
 * Throwing vetoes: the command writes nothing and exits 1 with this message.
 * A dry-run writes nothing anyway, so it only warns what a real run would meet.
 */
const veto: Hook<'ops:plan', OpsHooks> = async function (options) {
  const reason = vetoReason(options)
  if (!reason) return
  if (options.dryRun) {
    this.warn(`A real run would be refused: ${reason}`)
    return
  }
  this.error(reason, {exit: 1})
}

export default veto
