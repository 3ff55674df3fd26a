import {DestructiveCommand} from 'ops-cli/base'

import {redisFlags, redisTarget} from '../../../connection.js'
import {CeleryMetaCleanOperation} from '../../../operations/celery-meta-clean.js'
import {outputOf} from '../../../operations/taskflow-operation.js'

export default class CeleryMetaClean extends DestructiveCommand {
  static override summary = 'Remove Celery result keys (celery-task-meta-*) to free Redis memory.'

  static override description = `Remove Celery result keys (celery-task-meta-*) to free Redis memory (cleanup_celery_meta.py).

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
    const target = redisTarget(flags)
    this.registerSecretsOf(target.resolved.url)
    return this.runDestructive(new CeleryMetaCleanOperation(target, outputOf(this), {}), flags)
  }
}
