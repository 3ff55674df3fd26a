import {count} from 'ops-cli/base'

import type {RedisConnection} from '../connection.js'
import {counterKey, TASK_KEY_PATTERN, TASK_STATES, TaskState} from '../keyspace.js'
import {mergeConcurrently} from '../read/scan.js'
import {BAD_NAME, GONE, NOT_HASH, StateBatch, StateReader, StateReading} from '../read/state-reader.js'

/** How many task hashes are in each state: six numbers, never a list of keys. */
export type StateCounts = Record<TaskState, number>

export interface Census {
  tasks: number
  states: StateCounts
  /** Hashes whose state is missing or not one of the six. */
  unknownState: number
  /** task:* keys of another type than hash (a string, a list...): not tasks. */
  notHashes: number
  /** task:* keys whose name is not UTF-8: ops counts them apart, it cannot name them back to the server. */
  badNames: number
}

export const emptyCounts = (): StateCounts => Object.fromEntries(TASK_STATES.map((s) => [s, 0])) as StateCounts

export function newCensus(): Census {
  return {tasks: 0, states: emptyCounts(), unknownState: 0, notHashes: 0, badNames: 0}
}

/** A reading as a small code: the state's index, UNKNOWN for no valid state, then the keys that are not tasks, ABSENT for a deleted key. */
export const UNKNOWN = TASK_STATES.length
const NOT_A_HASH_CODE = UNKNOWN + 1
const BAD_NAME_CODE = UNKNOWN + 2
export const ABSENT = UNKNOWN + 3
const STATE_CODES = new Map<string, number>(TASK_STATES.map((s, i) => [s, i]))
export function codeOf(reading: StateReading): number {
  if (reading === GONE) return ABSENT
  if (reading === NOT_HASH) return NOT_A_HASH_CODE
  if (reading === BAD_NAME) return BAD_NAME_CODE
  return (typeof reading === 'string' ? STATE_CODES.get(reading) : undefined) ?? UNKNOWN
}

/** Counts per code; ABSENT is kept only so a correction can take it back. */
export class Tally {
  readonly counts = new Array<number>(ABSENT + 1).fill(0)

  add(code: number, n = 1): void {
    this.counts[code] += n
  }

  census(): Census {
    const states = Object.fromEntries(TASK_STATES.map((s, i) => [s, this.counts[i]])) as StateCounts
    const tasks = this.counts.slice(0, UNKNOWN + 1).reduce((a, b) => a + b, 0)
    return {
      tasks,
      states,
      unknownState: this.counts[UNKNOWN],
      notHashes: this.counts[NOT_A_HASH_CODE],
      badNames: this.counts[BAD_NAME_CODE],
    }
  }
}

/**
 * The state of every task key, batch by batch, the masters side by side: one
 * read-only SCAN-and-HGET call per step (StateReader.scan). Memory holds a
 * batch or two whatever the number of keys.
 */
export async function* readTaskStates(connection: RedisConnection): AsyncGenerator<StateBatch> {
  // No SCAN TYPE filter: it costs the server a third more per call; a task:* key that is not a hash reads as NOT_HASH.
  const masters = connection.masters()
  if (masters.length === 1) yield* new StateReader(masters[0]).scan(TASK_KEY_PATTERN)
  else yield* mergeConcurrently(masters.map((node) => new StateReader(node).scan(TASK_KEY_PATTERN)))
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

/** The task:* keys that are not tasks, in the user's words ("3 task:* keys are not hashes"), one line each. */
export function oddKeyLines(census: Pick<Census, 'notHashes' | 'badNames'>): string[] {
  const lines: string[] = []
  const n = (k: number, one: string, many: string) => `${count(k)} ${k === 1 ? one : many}`
  if (census.notHashes)
    lines.push(
      `${n(census.notHashes, 'task:* key is not a hash', 'task:* keys are not hashes')} (strings, lists, ...): not counted as tasks`,
    )
  if (census.badNames)
    lines.push(
      `${n(census.badNames, 'task:* key name is', 'task:* key names are')} not UTF-8: ` +
        "not counted as tasks (see redis-cli --scan --pattern 'task:*')",
    )
  return lines
}

/** The six counters (missing counts as 0). */
export async function readCounters(connection: RedisConnection): Promise<StateCounts> {
  const values = await Promise.all(TASK_STATES.map((s) => connection.client.get(counterKey(s))))
  return Object.fromEntries(TASK_STATES.map((s, i) => [s, Number(values[i] ?? 0)])) as StateCounts
}
