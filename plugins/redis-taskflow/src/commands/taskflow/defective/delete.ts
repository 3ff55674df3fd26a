import {Flags} from '@oclif/core'
import {count, DestructiveCommand, Progress} from 'ops-cli/base'

import {connectRedis, RedisConnection, redisFlags, resolveRedisUrl} from '../../../connection.js'
import {deleteDefectiveTask, DefectiveTask, findDefectiveTasks} from '../../../repair/defective-task.js'

export default class DefectiveDelete extends DestructiveCommand {
  static override description = `Find and delete task hashes with corrupted data (the seed's delete_defective_tasks).

Defective: task_id missing, empty or "unknown_id"; state or created_at missing or
empty; a non-empty created_at, updated_at or completed_at that does not parse as
ISO-8601 or is in year 1. Each is removed with its dlq:task:{id} copy, its id in
tasks:pending:primary, tasks:pending:retry, tasks:scheduled and dlq:tasks, and one
off the counter of its state, in one MULTI/EXEC under WATCH of the hash (a task a
worker moves meanwhile is looked at again; one it repairs is kept).

On a Redis Cluster those keys live in different slots: the hash is removed in a
MULTI/EXEC under WATCH on its node, and the copy, queue and counter updates
follow as separate commands, each atomic but not together (an interruption
between them leaves at most one task's counter off, which taskflow:counters:sync
repairs).`

  static override examples = [
    '<%= config.bin %> taskflow:defective:delete --dry-run',
    '<%= config.bin %> taskflow:defective:delete',
    '<%= config.bin %> taskflow:defective:delete --redis-url redis://localhost:6379/1 --force',
  ]

  static override flags = {
    ...redisFlags,
    limit: Flags.integer({description: 'List at most this many defective tasks in detail.', default: 50, min: 0}),
  }

  async run() {
    const {flags} = await this.parse(DefectiveDelete)
    const resolved = resolveRedisUrl(flags['redis-url'])
    this.registerSecretsOf(resolved.url)
    let connection: RedisConnection | undefined
    let defective: DefectiveTask[] = []
    return this.runDestructive(
      {
        connect: async () => {
          connection = await connectRedis(resolved, flags.cluster)
          this.log('Defective Task Cleanup Utility')
          this.log(`Redis URL: ${connection.maskedUrl}`)
          this.log(`Mode: ${flags['dry-run'] ? 'DRY RUN' : 'LIVE'}`)
          this.log('')
          this.log(`Connected to Redis at ${connection.maskedUrl}`)
        },
        plan: async () => {
          const found = await findDefectiveTasks(connection!)
          defective = found.defective
          this.log(`Scanned ${count(found.scanned)} total tasks`)
          const listing = defective.slice(0, flags.limit).flatMap((t, i) => [
            `${i + 1}. Redis Key: ${t.key}`,
            `   Task ID: ${t.fields.task_id || 'missing'}`,
            `   State: ${t.fields.state || 'missing'}`,
            `   Created: ${t.fields.created_at || 'missing'}`,
            `   Updated: ${t.fields.updated_at || 'missing'}`,
            `   Completed: ${t.fields.completed_at || 'missing'}`,
            `   Type: ${t.fields.task_type || 'missing'}`,
            `   Content: ${t.fields.content ? t.fields.content.slice(0, 60) : 'missing'}`,
            `   Defective: ${t.reasons.join('; ')}`,
          ])
          const more = defective.length > flags.limit ? [`... and ${count(defective.length - flags.limit)} more (raise --limit to list them)`] : []
          return {
            store: 'Redis',
            target: connection!.maskedUrl,
            noun: 'defective tasks',
            count: defective.length,
            filters: {},
            details: ['', 'Defective tasks found:', '-'.repeat(80), ...listing, ...more, ''],
            messages: {
              // A plain integer, as the seed printed it: monitoring scripts read it with awk '{print $2}' and test it with -gt.
              found: `Found ${defective.length} defective tasks`,
              nothing: 'Found 0 defective tasks',
              dryRun: `DRY RUN: Would delete ${defective.length} defective tasks`,
            },
            data: {scanned: found.scanned, defective: defective.map((t) => ({key: t.key, reasons: t.reasons}))},
          }
        },
        steps: (plan) => [
          {
            title: 'Deleting defective tasks',
            total: plan.count,
            async *run(signal): AsyncGenerator<Progress> {
              let done = 0
              for (const task of defective) {
                if (signal.aborted) return
                if (await deleteDefectiveTask(connection!, task)) done++
                yield {done}
              }
            },
          },
        ],
        disconnect: async () => connection?.close(),
      },
      flags,
    )
  }
}
