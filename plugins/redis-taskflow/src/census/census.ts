import type {RedisConnection} from '../connection.js'
import {counterKey, TASK_KEY_PATTERN, TASK_STATES, TaskState} from '../keyspace.js'
import {GONE, StateBatch, StateReader, StateReading} from '../read/state-reader.js'

/** How many task hashes are in each state: six numbers, never a list of keys. */
export type StateCounts = Record<TaskState, number>

export interface Census {
  tasks: number
  states: StateCounts
  /** Hashes whose state is missing or not one of the six. */
  unknownState: number
}

export const emptyCounts = (): StateCounts => Object.fromEntries(TASK_STATES.map((s) => [s, 0])) as StateCounts

export function newCensus(): Census {
  return {tasks: 0, states: emptyCounts(), unknownState: 0}
}

/** A reading as a small code: the state's index, UNKNOWN for no valid state, ABSENT for a deleted key. */
export const UNKNOWN = TASK_STATES.length
export const ABSENT = TASK_STATES.length + 1
const STATE_CODES = new Map<string, number>(TASK_STATES.map((s, i) => [s, i]))
export const codeOf = (reading: StateReading): number => (reading === GONE ? ABSENT : (STATE_CODES.get(reading ?? '') ?? UNKNOWN))

/** Counts per code; ABSENT is kept only so a correction can take it back. */
export class Tally {
  readonly counts = new Array<number>(ABSENT + 1).fill(0)

  add(code: number, n = 1): void {
    this.counts[code] += n
  }

  census(): Census {
    const states = Object.fromEntries(TASK_STATES.map((s, i) => [s, this.counts[i]])) as StateCounts
    const tasks = this.counts.slice(0, ABSENT).reduce((a, b) => a + b, 0)
    return {tasks, states, unknownState: this.counts[UNKNOWN]}
  }
}

/**
 * The state of every task key, batch by batch, master after master: one
 * read-only SCAN-and-HGET call per step (StateReader.scan). Memory holds a
 * batch or two whatever the number of keys.
 */
export async function* readTaskStates(connection: RedisConnection): AsyncGenerator<StateBatch> {
  // No SCAN TYPE filter: it costs the server a third more per call; a task:* key that is not a hash reads as having no state.
  for (const node of connection.masters()) yield* new StateReader(node).scan(TASK_KEY_PATTERN)
}

/**
 * Counts task states in one pass (for taskflow:inspect). Under live traffic
 * the counts are those of the scan, not of one instant: see measureStates.
 * Yields the number of hashes read so far.
 */
export async function* takeCensus(connection: RedisConnection, census: Census): AsyncGenerator<number> {
  const tally = new Tally()
  for await (const {readings} of readTaskStates(connection)) {
    for (const reading of readings) tally.add(codeOf(reading))
    Object.assign(census, tally.census())
    yield census.tasks
  }
}

/** The six counters (missing counts as 0). */
export async function readCounters(connection: RedisConnection): Promise<StateCounts> {
  const values = await Promise.all(TASK_STATES.map((s) => connection.client.get(counterKey(s))))
  return Object.fromEntries(TASK_STATES.map((s, i) => [s, Number(values[i] ?? 0)])) as StateCounts
}
