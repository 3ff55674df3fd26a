import {DestructiveCommand, Progress} from 'ops-cli/base'

import {connectRedis, RedisConnection, redisFlags, resolveRedisUrl} from '../../../connection.js'
import {CELERY_META_PATTERN} from '../../../keyspace.js'
import {countKeys, scanKeys, unlinkBatch} from '../../../scan.js'

export default class CeleryMetaClean extends DestructiveCommand {
  static override description = `Remove Celery result keys (celery-task-meta-*) to free Redis memory (the seed's cleanup_celery_meta).

The task flow keeps its own task:{id} hashes, so Celery's result backend keys are
dead weight. SCAN (COUNT 1000) finds them on every master; UNLINK removes them in
pipelines, freeing memory in the background.`

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
    return this.runDestructive(
      {
        connect: async () => {
          connection = await connectRedis(resolved, flags.cluster)
        },
        plan: async () => ({
          store: 'Redis',
          target: connection!.maskedUrl,
          noun: 'celery-task-meta-* keys',
          count: await countKeys(connection!, CELERY_META_PATTERN),
          filters: {pattern: CELERY_META_PATTERN},
          details: [`Redis URL: ${connection!.maskedUrl}`],
          messages: {dryRun: 'DRY RUN MODE - No keys will be deleted'},
        }),
        steps: (plan) => [
          {
            title: 'Unlinking celery-task-meta-* keys',
            total: plan.count,
            async *run(signal): AsyncGenerator<Progress> {
              let done = 0
              for await (const batch of scanKeys(connection!, CELERY_META_PATTERN)) {
                done += await unlinkBatch(batch, connection!.isCluster)
                yield {done}
                if (signal.aborted) return
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
