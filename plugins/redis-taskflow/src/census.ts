import type {RedisConnection} from './connection.js'
import {COUNTER_KEY_PATTERN, counterKey, TASK_KEY_PATTERN, TASK_STATES, TaskState, isTaskState} from './keyspace.js'
import {scanKeys} from './scan.js'

/** How many task hashes are in each state: six numbers, never a list of keys. */
export type StateCounts = Record<TaskState, number>

export interface Census {
  tasks: number
  states: StateCounts
  /** Hashes whose state is missing or not one of the six. */
  unknownState: number
}

export const emptyCounts = (): StateCounts => Object.fromEntries(TASK_STATES.map((s) => [s, 0])) as StateCounts

/**
 * Counts task states with SCAN COUNT 1000 and one pipelined HGET per key per
 * batch, per master. Yields progress after each batch.
 */
export async function* takeCensus(connection: RedisConnection, census: Census): AsyncGenerator<number> {
  for await (const batch of scanKeys(connection, TASK_KEY_PATTERN, {type: 'hash'})) {
    const pipeline = batch.node.pipeline()
    for (const key of batch.keys) pipeline.hget(key, 'state')
    const replies = (await pipeline.exec()) ?? []
    for (const [error, state] of replies) {
      if (error) throw error
      census.tasks++
      if (isTaskState(state as string | null)) census.states[state as TaskState]++
      else census.unknownState++
    }
    yield census.tasks
  }
}

export function newCensus(): Census {
  return {tasks: 0, states: emptyCounts(), unknownState: 0}
}

/** The six state counters (missing counts as 0). */
export async function readCounters(connection: RedisConnection): Promise<StateCounts> {
  const values = await Promise.all(TASK_STATES.map((s) => connection.client.get(counterKey(s))))
  return Object.fromEntries(TASK_STATES.map((s, i) => [s, Number(values[i] ?? 0)])) as StateCounts
}

/** Whether any counter key exists at all (counters:init vs counters:sync). */
export async function countersExist(connection: RedisConnection): Promise<boolean> {
  for await (const _ of scanKeys(connection, COUNTER_KEY_PATTERN)) return true
  return false
}
