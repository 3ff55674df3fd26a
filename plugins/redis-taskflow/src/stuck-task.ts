import type {Redis} from 'ioredis'

import type {RedisConnection} from './connection.js'
import {counterKey, heartbeatKey, idOfTaskKey, Queue, TASK_KEY_PATTERN, taskKey} from './keyspace.js'
import {scanKeys} from './scan.js'

/** `datetime.utcnow().isoformat()`: the application's naive timestamps. */
export const utcIsoNow = (): string => new Date().toISOString().replace('Z', '000')

const parseNaive = (value: string | null): number => (value ? Date.parse(value.slice(0, 23) + 'Z') : Number.NaN)

export interface StuckFindings {
  scanned: number
  /** PENDING tasks whose id is in neither pending queue: the workers will never see them. */
  orphanedPending: string[]
  /** ACTIVE tasks older than the threshold, or whose worker heartbeat is gone. */
  stuckActive: {id: string; reason: string}[]
}

/**
 * Reads the two pending queues into a set (memory grows with the queue length,
 * not with the number of tasks), then scans task hashes in pipelined batches.
 */
export async function findStuckTasks(connection: RedisConnection, olderThanMs: number): Promise<StuckFindings> {
  const c = connection.client
  const queued = new Set([...(await c.lrange(Queue.primary, 0, -1)), ...(await c.lrange(Queue.retry, 0, -1))])
  const findings: StuckFindings = {scanned: 0, orphanedPending: [], stuckActive: []}
  const now = Date.now()
  for await (const batch of scanKeys(connection, TASK_KEY_PATTERN, {type: 'hash'})) {
    const pipeline = batch.node.pipeline()
    for (const key of batch.keys) pipeline.hmget(key, 'state', 'started_at', 'updated_at', 'worker_id')
    const replies = (await pipeline.exec()) ?? []
    const active: {id: string; started: number; worker: string | null}[] = []
    replies.forEach(([error, values], i) => {
      if (error) throw error
      const [state, startedAt, updatedAt, worker] = values as (string | null)[]
      const id = idOfTaskKey(batch.keys[i])
      findings.scanned++
      if (state === 'PENDING' && !queued.has(id)) findings.orphanedPending.push(id)
      if (state === 'ACTIVE') active.push({id, started: parseNaive(startedAt ?? updatedAt), worker})
    })
    for (const task of active) {
      const age = now - task.started
      if (Number.isNaN(task.started) || age > olderThanMs) {
        findings.stuckActive.push({id: task.id, reason: Number.isNaN(task.started) ? 'no start time' : `active for ${Math.round(age / 60_000)} min`})
      } else if (task.worker && !(await c.exists(heartbeatKey(task.worker)))) {
        findings.stuckActive.push({id: task.id, reason: `worker ${task.worker} has no heartbeat`})
      }
    }
  }
  return findings
}

/** Puts an orphaned PENDING task back on the primary queue, if it is still PENDING and still not queued. */
export async function requeuePending(node: Redis, id: string): Promise<boolean> {
  await node.watch(taskKey(id), Queue.primary, Queue.retry)
  const state = await node.hget(taskKey(id), 'state')
  const inQueue = (await node.lpos(Queue.primary, id)) !== null || (await node.lpos(Queue.retry, id)) !== null
  if (state !== 'PENDING' || inQueue) {
    await node.unwatch()
    return false
  }
  return (await node.multi().lpush(Queue.primary, id).exec()) !== null
}

/**
 * Marks a stuck ACTIVE task FAILED (error_type StuckTask, histories appended),
 * moves the counters and pushes it to the retry queue, in one MULTI/EXEC under
 * WATCH of the hash: a worker finishing the task meanwhile wins.
 */
export async function failStuckTask(node: Redis, id: string, reason: string): Promise<boolean> {
  const key = taskKey(id)
  await node.watch(key)
  const [state, errorHistory, stateHistory] = await node.hmget(key, 'state', 'error_history', 'state_history')
  if (state !== 'ACTIVE') {
    await node.unwatch()
    return false
  }
  const now = utcIsoNow()
  const message = `Task stuck in ACTIVE (${reason}); marked FAILED by ops taskflow:stuck:fix`
  const errors = parseList(errorHistory)
  errors.push({error_type: 'StuckTask', error: message, timestamp: now})
  const states = parseList(stateHistory)
  states.push({state: 'FAILED', timestamp: now})
  const exec = await node
    .multi()
    .hset(key, {state: 'FAILED', error_type: 'StuckTask', last_error: message, failed_at: now, updated_at: now, error_history: JSON.stringify(errors), state_history: JSON.stringify(states)})
    .decrby(counterKey('ACTIVE'), 1)
    .incrby(counterKey('FAILED'), 1)
    .lpush(Queue.retry, id)
    .exec()
  return exec !== null
}

function parseList(value: string | null): unknown[] {
  try {
    const parsed = JSON.parse(value ?? '[]')
    return Array.isArray(parsed) ? parsed : []
  } catch {
    return []
  }
}
