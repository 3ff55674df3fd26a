import {Flags} from '@oclif/core'
import {DestructiveCommand, durationFlag} from 'ops-cli/base'

import {redisFlags, redisTarget} from '../../../connection.js'
import {StuckFixOperation} from '../../../operations/stuck-fix.js'
import {outputOf} from '../../../operations/taskflow-operation.js'

export default class StuckFix extends DestructiveCommand {
  static override summary = 'Fix stuck or orphaned tasks.'

  static override description = `Fix stuck or orphaned tasks (fix_stuck_tasks.py and fix_active_stuck_tasks.py).

PENDING tasks whose id is in neither tasks:pending:primary nor tasks:pending:retry are
re-queued on the primary queue. ACTIVE tasks older than --older-than (started_at,
else updated_at) or whose worker:heartbeat:{worker_id} is gone become FAILED with
error_type StuckTask, an error_history and a state_history entry, counters moved
(ACTIVE -1, FAILED +1), and are pushed to tasks:pending:retry — each in one
MULTI/EXEC under WATCH, so a worker that finishes the task meanwhile wins.

On a Redis Cluster the task, queue and counter keys live in different slots: the
hash change is still a MULTI/EXEC under WATCH on the task's node, and the counter
and queue updates follow it as separate commands, each atomic but not together
(an interruption between them leaves at most one task's counters off, which
taskflow:counters:sync repairs).

Stuck ACTIVE tasks are failed 8 at a time on a single node, each worker on its own
connection; orphans are re-queued one at a time (each WATCHes the queues).`

  static override examples = [
    '<%= config.bin %> taskflow:stuck:fix --dry-run',
    '<%= config.bin %> taskflow:stuck:fix --dry-run --limit 100',
    '<%= config.bin %> taskflow:stuck:fix --older-than 2h --force',
  ]

  static override flags = {
    ...redisFlags,
    'older-than': durationFlag({description: 'ACTIVE for longer than this is stuck: 30m, 2h, 1d.', default: '30m', helpValue: 'AGE'}),
    limit: Flags.integer({
      description: 'List at most this many ids of each kind in the plan (the rest is one "+N more" line); all are fixed.',
      default: 5,
      min: 0,
    }),
  }

  async run() {
    const {flags} = await this.parse(StuckFix)
    const target = redisTarget(flags)
    this.registerSecretsOf(target.resolved.url)
    return this.runDestructive(new StuckFixOperation(target, outputOf(this), {olderThanMs: flags['older-than'], limit: flags.limit}), flags)
  }
}
