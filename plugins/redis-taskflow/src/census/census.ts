import type {Redis} from 'ioredis'

import type {RedisConnection} from '../connection.js'
import {COUNTER_KEY_PATTERN, counterKey, TASK_KEY_PATTERN, TASK_STATES, TaskState} from '../keyspace.js'
import {KeyspaceWatch} from './keyspace-watch.js'
import {scanKeys} from '../read/scan.js'
import {StateLedger} from './state-ledger.js'
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
const UNKNOWN = TASK_STATES.length
const ABSENT = TASK_STATES.length + 1
const STATE_CODES = new Map<string, number>(TASK_STATES.map((s, i) => [s, i]))
const codeOf = (reading: StateReading): number => (reading === GONE ? ABSENT : (STATE_CODES.get(reading ?? '') ?? UNKNOWN))

/** Counts per code; ABSENT is kept only so a correction can take it back. */
class Tally {
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

/** Whether any counter key exists at all (counters:init vs counters:sync). */
export async function countersExist(connection: RedisConnection): Promise<boolean> {
  for await (const _ of scanKeys(connection, COUNTER_KEY_PATTERN)) return true
  return false
}

/** States and counters, and whether they are of one instant. */
export interface StateMeasure {
  census: Census
  counters: StateCounts
  /** True when census and counters were read at one instant (the drift between them is then exact). */
  exact: boolean
  /** How the instant was made, or why it could not be. */
  note: string
  /** Task keys that changed while the scan ran (re-read at the instant). */
  changedDuringScan: number
}

/** Keys re-read inside the final MULTI at most; more are first re-read in chunks, then looked at again. */
const FINAL_READ_LIMIT = 2000
const MAX_ROUNDS = 25

/**
 * Measures task states and counters at one instant, while workers keep moving
 * tasks. The application moves a task and both counters in one MULTI/EXEC, so
 * `counter - true count` only changes when something is wrong; but a scan of a
 * million hashes takes seconds. So: watch task keys with keyspace notifications
 * (enabled for the run when `configure` allows and restored after), scan and
 * remember what was counted per key (StateLedger), then re-read just the keys
 * that changed together with the counters in one MULTI/EXEC, and confirm
 * through a marker in that MULTI that no other key changed before it.
 * Where notifications cannot be used, says so: the counts are then those of
 * the scan and may be off by the transitions made while it ran.
 */
export async function measureStates(
  connection: RedisConnection,
  options: {configure: boolean; onProgress?: (scanned: number) => void; maxLedgerSlots?: number},
): Promise<StateMeasure> {
  const masters = connection.masters()
  const watches = new Map<Redis, KeyspaceWatch>()
  const unavailable: string[] = []
  const ledgers: StateLedger[] = []
  try {
    for (const node of masters) {
      const started = await KeyspaceWatch.start(node, TASK_KEY_PATTERN, options)
      if ('watch' in started) watches.set(node, started.watch)
      else unavailable.push(started.unavailable)
    }
    // DBSIZE counts every key, not just tasks: an upper bound, and O(1).
    const ledger = StateLedger.sizedFor((await Promise.all(masters.map((node) => node.dbsize()))).reduce((a, b) => a + b, 0), options.maxLedgerSlots)
    ledgers.push(ledger)
    const tally = new Tally()
    for await (const {keys, readings} of readTaskStates(connection)) {
      for (let i = 0; i < keys.length; i++) {
        const code = codeOf(readings[i])
        const previous = ledger.set(keys[i], code)
        if (previous !== undefined) tally.add(previous, -1)
        tally.add(code)
      }
      options.onProgress?.(ledger.size)
    }
    /** What the scan counted for `changed` keys out (and keys it counted twice), what they hold now in. */
    const correct = (latest: Map<string, number>) => {
      ledger.resolve(latest.keys()).forEach((n, code) => n && tally.add(code, -n))
      for (const code of latest.values()) tally.add(code)
      return tally.census()
    }
    if (unavailable.length > 0) {
      return {
        census: correct(new Map()),
        counters: await readCounters(connection),
        exact: false,
        note: `Not exact under live traffic: ${unavailable[0]}; states are those seen by the scan, so tasks moved while it ran may be miscounted.`,
        changedDuringScan: 0,
      }
    }
    let counters: StateCounts | undefined
    const latest = new Map<string, number>()
    for (const node of masters) {
      const settled = await settle(node, watches.get(node)!, !connection.isCluster)
      if (!settled.exact) {
        return {census: correct(latest), counters: await readCounters(connection), exact: false, note: settled.note, changedDuringScan: latest.size + settled.changed}
      }
      for (const [key, code] of settled.latest) latest.set(key, code)
      counters ??= settled.counters
    }
    const census = correct(latest)
    if (connection.isCluster) {
      return {
        census,
        counters: await readCounters(connection),
        exact: false,
        note: 'On a cluster the counters and the task hashes live on different nodes, so no single instant holds them all: each node was read at its own instant; a transition made in those milliseconds can be miscounted.',
        changedDuringScan: latest.size,
      }
    }
    return {census, counters: counters!, exact: true, note: `Exact: ${latest.size.toLocaleString('en-US')} task keys changed during the scan and were re-read with the counters in one MULTI/EXEC.`, changedDuringScan: latest.size}
  } finally {
    for (const watch of watches.values()) await watch.stop()
    for (const ledger of ledgers) ledger.dispose()
  }
}

/**
 * Re-reads, on one node, the keys the watch saw change, in one MULTI/EXEC with
 * the counters (the instant) and a marker PUBLISHed in it, whose arrival tells
 * which keys changed before the instant. A key that changed after the look
 * but before the instant (the notification was still on its way) is read just
 * after; if no notification for it came between the two markers, it held then
 * what it holds now, and the instant stands. Otherwise a new round, with a new
 * instant. Returns what each changed key held at the instant.
 */
async function settle(
  node: Redis,
  watch: KeyspaceWatch,
  withCounters: boolean,
): Promise<{exact: true; counters?: StateCounts; latest: Map<string, number>} | {exact: false; note: string; changed: number}> {
  const reader = new StateReader(node)
  const latest = new Map<string, number>()
  const readAtInstant = async (keys: string[], counters: boolean) => {
    const marker = watch.marker()
    const multi = node.multi()
    for (const key of keys) multi.hget(key, 'state').exists(key)
    if (counters) for (const state of TASK_STATES) multi.get(counterKey(state))
    multi.publish(watch.channel, marker.id)
    const replies = (await multi.exec()) ?? []
    const codes = new Map<string, number>()
    keys.forEach((key, j) => {
      const [stateError, state] = replies[2 * j]
      const [, exists] = replies[2 * j + 1]
      codes.set(key, codeOf(!stateError && state !== null ? String(state) : exists ? null : GONE))
    })
    const counterReplies = replies.slice(2 * keys.length, 2 * keys.length + (counters ? TASK_STATES.length : 0))
    const values = counters ? (Object.fromEntries(TASK_STATES.map((s, i) => [s, Number(counterReplies[i][1] ?? 0)])) as StateCounts) : undefined
    return {codes, counters: values, seen: await marker.reached}
  }
  for (let round = 1; round <= MAX_ROUNDS; round++) {
    if (watch.failure) return {exact: false, note: `Not exact: ${watch.failure}.`, changed: latest.size}
    const stale = [...watch.takeStale()]
    if (stale.length > FINAL_READ_LIMIT) {
      // Too many to read at one instant without stalling the server: read them now (in short script calls), look again.
      const readings = await reader.read(stale)
      stale.forEach((key, j) => latest.set(key, codeOf(readings[j])))
      continue
    }
    const instant = await readAtInstant(stale, withCounters)
    for (const [key, code] of instant.codes) latest.set(key, code)
    const missed = [...instant.seen.stale].filter((key) => !instant.codes.has(key))
    if (missed.length === 0) return {exact: true, counters: instant.counters, latest}
    if (missed.length > FINAL_READ_LIMIT) continue
    const after = await readAtInstant(missed, false)
    if (missed.some((key) => after.seen.sincePreviousMarker.has(key))) continue // changed again since the instant: a new round
    for (const [key, code] of after.codes) latest.set(key, code)
    return {exact: true, counters: instant.counters, latest}
  }
  return {exact: false, note: `Not exact: task keys kept changing faster than ${MAX_ROUNDS} re-reads could settle.`, changed: latest.size}
}
