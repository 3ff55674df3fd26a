import {Flags} from '@oclif/core'
import {DestructiveCommand} from 'ops-cli/base'

import {redisFlags, redisTarget} from '../../../connection.js'
import {DefectiveDeleteOperation} from '../../../operations/defective-delete.js'
import {outputOf} from '../../../operations/taskflow-operation.js'

export default class DefectiveDelete extends DestructiveCommand {
  static override summary = 'Find and delete task hashes with corrupted data.'

  static override description = `Find and delete task hashes with corrupted data (delete_defective_tasks.py).

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
    '<%= config.bin %> taskflow:defective:delete --dry-run --limit 1000',
    '<%= config.bin %> taskflow:defective:delete',
    '<%= config.bin %> taskflow:defective:delete --redis-url redis://localhost:6379/1 --force',
  ]

  static override flags = {
    ...redisFlags,
    limit: Flags.integer({
      description: 'List at most this many defective tasks in detail (the rest is one "+N more" line); all are deleted.',
      default: 3,
      min: 0,
    }),
  }

  async run() {
    const {flags} = await this.parse(DefectiveDelete)
    const target = redisTarget(flags)
    this.registerSecretsOf(target.resolved.url)
    return this.runDestructive(new DefectiveDeleteOperation(target, outputOf(this), {limit: flags.limit, dryRun: flags['dry-run']}), flags)
  }
}
