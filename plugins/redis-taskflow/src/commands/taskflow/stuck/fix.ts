import {Flags} from '@oclif/core'
import {count, DestructiveCommand, Progress, UsageError} from 'ops-cli/base'

import {connectRedis, RedisConnection, redisFlags, resolveRedisUrl} from '../../../connection.js'
import {failStuckTask, findStuckTasks, requeuePending, StuckActiveTask, StuckFindings, TaskStore} from '../../../repair/stuck-task.js'
import {fixAll} from '../../../repair/task-workers.js'

const UNITS: Record<string, number> = {s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000}

export default class StuckFix extends DestructiveCommand {
  static override description = `Fix stuck or orphaned tasks (the seed's fix_stuck_tasks and fix_active_stuck_tasks).

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
    '<%= config.bin %> taskflow:stuck:fix --older-than 2h --force',
  ]

  static override flags = {
    ...redisFlags,
    'older-than': Flags.string({description: 'ACTIVE for longer than this is stuck: 30m, 2h, 1d.', default: '30m', helpValue: 'AGE'}),
  }

  async run() {
    const {flags} = await this.parse(StuckFix)
    const match = /^(\d+)([smhd])$/.exec(flags['older-than'])
    if (!match) throw new UsageError(`--older-than "${flags['older-than']}" is not an age like 30m, 2h or 1d.`)
    const olderThanMs = Number(match[1]) * UNITS[match[2]]
    const resolved = resolveRedisUrl(flags['redis-url'])
    this.registerSecretsOf(resolved.url)
    let connection: RedisConnection | undefined
    let findings: StuckFindings = {scanned: 0, orphanedPending: [], stuckActive: []}
    return this.runDestructive(
      {
        connect: async () => {
          connection = await connectRedis(resolved, flags.cluster)
        },
        plan: async () => {
          findings = await findStuckTasks(connection!, olderThanMs)
          return {
            store: 'Redis',
            target: connection!.maskedUrl,
            noun: 'stuck tasks',
            count: findings.orphanedPending.length + findings.stuckActive.length,
            filters: {olderThan: flags['older-than']},
            verb: {present: 'fix', past: 'fixed'},
            details: [
              `Scanned ${count(findings.scanned)} tasks`,
              `PENDING tasks in no queue (re-queue on ${'tasks:pending:primary'}): ${count(findings.orphanedPending.length)}`,
              ...findings.orphanedPending.slice(0, 20).map((id) => `   ${id}`),
              `ACTIVE tasks stuck (mark FAILED, push to tasks:pending:retry): ${count(findings.stuckActive.length)}`,
              ...findings.stuckActive.slice(0, 20).map((t) => `   ${t.id}: ${t.reason}`),
            ],
            messages: {nothing: `No stuck tasks among ${count(findings.scanned)} tasks`, dryRun: 'DRY RUN MODE - No tasks will be changed'},
            data: findings,
          }
        },
        steps: () => [
          {
            title: 'Re-queueing orphaned PENDING tasks',
            total: findings.orphanedPending.length,
            async *run(signal): AsyncGenerator<Progress> {
              // One at a time: each re-queue WATCHes the two queues, which parallel workers would keep invalidating.
              for await (const done of fixAll(connection!, findings.orphanedPending, requeuePending, signal, 1)) yield {done}
            },
          },
          {
            title: 'Failing stuck ACTIVE tasks',
            total: findings.stuckActive.length,
            async *run(signal): AsyncGenerator<Progress> {
              const fail = (store: TaskStore, task: StuckActiveTask) => failStuckTask(store, task.id, task.reason, task.since)
              for await (const done of fixAll(connection!, findings.stuckActive, fail, signal)) yield {done}
            },
          },
        ],
        disconnect: async () => connection?.close(),
      },
      flags,
    )
  }
}
