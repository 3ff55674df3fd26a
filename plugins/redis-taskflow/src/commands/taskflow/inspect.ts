import {OpsCommand} from 'ops-cli/base'

import {connectRedis, redisFlags, resolveRedisUrl} from '../../connection.js'
import {inspectionLines, inspectTaskFlow, TaskFlowInspection} from '../../census/inspection.js'

export default class Inspect extends OpsCommand {
  static override summary = 'Queue lengths, key counts, live workers, state distribution and counter drift (read-only).'

  static override description = `Queue lengths, key counts, live workers, state distribution and counters against actual states (read-only).

The inspection of reset_redis.py, plus the check fix_counter_sync.py makes.
Uses SCAN with COUNT 1000 on every master, the states read in each step by a read-only script; writes nothing.
Under live traffic the drift is approximate by the transitions made during the scan.`

  static override examples = [
    '<%= config.bin %> taskflow:inspect',
    '<%= config.bin %> taskflow:inspect --redis-url redis://localhost:6379/1',
    '<%= config.bin %> taskflow:inspect --json | jq .drift',
  ]

  static override flags = {...redisFlags}

  async run(): Promise<TaskFlowInspection> {
    const {flags} = await this.parse(Inspect)
    const resolved = resolveRedisUrl(flags['redis-url'])
    this.registerSecretsOf(resolved.url)
    const connection = await connectRedis(resolved, flags.cluster)
    try {
      const inspection = await inspectTaskFlow(connection)
      this.logLines(inspectionLines(inspection, connection.masters().length))
      return inspection
    } finally {
      await connection.close()
    }
  }
}
