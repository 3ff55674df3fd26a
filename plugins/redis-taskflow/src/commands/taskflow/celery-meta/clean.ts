import {DestructiveCommand, Progress} from 'ops-cli/base'

import {connectRedis, RedisConnection, redisFlags, resolveRedisUrl} from '../../../connection.js'
import {CELERY_META_PATTERN} from '../../../keyspace.js'
import {MatchedKeys} from '../../../remove/unlink.js'

export default class CeleryMetaClean extends DestructiveCommand {
  static override description = `Remove Celery result keys (celery-task-meta-*) to free Redis memory (the seed's cleanup_celery_meta).

The task flow keeps its own task:{id} hashes, so Celery's result backend keys are
dead weight. SCAN (COUNT 1000) finds them on every master while counting, keeping up to 64 MiB
of key names; multi-key UNLINKs (grouped by hash slot on a cluster), four pipelines
in flight, remove those, and a second scan runs only for keys past that cap.
UNLINK frees the memory in the background. At 500,000 keys this is several times faster than
redis-cli --scan | xargs redis-cli unlink.`

  static override examples = [
    '<%= config.bin %> taskflow:celery-meta:clean --dry-run',
    '<%= config.bin %> taskflow:celery-meta:clean --force',
    '<%= config.bin %> taskflow:celery-meta:clean --redis-url redis://localhost:6379/1',
  ]

  static override flags = {...redisFlags}

  async run() {
    const {flags} = await this.parse(CeleryMetaClean)
    const resolved = resolveRedisUrl(flags['redis-url'])
    this.registerSecretsOf(resolved.url)
    let connection: RedisConnection | undefined
    let matched: MatchedKeys | undefined
    return this.runDestructive(
      {
        connect: async () => {
          connection = await connectRedis(resolved, flags.cluster)
        },
        plan: async () => ({
          store: 'Redis',
          target: connection!.maskedUrl,
          noun: 'celery-task-meta-* keys',
          count: (matched = await MatchedKeys.collect(connection!, CELERY_META_PATTERN)).count,
          filters: {pattern: CELERY_META_PATTERN},
          details: [`Redis URL: ${connection!.maskedUrl}`],
          messages: {dryRun: 'DRY RUN MODE - No keys will be deleted'},
        }),
        steps: (plan) => [
          {
            title: 'Unlinking celery-task-meta-* keys',
            total: plan.count,
            async *run(signal): AsyncGenerator<Progress> {
              // The keys the plan found (up to 64 MiB of names), then a second scan only past that.
              for await (const done of matched!.unlink(connection!, {signal})) yield {done}
            },
          },
        ],
        disconnect: async () => connection?.close(),
      },
      flags,
    )
  }
}
