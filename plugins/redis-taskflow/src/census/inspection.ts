import {count, table} from 'ops-cli/base'

import {newCensus, oddKeyLines, readCounters, StateCounts, takeCensus} from './census.js'
import {signed} from '../repair/counters.js'
import type {RedisConnection} from '../connection.js'
import {CELERY_META_PATTERN, DLQ_TASK_KEY_PATTERN, HEARTBEAT_KEY_PATTERN, Queue, TASK_STATES} from '../keyspace.js'
import {countKeys, scanKeys, sizeOf} from '../read/scan.js'

/** What `taskflow:inspect` reports (its --json document) and `taskflow:reset` shows first. */
export interface TaskFlowInspection {
  url: string
  cluster: boolean
  /** Length of each queue, by key name. */
  queues: Record<string, number>
  keys: {tasks: number; dlqTasks: number; celeryMeta: number; workerHeartbeats: number}
  /** Live workers (their heartbeat expires after 90 s), at most WORKERS_LISTED. */
  workers: string[]
  states: StateCounts
  /** Task hashes whose state is missing or not one of the six. */
  unknownState: number
  /** task:* keys that are not hashes, and task:* keys whose name is not UTF-8: counted apart, not tasks. */
  notHashes: number
  badNames: number
  counters: StateCounts
  /** counter - actual, per state. */
  drift: StateCounts
}

const WORKERS_LISTED = 100
const HEARTBEAT_PREFIX = 'worker:heartbeat:'

/**
 * Reads the task flow without writing: queue lengths, key counts, the state of
 * every task hash (read in each SCAN COUNT 1000 step, every master), the
 * counters. The scan takes time while workers move tasks, so under live
 * traffic the drift is approximate by the transitions made meanwhile
 * (`taskflow:counters:sync` measures it at one instant).
 */
export async function inspectTaskFlow(connection: RedisConnection): Promise<TaskFlowInspection> {
  const queues = await queueLengths(connection)
  const census = newCensus()
  const workers: string[] = []
  const heartbeats = async () => {
    let n = 0
    for await (const batch of scanKeys(connection, HEARTBEAT_KEY_PATTERN)) {
      n += sizeOf(batch)
      for (const key of batch.keys) if (workers.length < WORKERS_LISTED) workers.push(key.slice(HEARTBEAT_PREFIX.length))
    }
    return n
  }
  const states = async () => {
    for await (const _ of takeCensus(connection, census));
  }
  // Four scans side by side: each walks the whole keyspace, so in turn they would wait on each other's round trips.
  const [, workerHeartbeats, dlqTasks, celeryMeta] = await Promise.all([
    states(),
    heartbeats(),
    countKeys(connection, DLQ_TASK_KEY_PATTERN),
    countKeys(connection, CELERY_META_PATTERN),
  ])
  const keys = {tasks: census.tasks, dlqTasks, celeryMeta, workerHeartbeats}
  const counters = await readCounters(connection)
  const drift = Object.fromEntries(TASK_STATES.map((s) => [s, counters[s] - census.states[s]])) as StateCounts
  return {
    url: connection.maskedUrl,
    cluster: connection.isCluster,
    queues,
    keys,
    workers: workers.sort(),
    states: census.states,
    unknownState: census.unknownState,
    notHashes: census.notHashes,
    badNames: census.badNames,
    counters,
    drift,
  }
}

/** Length of each of the four queues, by key name. */
export async function queueLengths(connection: RedisConnection): Promise<Record<string, number>> {
  const c = connection.client
  return {
    [Queue.primary]: await c.llen(Queue.primary),
    [Queue.retry]: await c.llen(Queue.retry),
    [Queue.scheduled]: await c.zcard(Queue.scheduled),
    [Queue.dlq]: await c.llen(Queue.dlq),
  }
}

/** The inspection as printed: queues, keys, live workers, the State / Counter / Actual / Drift table. */
export function inspectionLines(inspection: TaskFlowInspection, masters = 1): string[] {
  const {keys, drift} = inspection
  const more = keys.workerHeartbeats > inspection.workers.length ? ', ...' : ''
  const workers = inspection.workers.length ? ` (${inspection.workers.join(', ')}${more})` : ''
  const off = TASK_STATES.filter((s) => drift[s] !== 0)
  return [
    `Redis URL: ${inspection.url}${inspection.cluster ? ` (cluster, ${masters} masters)` : ''}`,
    '',
    'Queues:',
    ...table(
      ['Queue', 'Length'],
      Object.entries(inspection.queues).map(([k, v]) => [k, count(v)]),
    ).map((l) => `  ${l}`),
    '',
    'Keys:',
    `  task:* hashes          ${count(keys.tasks)}`,
    `  dlq:task:* hashes      ${count(keys.dlqTasks)}`,
    `  celery-task-meta-*     ${count(keys.celeryMeta)}`,
    `  live worker heartbeats ${count(keys.workerHeartbeats)}${workers}`,
    ...oddKeyLines(inspection).map((l) => `  ${l}`),
    '',
    'States (counter against the task hashes):',
    ...table(
      ['State', 'Counter', 'Actual', 'Drift'],
      TASK_STATES.map((s) => [s, count(inspection.counters[s]), count(inspection.states[s]), signed(drift[s])]),
    ).map((l) => `  ${l}`),
    ...(inspection.unknownState ? [`  (${count(inspection.unknownState)} hashes have no valid state: see taskflow:defective:delete)`] : []),
    '',
    off.length ? `Counters out of sync for ${off.join(', ')}: run ops taskflow:counters:sync` : 'Counters match the task states.',
  ]
}
