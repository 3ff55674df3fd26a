import type {Cluster, Redis} from 'ioredis'

import {masterOf, RedisConnection} from './connection.js'
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
  stuckActive: StuckActiveTask[]
}

export interface StuckActiveTask {
  id: string
  reason: string
  /** started_at (else updated_at) as the scan read it: a task picked up again since then is no longer stuck. */
  since: string | null
}

/** The ids in the two pending queues (memory grows with the queue length, not with the number of tasks). */
async function queuedIds(connection: RedisConnection): Promise<Set<string>> {
  const c = connection.client
  return new Set([...(await c.lrange(Queue.primary, 0, -1)), ...(await c.lrange(Queue.retry, 0, -1))])
}

/**
 * Reads the two pending queues, scans task hashes in pipelined batches, then
 * reads the queues again: a PENDING task counts as orphaned only when its id
 * was in neither reading, so a task created (and queued) during the scan is
 * not mistaken for one.
 */
export async function findStuckTasks(connection: RedisConnection, olderThanMs: number): Promise<StuckFindings> {
  const c = connection.client
  let queued = await queuedIds(connection)
  const findings: StuckFindings = {scanned: 0, orphanedPending: [], stuckActive: []}
  const heartbeats = new Map<string, boolean>()
  const now = Date.now()
  for await (const batch of scanKeys(connection, TASK_KEY_PATTERN, {type: 'hash'})) {
    const pipeline = batch.node.pipeline()
    for (const key of batch.keys) pipeline.hmget(key, 'state', 'started_at', 'updated_at', 'worker_id')
    const replies = (await pipeline.exec()) ?? []
    const active: {id: string; since: string | null; started: number; worker: string | null}[] = []
    replies.forEach(([error, values], i) => {
      if (error) throw error
      const [state, startedAt, updatedAt, worker] = values as (string | null)[]
      const id = idOfTaskKey(batch.keys[i])
      findings.scanned++
      if (state === 'PENDING' && !queued.has(id)) findings.orphanedPending.push(id)
      const since = startedAt ?? updatedAt
      if (state === 'ACTIVE') active.push({id, since, started: parseNaive(since), worker})
    })
    for (const task of active) {
      const age = now - task.started
      if (Number.isNaN(task.started) || age > olderThanMs) {
        findings.stuckActive.push({id: task.id, since: task.since, reason: Number.isNaN(task.started) ? 'no start time' : `active for ${Math.round(age / 60_000)} min`})
      } else if (task.worker) {
        if (!heartbeats.has(task.worker)) heartbeats.set(task.worker, (await c.exists(heartbeatKey(task.worker))) === 1)
        if (!heartbeats.get(task.worker)) findings.stuckActive.push({id: task.id, since: task.since, reason: `worker ${task.worker} has no heartbeat`})
      }
    }
  }
  if (findings.orphanedPending.length > 0) {
    queued = await queuedIds(connection)
    findings.orphanedPending = findings.orphanedPending.filter((id) => !queued.has(id))
  }
  return findings
}

/** A connection, or one single node (as the unit tests hand it). */
export type TaskStore = RedisConnection | Redis

function clusterOf(store: TaskStore): Cluster | undefined {
  return 'masters' in store && store.isCluster ? (store.client as Cluster) : undefined
}

function nodeOf(store: TaskStore, key: string): Redis {
  return 'masters' in store ? masterOf(store, key) : store
}

function throwOnError(replies: [Error | null, unknown][]): void {
  for (const [error] of replies) if (error) throw error
}

/**
 * Puts an orphaned PENDING task back on the primary queue, if it is still
 * PENDING and still not queued: on a single node one MULTI/EXEC under WATCH of
 * the hash and both queues. On a cluster those keys live in different slots:
 * the queues are checked, then the state, then the id pushed, each command
 * atomic, so only a change in the milliseconds between the last two escapes.
 */
export async function requeuePending(store: TaskStore, id: string): Promise<boolean> {
  const cluster = clusterOf(store)
  if (cluster) {
    const inQueue = (await cluster.lpos(Queue.primary, id)) !== null || (await cluster.lpos(Queue.retry, id)) !== null
    if (inQueue || (await cluster.hget(taskKey(id), 'state')) !== 'PENDING') return false
    await cluster.lpush(Queue.primary, id)
    return true
  }
  const node = nodeOf(store, taskKey(id))
  // Workers pop other ids from the watched queues all the time: an aborted EXEC means "look again", not "leave it".
  for (let attempt = 0; attempt < REQUEUE_ATTEMPTS; attempt++) {
    await node.watch(taskKey(id), Queue.primary, Queue.retry)
    const state = await node.hget(taskKey(id), 'state')
    const inQueue = (await node.lpos(Queue.primary, id)) !== null || (await node.lpos(Queue.retry, id)) !== null
    if (state !== 'PENDING' || inQueue) {
      await node.unwatch()
      return false
    }
    if ((await node.multi().lpush(Queue.primary, id).exec()) !== null) return true
  }
  return false
}

/** Looks at one orphan at most this often while the queues keep changing under WATCH. */
const REQUEUE_ATTEMPTS = 20

/**
 * Marks a stuck ACTIVE task FAILED (error_type StuckTask, histories appended),
 * moves the counters (ACTIVE -1, FAILED +1) and pushes it to the retry queue.
 * The hash is changed in a MULTI/EXEC under WATCH of the hash, so a worker
 * finishing the task meanwhile wins; so does one that picked it up again
 * since the scan (`since`, when given, no longer matches). On a single node the counters and the
 * queue are in that same MULTI/EXEC.
 */
export async function failStuckTask(store: TaskStore, id: string, reason: string, since?: string | null): Promise<boolean> {
  const key = taskKey(id)
  const node = nodeOf(store, key)
  const cluster = clusterOf(store)
  await node.watch(key)
  const [state, errorHistory, stateHistory, startedAt, updatedAt] = await node.hmget(key, 'state', 'error_history', 'state_history', 'started_at', 'updated_at')
  if (state !== 'ACTIVE' || (since !== undefined && (startedAt ?? updatedAt) !== since)) {
    await node.unwatch()
    return false
  }
  const now = utcIsoNow()
  const message = `Task stuck in ACTIVE (${reason}); marked FAILED by ops taskflow:stuck:fix`
  const errors = parseList(errorHistory)
  errors.push({error_type: 'StuckTask', error: message, timestamp: now})
  const states = parseList(stateHistory)
  states.push({state: 'FAILED', timestamp: now})
  const multi = node
    .multi()
    .hset(key, {state: 'FAILED', error_type: 'StuckTask', last_error: message, failed_at: now, updated_at: now, error_history: JSON.stringify(errors), state_history: JSON.stringify(states)})
  if (!cluster) multi.decrby(counterKey('ACTIVE'), 1).incrby(counterKey('FAILED'), 1).lpush(Queue.retry, id)
  const replies = await multi.exec()
  if (replies === null) return false
  throwOnError(replies)
  // Cluster: counters and queue are in other slots, so they follow the hash change non-atomically (an interruption here leaves this one task's counters off: counters:sync repairs them).
  if (cluster) await Promise.all([cluster.decrby(counterKey('ACTIVE'), 1), cluster.incrby(counterKey('FAILED'), 1), cluster.lpush(Queue.retry, id)])
  return true
}

function parseList(value: string | null): unknown[] {
  try {
    const parsed = JSON.parse(value ?? '[]')
    return Array.isArray(parsed) ? parsed : []
  } catch {
    return []
  }
}
