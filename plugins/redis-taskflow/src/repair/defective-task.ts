import type {Redis} from 'ioredis'

import {masterOf, RedisConnection} from '../connection.js'
import {counterKey, dlqTaskKey, idOfTaskKey, isTaskState, LIST_QUEUES, Queue, TASK_KEY_PATTERN} from '../keyspace.js'
import {HashScanner} from '../read/hash-scan.js'

/** The fields the rules and delete_defective_tasks.py's listing read. */
export const LISTED_FIELDS = ['task_id', 'state', 'created_at', 'updated_at', 'completed_at', 'task_type', 'content'] as const
export type TaskFields = Record<(typeof LISTED_FIELDS)[number], string | null>

export interface DefectiveTaskRule {
  reason: string
  applies(task: TaskFields): boolean
}

// Python's datetime.fromisoformat shapes (the application writes utcnow().isoformat()).
const ISO_8601 = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/

/** A non-empty timestamp that does not parse as ISO-8601, or is in year 1 (datetime.min). */
function badTimestamp(value: string | null): boolean {
  if (!value) return false
  if (!ISO_8601.test(value)) return true
  if (value.startsWith('0001-')) return true
  return Number.isNaN(Date.parse(value.slice(0, 19).replace(' ', 'T') + 'Z'))
}

const empty = (value: string | null) => value === null || value.trim() === ''

/** delete_defective_tasks.py's rules (docs/asynctaskflow-keys.md). */
export const DEFECTIVE_TASK_RULES: DefectiveTaskRule[] = [
  {reason: 'task_id missing or empty', applies: (t) => empty(t.task_id)},
  {reason: 'task_id is "unknown_id"', applies: (t) => t.task_id === 'unknown_id'},
  {reason: 'state missing or empty', applies: (t) => empty(t.state)},
  {reason: 'created_at missing or empty', applies: (t) => empty(t.created_at)},
  ...(['created_at', 'updated_at', 'completed_at'] as const).map((field) => ({
    reason: `${field} is not an ISO-8601 timestamp or is in year 1`,
    applies: (t: TaskFields) => badTimestamp(t[field]),
  })),
]

export function defectsOf(task: TaskFields): string[] {
  return DEFECTIVE_TASK_RULES.filter((rule) => rule.applies(task)).map((rule) => rule.reason)
}

export interface DefectiveTask {
  key: string
  fields: TaskFields
  reasons: string[]
}

async function readFields(node: Redis, keys: string[]): Promise<TaskFields[]> {
  const pipeline = node.pipeline()
  for (const key of keys) pipeline.hmget(key, ...LISTED_FIELDS)
  const replies = (await pipeline.exec()) ?? []
  return replies.map(([error, values]) => {
    if (error) throw error
    return taskFields(LISTED_FIELDS, values as (string | null)[])
  })
}

/** The values of an HMGET of `names` as TaskFields (fields not read stay undefined). */
const taskFields = (names: readonly string[], values: (string | null)[]): TaskFields =>
  Object.fromEntries(names.map((name, i) => [name, values[i]])) as TaskFields

/** The fields the rules look at: read for every task, so they are few and short. */
const RULE_FIELDS = ['task_id', 'state', 'created_at', 'updated_at', 'completed_at'] as const

/**
 * Scans task hashes on every master (SCAN COUNT 1000, the rules' fields read
 * by HashScanner: a read-only script per chunk of keys, pipelined HMGET only
 * where scripts are refused), then reads the listed fields of those that
 * break a rule and keeps the ones still defective. A task:* key that is not a
 * hash is not a task and is left alone.
 */
export async function findDefectiveTasks(connection: RedisConnection): Promise<{scanned: number; defective: DefectiveTask[]}> {
  let scanned = 0
  const defective: DefectiveTask[] = []
  for (const node of connection.masters()) {
    for await (const batch of new HashScanner(node, RULE_FIELDS).scan(TASK_KEY_PATTERN)) {
      const suspects: string[] = []
      batch.rows.forEach((row, i) => {
        if (!Array.isArray(row)) return
        scanned++
        if (defectsOf(taskFields(RULE_FIELDS, row)).length > 0) suspects.push(batch.keys[i])
      })
      if (suspects.length === 0) continue
      // The listing wants task_type and content too; a task repaired or deleted since the scan is dropped here.
      const rows = await new HashScanner(node, LISTED_FIELDS).read(suspects)
      rows.forEach((row, i) => {
        if (!Array.isArray(row)) return
        const fields = taskFields(LISTED_FIELDS, row)
        const reasons = defectsOf(fields)
        if (reasons.length) defective.push({key: suspects[i], fields, reasons})
      })
    }
  }
  return {scanned, defective}
}

/**
 * Removes one defective task: its hash, dlq:task:{id}, its id from every queue,
 * and one from the counter of its state when it has a valid one. The hash is
 * removed in a MULTI/EXEC under WATCH of the hash, after re-checking the task
 * is still defective, so a worker repairing or moving it meanwhile wins (and a
 * moved task is looked at again). On a single node everything else is in that
 * MULTI/EXEC too. Returns whether it was removed.
 */
export async function deleteDefectiveTask(connection: RedisConnection, task: DefectiveTask): Promise<boolean> {
  const id = task.fields.task_id && task.fields.task_id !== 'unknown_id' ? task.fields.task_id : idOfTaskKey(task.key)
  const ids = [...new Set([id, idOfTaskKey(task.key)])]
  const node = masterOf(connection, task.key)
  for (let attempt = 0; attempt < 5; attempt++) {
    await node.watch(task.key)
    const [current] = await readFields(node, [task.key])
    if ((await node.exists(task.key)) === 0 || defectsOf(current).length === 0) {
      await node.unwatch()
      return false
    }
    const multi = node.multi().unlink(task.key)
    if (!connection.isCluster) {
      for (const x of ids) {
        multi.unlink(dlqTaskKey(x))
        for (const queue of LIST_QUEUES) multi.lrem(queue, 0, x)
        multi.zrem(Queue.scheduled, x)
      }
      if (isTaskState(current.state)) multi.decrby(counterKey(current.state), 1)
    }
    const replies = await multi.exec()
    if (!replies) continue // the hash changed under WATCH; look again
    for (const [error] of replies) if (error) throw error
    if (connection.isCluster) await removeReferences(connection.client, ids, current.state)
    return true
  }
  return false
}

/**
 * Cluster: the copies, queues and counter live in other slots than the hash, so
 * they follow its removal non-atomically, one atomic command each (an
 * interruption here leaves at most this task's counter off: counters:sync repairs it).
 */
async function removeReferences(client: RedisConnection['client'], ids: string[], state: string | null): Promise<void> {
  const commands: Promise<unknown>[] = []
  for (const x of ids) {
    commands.push(client.unlink(dlqTaskKey(x)), client.zrem(Queue.scheduled, x))
    for (const queue of LIST_QUEUES) commands.push(client.lrem(queue, 0, x))
  }
  if (isTaskState(state)) commands.push(client.decrby(counterKey(state), 1))
  await Promise.all(commands)
}
