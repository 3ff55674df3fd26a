import {Flags} from '@oclif/core'
import {count, DestructiveCommand, Progress} from 'ops-cli/base'

import {connectRedis, RedisConnection, redisFlags, resolveRedisUrl} from '../../connection.js'
import {queueLengths} from '../../census/inspection.js'
import {TASK_FLOW_PATTERNS} from '../../keyspace.js'
import {scanSorted} from '../../read/scan.js'
import {unlinkBatch} from '../../remove/unlink.js'

export default class Reset extends DestructiveCommand {
  static override description = `Remove the task-flow keys, and only those (the seed's reset_redis).

As the seed: without --confirm it only inspects (what it would remove, per key
pattern, and the queue lengths) and exits 0; with --confirm it asks, then removes
(--force: no question, for scripts). A bare --confirm is the seed's switch;
--confirm NAME is still the base's production-profile confirmation. The seed ran FLUSHALL, wiping
every database on the server; ops removes only task:*, dlq:task:*, tasks:*,
dlq:tasks, metrics:tasks:state:*, worker:heartbeat:* and celery-task-meta-* keys of
the selected database (one SCAN pass sorting keys by pattern, UNLINK in pipelines;
on a Redis Cluster, every master).
--all-keys empties the whole selected database (FLUSHDB ASYNC) and never touches
other database indexes; a Redis Cluster has only database 0, so there it runs
FLUSHDB ASYNC on every master and empties the whole cluster.`

  static override examples = [
    '<%= config.bin %> taskflow:reset',
    '<%= config.bin %> taskflow:reset --confirm',
    '<%= config.bin %> taskflow:reset --force --redis-url redis://localhost:6379/1',
    '<%= config.bin %> taskflow:reset --all-keys --dry-run',
  ]

  static override flags = {
    ...redisFlags,
    'all-keys': Flags.boolean({description: 'Empty the whole selected database (FLUSHDB ASYNC), not just the task-flow keys; on a cluster, every master.', default: false}),
  }

  async run() {
    const {argv, confirmSwitch} = seedConfirmSwitch(this.argv)
    const {flags} = await this.parse(Reset, argv)
    // The seed's reset_redis.py inspects unless given --confirm: so does this, as a dry run.
    const inspectOnly = !confirmSwitch && !flags.force && !flags['dry-run'] && flags.confirm === undefined
    const resolved = resolveRedisUrl(flags['redis-url'])
    this.registerSecretsOf(resolved.url)
    let connection: RedisConnection | undefined
    return this.runDestructive(
      {
        connect: async () => {
          connection = await connectRedis(resolved, flags.cluster)
        },
        plan: async () => {
          // One SCAN pass sorts every key by pattern: seven MATCH passes would each walk the whole keyspace.
          const perPattern: Record<string, number> = Object.fromEntries(TASK_FLOW_PATTERNS.map((p) => [p, 0]))
          for await (const {byPattern} of scanSorted(connection!, TASK_FLOW_PATTERNS)) {
            byPattern.forEach((keys, i) => (perPattern[TASK_FLOW_PATTERNS[i]] += keys.length))
          }
          const total = flags['all-keys']
            ? (await Promise.all(connection!.masters().map((m) => m.dbsize()))).reduce((a, b) => a + b, 0)
            : Object.values(perPattern).reduce((a, b) => a + b, 0)
          return {
            store: 'Redis',
            target: connection!.maskedUrl,
            noun: flags['all-keys'] ? (connection!.isCluster ? 'keys (the whole cluster, every master)' : 'keys (the whole selected database)') : 'task-flow keys',
            count: total,
            filters: {allKeys: flags['all-keys'], patterns: flags['all-keys'] ? ['*'] : [...TASK_FLOW_PATTERNS]},
            details: [
              `Redis URL: ${connection!.maskedUrl}`,
              ...Object.entries(perPattern).map(([p, n]) => `  ${p.padEnd(22)} ${count(n)}`),
              'Queues:',
              ...Object.entries(await queueLengths(connection!)).map(([q, n]) => `  ${q.padEnd(22)} ${count(n)}`),
            ],
            messages: {
              dryRun: inspectOnly
                ? 'Inspection only, nothing was deleted: run with --confirm to reset (it asks first), or --force for scripts.'
                : 'DRY RUN MODE - No keys will be deleted',
            },
            data: {perPattern},
          }
        },
        steps: (plan) => [
          flags['all-keys']
            ? {
                title: connection!.isCluster ? 'FLUSHDB ASYNC on every master' : 'FLUSHDB ASYNC of the selected database',
                async *run(): AsyncGenerator<Progress> {
                  for (const master of connection!.masters()) await master.flushdb('ASYNC')
                  yield {done: plan.count}
                },
              }
            : {
                title: 'Unlinking task-flow keys',
                total: plan.count,
                async *run(signal): AsyncGenerator<Progress> {
                  let done = 0
                  // What matches now goes, also keys created since the plan: a reset empties the task flow.
                  for await (const {node, byPattern} of scanSorted(connection!, TASK_FLOW_PATTERNS)) {
                    const keys = byPattern.flat()
                    if (keys.length > 0) done += await unlinkBatch({node, keys}, connection!.isCluster)
                    yield {done}
                    if (signal.aborted) return
                  }
                },
              },
        ],
        disconnect: async () => connection?.close(),
      },
      inspectOnly ? {...flags, 'dry-run': true} : flags,
    )
  }
}

/**
 * `reset_redis.py --confirm` is a switch; the base's --confirm takes a
 * production resource name. A --confirm with no value after it (last, or
 * followed by another flag) is the seed's switch, and is taken out of argv.
 */
export function seedConfirmSwitch(argv: string[]): {argv: string[]; confirmSwitch: boolean} {
  const at = argv.findIndex((arg, i) => arg === '--confirm' && (i === argv.length - 1 || argv[i + 1].startsWith('-')))
  if (at === -1) return {argv, confirmSwitch: false}
  return {argv: [...argv.slice(0, at), ...argv.slice(at + 1)], confirmSwitch: true}
}
