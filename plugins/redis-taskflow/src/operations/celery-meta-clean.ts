import {Plan, Progress, Step} from 'ops-cli/base'

import {CELERY_META_PATTERN} from '../keyspace.js'
import {MatchedKeys} from '../remove/unlink.js'
import {TaskFlowOperation} from './taskflow-operation.js'

/** taskflow:celery-meta:clean: count (and keep) the celery-task-meta-* keys, then UNLINK them. */
export class CeleryMetaCleanOperation extends TaskFlowOperation {
  private matched?: MatchedKeys

  async plan(): Promise<Plan> {
    this.matched = await MatchedKeys.collect(this.redis, CELERY_META_PATTERN)
    return {
      store: 'Redis',
      target: this.redis.maskedUrl,
      noun: 'celery-task-meta-* keys',
      count: this.matched.count,
      filters: {pattern: CELERY_META_PATTERN},
      details: [`Redis URL: ${this.redis.maskedUrl}`],
      messages: {dryRun: 'DRY RUN MODE - No keys will be deleted'},
    }
  }

  steps(plan: Plan): Step[] {
    return [{title: 'Unlinking celery-task-meta-* keys', total: plan.count, run: (signal) => this.unlink(signal)}]
  }

  /** The keys the plan found (up to 64 MiB of names), then a second scan only past that. */
  private async *unlink(signal: AbortSignal): AsyncGenerator<Progress> {
    if (!this.matched) return
    for await (const done of this.matched.unlink(this.redis, {signal})) yield {done}
  }
}
