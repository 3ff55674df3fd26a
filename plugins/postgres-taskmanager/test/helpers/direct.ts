/** Drives operations in-process (no CLI): fast, and the same code the commands run. */
import type {DestructiveOperation, Plan} from 'ops-cli/base'

import {ClearOperation, ClearOptions, ClearPlan} from '../../src/clear-operation.js'
import type {TaskFilter} from '../../src/filter.js'

export interface DirectRun {
  plan: ClearPlan
  done: number
}

/** Connect, plan, run every step (aborting after `abortAfterBatches` progress events), disconnect. */
export async function runDirect<P extends Plan>(
  operation: DestructiveOperation<P>,
  abortAfterBatches?: number,
): Promise<{plan: P; done: number}> {
  await operation.connect()
  try {
    const plan = await operation.plan()
    const controller = new AbortController()
    let done = 0
    let batches = 0
    for (const step of operation.steps(plan)) {
      for await (const progress of step.run(controller.signal)) {
        done = progress.done
        if (abortAfterBatches !== undefined && ++batches >= abortAfterBatches) controller.abort()
      }
    }
    return {plan, done}
  } finally {
    await operation.disconnect()
  }
}

export async function clearDirect(
  url: string,
  filter: TaskFilter,
  options: Partial<ClearOptions> & {abortAfterBatches?: number} = {},
): Promise<DirectRun> {
  const operation = new ClearOperation({
    url,
    table: 'task_manager_taskmanager',
    filter,
    useCursor: false,
    batchSize: 1000,
    targetBatchMs: 0,
    limits: {statementTimeoutMs: 30_000, lockTimeoutMs: 2000},
    sleepMs: 0,
    ...options,
  })
  return runDirect(operation, options.abortAfterBatches)
}
