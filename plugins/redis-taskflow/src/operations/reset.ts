import {count, Plan, Progress, Step} from 'ops-cli/base'

import {queueLengths} from '../census/inspection.js'
import {TASK_FLOW_PATTERNS} from '../keyspace.js'
import {scanSorted, sizeOf} from '../read/scan.js'
import {unlinkBatch} from '../remove/unlink.js'
import {TaskFlowOperation} from './taskflow-operation.js'

/** taskflow:reset: count the task-flow keys per pattern, then UNLINK them (or FLUSHDB ASYNC with --all-keys). */
export class ResetOperation extends TaskFlowOperation<{allKeys: boolean; inspectOnly: boolean}> {
  async plan(): Promise<Plan> {
    const redis = this.redis
    const {allKeys} = this.options
    // One SCAN pass sorts every key by pattern: seven MATCH passes would each walk the whole keyspace.
    const perPattern: Record<string, number> = Object.fromEntries(TASK_FLOW_PATTERNS.map((p) => [p, 0]))
    for await (const {byPattern} of scanSorted(redis, TASK_FLOW_PATTERNS)) {
      byPattern.forEach((batch, i) => (perPattern[TASK_FLOW_PATTERNS[i]] += sizeOf(batch)))
    }
    const total = allKeys
      ? (await Promise.all(redis.masters().map((m) => m.dbsize()))).reduce((a, b) => a + b, 0)
      : Object.values(perPattern).reduce((a, b) => a + b, 0)
    return {
      store: 'Redis',
      target: redis.maskedUrl,
      noun: allKeys
        ? redis.isCluster
          ? 'keys (the whole cluster, every master)'
          : 'keys (the whole selected database)'
        : 'task-flow keys',
      count: total,
      filters: {allKeys, patterns: allKeys ? ['*'] : [...TASK_FLOW_PATTERNS]},
      details: [
        `Redis URL: ${redis.maskedUrl}`,
        ...Object.entries(perPattern).map(([p, n]) => `  ${p.padEnd(22)} ${count(n)}`),
        'Queues:',
        ...Object.entries(await queueLengths(redis)).map(([q, n]) => `  ${q.padEnd(22)} ${count(n)}`),
      ],
      messages: {
        dryRun: this.options.inspectOnly
          ? 'Inspection only, nothing was deleted: run with --confirm to reset (it asks first), or --force for scripts.'
          : 'DRY RUN MODE - No keys will be deleted',
      },
      data: {perPattern},
    }
  }

  steps(plan: Plan): Step[] {
    if (this.options.allKeys) {
      return [
        {
          title: this.redis.isCluster ? 'FLUSHDB ASYNC on every master' : 'FLUSHDB ASYNC of the selected database',
          run: () => this.flush(plan.count),
        },
      ]
    }
    return [{title: 'Unlinking task-flow keys', total: plan.count, run: (signal) => this.unlinkTaskFlow(signal)}]
  }

  private async *flush(total: number): AsyncGenerator<Progress> {
    for (const master of this.redis.masters()) await master.flushdb('ASYNC')
    yield {done: total}
  }

  /** What matches now goes, also keys created since the plan: a reset empties the task flow. */
  private async *unlinkTaskFlow(signal: AbortSignal): AsyncGenerator<Progress> {
    let done = 0
    for await (const {node, byPattern} of scanSorted(this.redis, TASK_FLOW_PATTERNS)) {
      const batch = {node, keys: byPattern.flatMap((b) => b.keys), raw: byPattern.flatMap((b) => b.raw ?? [])}
      if (sizeOf(batch) > 0) done += await unlinkBatch(batch, this.redis.isCluster)
      yield {done}
      if (signal.aborted) return
    }
  }
}
