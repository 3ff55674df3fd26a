import {count, table} from 'ops-cli/base'

import {Census, readCounters, StateCounts} from '../census/census.js'
import type {RedisConnection} from '../connection.js'
import {counterKey, TASK_STATES, TaskState} from '../keyspace.js'

export interface CounterChange {
  state: TaskState
  old: number
  new: number
  change: number
}

/** fix_counter_sync.py's State / Old / New / Change rows: counters and states of one measurement. */
export function counterChanges(census: Census, counters: StateCounts): CounterChange[] {
  return TASK_STATES.map((state) => ({
    state,
    old: counters[state],
    new: census.states[state],
    change: census.states[state] - counters[state],
  }))
}

export function changeTable(changes: CounterChange[]): string[] {
  return table(
    ['State', 'Old', 'New', 'Change'],
    changes.map((c) => [c.state, c.old, c.new, signed(c.change)]),
  )
}

/**
 * Applies the differences with INCRBY, never SET (in one MULTI/EXEC, or one
 * INCRBY per counter on a cluster): a worker moving a task between the census
 * and now changes a counter by a relative amount too, and both changes survive
 * (a SET would lose the worker's).
 */
export async function applyChanges(connection: RedisConnection, changes: CounterChange[]): Promise<number> {
  const off = changes.filter((c) => c.change !== 0)
  if (off.length === 0) return 0
  if (connection.isCluster) {
    // Counter keys live in different slots: one INCRBY each (each is atomic on its own).
    for (const c of off) await connection.client.incrby(counterKey(c.state), c.change)
  } else {
    const multi = connection.client.multi()
    for (const c of off) multi.incrby(counterKey(c.state), c.change)
    const replies = await multi.exec()
    for (const [error] of replies ?? []) if (error) throw error
  }
  return off.length
}

export {readCounters}

/** +1,234 / -5 / 0, as the change and drift columns show it. */
export function signed(n: number): string {
  return n > 0 ? `+${count(n)}` : n < 0 ? `-${count(-n)}` : '0'
}
