import {count, Plan, Progress, Step} from 'ops-cli/base'

import {deleteDefectiveTask, DefectiveTask, findDefectiveTasks} from '../repair/defective-task.js'
import {TaskFlowOperation} from './taskflow-operation.js'

/** taskflow:defective:delete: list the defective tasks in delete_defective_tasks.py's format, then remove them one by one. */
export class DefectiveDeleteOperation extends TaskFlowOperation<{limit: number; dryRun: boolean}> {
  private defective: DefectiveTask[] = []

  protected override connected(): void {
    const {maskedUrl} = this.redis
    for (const line of [
      'Defective Task Cleanup Utility',
      `Redis URL: ${maskedUrl}`,
      `Mode: ${this.options.dryRun ? 'DRY RUN' : 'LIVE'}`,
      '',
      `Connected to Redis at ${maskedUrl}`,
    ])
      this.output.log(line)
  }

  async plan(): Promise<Plan> {
    const found = await findDefectiveTasks(this.redis)
    const {limit} = this.options
    this.defective = found.defective
    const defective = this.defective
    this.output.log(`Scanned ${count(found.scanned)} total tasks`)
    const listing = defective
      .slice(0, limit)
      .flatMap((t, i) => [
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
    // Nine lines a task: a few fit a screen or two; the rest is one line saying how to list them.
    const more =
      defective.length > limit
        ? [`+${count(defective.length - limit)} more defective tasks: --limit ${defective.length} to list them all`]
        : []
    return {
      store: 'Redis',
      target: this.redis.maskedUrl,
      noun: 'defective tasks',
      count: defective.length,
      filters: {},
      details: ['', 'Defective tasks found:', '-'.repeat(80), ...listing, ...more, ''],
      messages: {
        // A plain integer, as delete_defective_tasks.py printed it: monitoring scripts read it with awk '{print $2}' and test it with -gt.
        found: `Found ${defective.length} defective tasks`,
        nothing: 'Found 0 defective tasks',
        dryRun: `DRY RUN: Would delete ${defective.length} defective tasks`,
      },
      data: {scanned: found.scanned, defective: defective.map((t) => ({key: t.key, reasons: t.reasons}))},
    }
  }

  steps(plan: Plan): Step[] {
    return [{title: 'Deleting defective tasks', total: plan.count, run: (signal) => this.deleteAll(signal)}]
  }

  private async *deleteAll(signal: AbortSignal): AsyncGenerator<Progress> {
    let done = 0
    for (const task of this.defective) {
      if (signal.aborted) return
      if (await deleteDefectiveTask(this.redis, task)) done++
      yield {done}
    }
  }
}
