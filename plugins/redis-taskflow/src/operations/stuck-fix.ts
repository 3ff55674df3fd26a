import {count, describeDuration, Plan, plural, Progress, Step} from 'ops-cli/base'

import {Queue} from '../keyspace.js'
import {failStuckTask, findStuckTasks, requeuePending, StuckActiveTask, StuckFindings, TaskStore} from '../repair/stuck-task.js'
import {fixAll} from '../repair/task-workers.js'
import {TaskFlowOperation} from './taskflow-operation.js'

/** taskflow:stuck:fix: re-queue orphaned PENDING tasks, fail stuck ACTIVE ones. */
export class StuckFixOperation extends TaskFlowOperation<{olderThanMs: number; limit: number}> {
  private findings: StuckFindings = {scanned: 0, orphanedPending: [], stuckActive: []}

  async plan(): Promise<Plan> {
    const findings = (this.findings = await findStuckTasks(this.redis, this.options.olderThanMs))
    const {limit} = this.options
    const most = Math.max(findings.orphanedPending.length, findings.stuckActive.length)
    // A few ids per kind keep the plan on one screen; the rest is one line saying how to list them.
    const listed = (lines: string[]) =>
      lines.length > limit ? [...lines.slice(0, limit), `   +${count(lines.length - limit)} more: --limit ${most} to list them all`] : lines
    const total = findings.orphanedPending.length + findings.stuckActive.length
    return {
      store: 'Redis',
      target: this.redis.maskedUrl,
      noun: total === 1 ? 'stuck task' : 'stuck tasks',
      count: total,
      filters: {olderThan: describeDuration(this.options.olderThanMs), olderThanMs: this.options.olderThanMs},
      verb: {present: 'fix', past: 'fixed'},
      details: [
        `Scanned ${plural(findings.scanned, 'task')}`,
        `PENDING tasks in no queue (re-queue on ${Queue.primary}): ${count(findings.orphanedPending.length)}`,
        ...listed(findings.orphanedPending.map((id) => `   ${id}`)),
        `ACTIVE tasks stuck (mark FAILED, push to ${Queue.retry}): ${count(findings.stuckActive.length)}`,
        ...listed(findings.stuckActive.map((t) => `   ${t.id}: ${t.reason}`)),
      ],
      messages: {nothing: `No stuck tasks among ${plural(findings.scanned, 'task')}`, dryRun: 'DRY RUN MODE - No tasks will be changed'},
      data: findings,
    }
  }

  steps(): Step[] {
    return [
      {title: 'Re-queueing orphaned PENDING tasks', total: this.findings.orphanedPending.length, run: (signal) => this.requeue(signal)},
      {title: 'Failing stuck ACTIVE tasks', total: this.findings.stuckActive.length, run: (signal) => this.fail(signal)},
    ]
  }

  /** One at a time: each re-queue WATCHes the two queues, which parallel workers would keep invalidating. */
  private async *requeue(signal: AbortSignal): AsyncGenerator<Progress> {
    for await (const done of fixAll(this.redis, this.findings.orphanedPending, requeuePending, signal, 1)) yield {done}
  }

  private async *fail(signal: AbortSignal): AsyncGenerator<Progress> {
    const fail = (store: TaskStore, task: StuckActiveTask) => failStuckTask(store, task.id, task.reason, task.since)
    for await (const done of fixAll(this.redis, this.findings.stuckActive, fail, signal)) yield {done}
  }
}
