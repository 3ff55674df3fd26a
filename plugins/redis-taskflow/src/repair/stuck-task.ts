import type {Cluster, Redis} from 'ioredis'

import {masterOf, RedisConnection} from '../connection.js'
import {counterKey, heartbeatKey, idOfTaskKey, Queue, TASK_KEY_PATTERN, taskKey} from '../keyspace.js'
import {HashScanner} from '../read/hash-scan.js'
import {isBadName} from '../read/state-reader.js'
import {StateLedger} from '../census/state-ledger.js'

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

/** Ids per LRANGE page when reading a queue: a page is a short command, the whole list one long one. */
const QUEUE_PAGE = 10_000

/**
 * The ids in the two pending queues, kept compactly (~17 bytes an id, in a
 * StateLedger). Paged by index from the head: the application LPUSHes new ids
 * at the head and workers pop from the tail, so a push only makes a page read
 * an id twice and a pop never moves an unread id into a page already read.
 */
async function queuedIds(connection: RedisConnection): Promise<{has(id: string): boolean}> {
  const c = connection.client
  const ids = new StateLedger()
  for (const queue of [Queue.primary, Queue.retry]) {
    for (let start = 0; ; start += QUEUE_PAGE) {
      const page = await c.lrange(queue, start, start + QUEUE_PAGE - 1)
      for (const id of page) ids.set(taskKey(id), 0)
      if (page.length < QUEUE_PAGE) break
    }
  }
  return {has: (id) => ids.get(taskKey(id)) !== undefined}
}

/** What stuck:fix reads of an ACTIVE task besides its state. */
const ACTIVE_FIELDS = ['started_at', 'updated_at', 'worker_id'] as const

/**
 * Reads the two pending queues, scans task hashes (the state read in each
 * SCAN COUNT 1000 step, then start times and worker of the ACTIVE ones), then
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
  for (const node of connection.masters()) {
    const details = new HashScanner(node, ACTIVE_FIELDS)
    for await (const batch of new HashScanner(node, ['state']).scan(TASK_KEY_PATTERN)) {
      const activeKeys: string[] = []
      batch.rows.forEach((row, i) => {
        if (!Array.isArray(row) || isBadName(batch.keys[i])) return // not a hash, gone, or a name ops cannot send back: not a task
        findings.scanned++
        if (row[0] === 'PENDING' && !queued.has(idOfTaskKey(batch.keys[i]))) findings.orphanedPending.push(idOfTaskKey(batch.keys[i]))
        if (row[0] === 'ACTIVE') activeKeys.push(batch.keys[i])
      })
      const rows = await details.read(activeKeys)
      for (const [i, row] of rows.entries()) {
        if (!Array.isArray(row)) continue
        const [startedAt, updatedAt, worker] = row
        const id = idOfTaskKey(activeKeys[i])
        const since = startedAt ?? updatedAt
        const started = parseNaive(since)
        const age = now - started
        if (Number.isNaN(started) || age > olderThanMs) {
          findings.stuckActive.push({
            id,
            since,
            reason: Number.isNaN(started) ? 'no start time' : `active for ${Math.round(age / 60_000)} min`,
          })
        } else if (worker) {
          if (!heartbeats.has(worker)) heartbeats.set(worker, (await c.exists(heartbeatKey(worker))) === 1)
          if (!heartbeats.get(worker)) findings.stuckActive.push({id, since, reason: `worker ${worker} has no heartbeat`})
        }
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
  const [state, errorHistory, stateHistory, startedAt, updatedAt] = await node.hmget(
    key,
    'state',
    'error_history',
    'state_history',
    'started_at',
    'updated_at',
  )
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
  const multi = node.multi().hset(key, {
    state: 'FAILED',
    error_type: 'StuckTask',
    last_error: message,
    failed_at: now,
    updated_at: now,
    error_history: JSON.stringify(errors),
    state_history: JSON.stringify(states),
  })
  if (!cluster) multi.decrby(counterKey('ACTIVE'), 1).incrby(counterKey('FAILED'), 1).lpush(Queue.retry, id)
  const replies = await multi.exec()
  if (replies === null) return false
  throwOnError(replies)
  // Cluster: counters and queue are in other slots, so they follow the hash change non-atomically
  // (an interruption here leaves this one task's counters off: counters:sync repairs them).
  if (cluster)
    await Promise.all([cluster.decrby(counterKey('ACTIVE'), 1), cluster.incrby(counterKey('FAILED'), 1), cluster.lpush(Queue.retry, id)])
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
