import {count, OpsCommand, table} from 'ops-cli/base'

import {newCensus, readCounters, takeCensus} from '../../census.js'
import {connectRedis, redisFlags, resolveRedisUrl} from '../../connection.js'
import {CELERY_META_PATTERN, DLQ_TASK_KEY_PATTERN, HEARTBEAT_KEY_PATTERN, Queue, TASK_STATES} from '../../keyspace.js'
import {countKeys} from '../../scan.js'

export default class Inspect extends OpsCommand {
  static override description = `Queue lengths, key counts, state distribution and counters against actual states (read-only).

The inspection of the seed's reset_redis, plus the check fix_counter_sync makes.
Uses SCAN with COUNT 1000 and pipelined reads on every master; writes nothing.`

  static override examples = [
    '<%= config.bin %> taskflow:inspect',
    '<%= config.bin %> taskflow:inspect --redis-url redis://localhost:6379/1',
    '<%= config.bin %> taskflow:inspect --json | jq .drift',
  ]

  static override flags = {...redisFlags}

  async run() {
    const {flags} = await this.parse(Inspect)
    const resolved = resolveRedisUrl(flags['redis-url'])
    this.registerSecretsOf(resolved.url)
    const connection = await connectRedis(resolved, flags.cluster)
    try {
      const c = connection.client
      const queues = {
        [Queue.primary]: await c.llen(Queue.primary),
        [Queue.retry]: await c.llen(Queue.retry),
        [Queue.scheduled]: await c.zcard(Queue.scheduled),
        [Queue.dlq]: await c.llen(Queue.dlq),
      }
      const census = newCensus()
      for await (const _ of takeCensus(connection, census));
      const keys = {
        tasks: census.tasks,
        dlqTasks: await countKeys(connection, DLQ_TASK_KEY_PATTERN),
        celeryMeta: await countKeys(connection, CELERY_META_PATTERN),
        workerHeartbeats: await countKeys(connection, HEARTBEAT_KEY_PATTERN),
      }
      const counters = await readCounters(connection)
      const drift = Object.fromEntries(TASK_STATES.map((s) => [s, counters[s] - census.states[s]]))

      this.log(`Redis URL: ${connection.maskedUrl}${connection.isCluster ? ` (cluster, ${connection.masters().length} masters)` : ''}`)
      this.log('')
      this.log('Queues:')
      this.logLines(table(['Queue', 'Length'], Object.entries(queues).map(([k, v]) => [k, count(v)])).map((l) => `  ${l}`))
      this.log('')
      this.log('Keys:')
      this.log(`  task:* hashes          ${count(keys.tasks)}`)
      this.log(`  dlq:task:* hashes      ${count(keys.dlqTasks)}`)
      this.log(`  celery-task-meta-*     ${count(keys.celeryMeta)}`)
      this.log(`  live worker heartbeats ${count(keys.workerHeartbeats)}`)
      this.log('')
      this.log('States (counter against the task hashes):')
      this.logLines(
        table(
          ['State', 'Counter', 'Actual', 'Drift'],
          TASK_STATES.map((s) => [s, count(counters[s]), count(census.states[s]), drift[s] === 0 ? '0' : `${drift[s] > 0 ? '+' : ''}${drift[s]}`]),
        ).map((l) => `  ${l}`),
      )
      if (census.unknownState) this.log(`  (${count(census.unknownState)} hashes have no valid state: see taskflow:defective:delete)`)
      const off = TASK_STATES.filter((s) => drift[s] !== 0)
      this.log('')
      this.log(off.length ? `Counters out of sync for ${off.join(', ')}: run ops taskflow:counters:sync` : 'Counters match the task states.')
      return {url: connection.maskedUrl, cluster: connection.isCluster, queues, keys, states: census.states, unknownState: census.unknownState, counters, drift}
    } finally {
      await connection.close()
    }
  }
}
