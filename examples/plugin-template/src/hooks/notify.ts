import type {Hook} from '@oclif/core'
import {appendFileSync} from 'node:fs'

import type {OpsHooks} from '../hook-types.js'

/**
 * ops:result — fired after every destructive run, also after a veto, an
 * interruption or a failure. Appends one JSON line to OPS_WIDGETS_NOTIFY_FILE
 * (a stand-in for a chat webhook or an archive upload). Errors here are only warnings.
 */
const notify: Hook<'ops:result', OpsHooks> = async function ({command, result}) {
  const file = process.env.OPS_WIDGETS_NOTIFY_FILE
  if (!file) return
  const line = {command, outcome: result.outcome, planned: result.planned, done: result.done}
  appendFileSync(file, JSON.stringify(line) + '\n')
}

export default notify
