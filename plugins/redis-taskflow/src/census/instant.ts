import {createHash} from 'node:crypto'

import type {Redis} from 'ioredis'

import {masterOf, RedisConnection} from '../connection.js'
import {COUNTER_KEY_PREFIX, counterKey, TASK_KEY_PREFIX, TASK_STATES, TaskState} from '../keyspace.js'
import {evalCached, SCRIPTS_UNAVAILABLE} from '../read/hash-scan.js'
import {GONE, isBadName, NO_STATE, NOT_HASH, StateReader} from '../read/state-reader.js'
import {Census, codeOf, emptyCounts, readCounters, readTaskStates, StateCounts, Tally} from './census.js'
import {ChangeStream} from './change-stream.js'
import {StateLedger} from './state-ledger.js'

/** States and counters, and whether they are of one instant. */
export interface StateMeasure {
  census: Census
  counters: StateCounts
  /** True when census and counters were read at one instant (the drift between them is then exact). */
  exact: boolean
  /** At most how far each state's drift may be off when not exact (task or counter keys whose change could not be placed). */
  offBy: number
  /** How the instant was made, or why it could not be. */
  note: string
  /** Task keys that changed while the scan ran (re-read at the instant). */
  changedDuringScan: number
  /** Server settings ops changed for the measure: none, the change stream lives on ops' own connection. */
  serverSettingsChanged: string[]
}

/** Keys re-read inside one instant's script at most; more are first re-read in chunks, then looked at again. */
const INSTANT_READ_LIMIT = 2000
/**
 * Rounds at most before giving up on an instant; each is a few milliseconds.
 * A round settles only when no other client changed a task key between the
 * take and the script, nor in the script's own event-loop turn; under a busy
 * writer (the tests' two loops) 60 rounds ran out in 4 of 8 runs of
 * live-counters.test.ts. 400 rounds stay within about a second.
 */
const MAX_ROUNDS = 400

/**
 * The instant of one master, in one script (atomic, and allowed by a cluster
 * node to read keys of its own slots, as MULTI is not): the counters it holds,
 * the state of the keys given ("\0" deleted, "\1" no state, "\2" not a hash), then
 * a PUBLISH of the marker that places the instant in the change stream.
 */
const INSTANT_SCRIPT = `
local call = redis.call
local nc = tonumber(ARGV[3])
local out = {}
for i = 4, 3 + nc do out[#out + 1] = call('GET', ARGV[i]) or '0' end
for i = 4 + nc, #ARGV do
  local kind = call('TYPE', ARGV[i]).ok
  if kind == 'hash' then out[#out + 1] = call('HGET', ARGV[i], 'state') or '\\1'
  elseif kind == 'none' then out[#out + 1] = '\\0'
  else out[#out + 1] = '\\2' end
end
call('PUBLISH', ARGV[1], ARGV[2])
return out`
const INSTANT_SCRIPT_SHA = createHash('sha1').update(INSTANT_SCRIPT).digest('hex')

/** One master: its change stream, and the counters whose slot it serves. */
interface Master {
  node: Redis
  stream: ChangeStream
  counters: TaskState[]
}

/** Where one round of instants left each key, and the keys whose change it could not place. */
interface Round {
  uncertain: number
  counters: StateCounts
  why: string
}

/**
 * Measures task states and counters at one instant, while workers keep moving
 * tasks. The application moves a task and both counters in one MULTI/EXEC, so
 * `counter - true count` only changes when something is wrong; but a scan of a
 * million hashes takes seconds. So: open a change stream on every master
 * (client tracking, no server setting), scan and remember what was counted per
 * key (StateLedger), then re-read just the keys that changed together with the
 * counters in one script per master, and accept that instant when the stream
 * shows no change it cannot place before or after it. On a cluster every
 * master has its own instant (the scripts run side by side); they count as
 * one only when no tracked key changed between them.
 */
export async function measureStates(
  connection: RedisConnection,
  options: {onProgress?: (scanned: number) => void; maxLedgerSlots?: number} = {},
): Promise<StateMeasure> {
  const nodes = connection.masters()
  const masters: Master[] = []
  const ledgers: StateLedger[] = []
  const serverSettingsChanged: string[] = []
  try {
    let unavailable: string | undefined
    for (const node of nodes) {
      // Counters need watching only where they sit on other masters than their tasks.
      const opened = await ChangeStream.open(node, connection.isCluster ? [TASK_KEY_PREFIX, COUNTER_KEY_PREFIX] : [TASK_KEY_PREFIX])
      if ('unavailable' in opened) {
        unavailable ??= opened.unavailable
        continue
      }
      const counters = TASK_STATES.filter((state) => !connection.isCluster || masterOf(connection, counterKey(state)) === node)
      masters.push({node, stream: opened.stream, counters})
    }
    // DBSIZE counts every key, not just tasks: an upper bound, and O(1).
    const ledger = StateLedger.sizedFor(
      (await Promise.all(nodes.map((node) => node.dbsize()))).reduce((a, b) => a + b, 0),
      options.maxLedgerSlots,
    )
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
    const latest = new Map<string, number>()
    /** The scan's counts with what it counted for changed keys out (and keys it counted twice), what they hold now in. */
    const correct = () => {
      ledger.resolve(latest.keys()).forEach((n, code) => n && tally.add(code, -n))
      for (const code of latest.values()) tally.add(code)
      return tally.census()
    }
    const base = {serverSettingsChanged, changedDuringScan: 0}
    if (unavailable) {
      const census = correct()
      return {
        ...base,
        census,
        counters: await readCounters(connection),
        exact: false,
        offBy: census.tasks,
        note: `Not exact under live traffic: ${unavailable}; the states are those seen by the scan, so tasks moved while it ran may be miscounted.`,
      }
    }
    let round: Round = {uncertain: 0, counters: emptyCounts(), why: ''}
    for (let r = 1; r <= MAX_ROUNDS; r++) {
      const failure = masters.map((m) => m.stream.failure).find(Boolean)
      if (failure) {
        return {
          ...base,
          census: correct(),
          counters: await readCounters(connection),
          exact: false,
          offBy: Number.NaN,
          note: `Not exact: ${failure}.`,
          changedDuringScan: latest.size,
        }
      }
      try {
        round = await instantRound(masters, latest, connection.isCluster)
      } catch (error) {
        if (!SCRIPTS_UNAVAILABLE.test(String(error))) throw error
        const census = correct()
        const note = `Not exact under live traffic: the server refuses scripts to this user (${(error as Error).message}), so no instant could be read; the states are those seen by the scan.`
        return {
          ...base,
          census,
          counters: await readCounters(connection),
          exact: false,
          offBy: latest.size,
          note,
          changedDuringScan: latest.size,
        }
      }
      if (round.uncertain === 0) break
    }
    const census = correct()
    const changed = `${latest.size.toLocaleString('en-US')} task keys changed during the scan and were re-read`
    if (round.uncertain > 0) {
      return {
        ...base,
        census,
        counters: round.counters,
        exact: false,
        offBy: round.uncertain,
        note: `Not exact: task keys kept changing faster than ${MAX_ROUNDS} instants could settle (${round.why}); each state's figure may be off by up to ${round.uncertain.toLocaleString('en-US')}.`,
        changedDuringScan: latest.size,
      }
    }
    const how = connection.isCluster
      ? `with the counters in one script per master, each master at its own instant; no task or counter key changed between those instants, so they count as one (a transition the application itself applies across masters in several steps is not seen)`
      : 'with the counters in one script (one instant)'
    return {
      ...base,
      census,
      counters: round.counters,
      exact: true,
      offBy: 0,
      note: `Exact: ${changed} ${how}.`,
      changedDuringScan: latest.size,
    }
  } finally {
    for (const master of masters) master.stream.close()
    for (const ledger of ledgers) ledger.dispose()
  }
}

/**
 * One instant per master, side by side: the keys each stream reported since
 * the last round are re-read with that master's counters in INSTANT_SCRIPT,
 * then a closing marker is published on every master. Uncertain are the keys
 * the instant did not read but that changed before it (reported before its
 * marker, or in the report of its own event-loop turn); on a cluster also
 * every tracked key that changed after a master's instant and before the last.
 */
async function instantRound(masters: Master[], latest: Map<string, number>, isCluster: boolean): Promise<Round> {
  // A name that is not UTF-8 cannot be sent back: such a key keeps what the scan counted for it (not a task).
  const stale = masters.map((m) => new Set([...m.stream.take(TASK_KEY_PREFIX)].filter((key) => !isBadName(key))))
  if (stale.some((keys) => keys.size > INSTANT_READ_LIMIT)) {
    // Too many to read at one instant without stalling the server: read them now (in short script calls), look again.
    await Promise.all(
      masters.map(async (m, i) => {
        const keys = [...stale[i]]
        const readings = await new StateReader(m.node).read(keys)
        keys.forEach((key, j) => latest.set(key, codeOf(readings[j])))
      }),
    )
    return {uncertain: Number.POSITIVE_INFINITY, counters: emptyCounts(), why: 'more changes than one instant reads'}
  }
  const markers = masters.map((m) => m.stream.marker())
  const replies = await Promise.all(
    masters.map(async (m, i) => {
      const keys = [...stale[i]]
      const args = [m.stream.channel, markers[i].id, m.counters.length, ...m.counters.map((s) => counterKey(s)), ...keys]
      const values = (await evalCached(m.node, INSTANT_SCRIPT, INSTANT_SCRIPT_SHA, args)) as string[]
      await markers[i].reached
      return {keys, values}
    }),
  )
  const closing = masters.map((m) => m.stream.marker())
  await Promise.all(masters.map((m, i) => m.node.publish(m.stream.channel, closing[i].id)))
  await Promise.all(closing.map((c) => c.reached))
  const counters = emptyCounts()
  let uncertain = 0
  masters.forEach((m, i) => {
    const {keys, values} = replies[i]
    m.counters.forEach((state, j) => (counters[state] = Number(values[j])))
    keys.forEach((key, j) => {
      const value = values[m.counters.length + j]
      latest.set(key, codeOf(value === '\u0000' ? GONE : value === '\u0001' ? NO_STATE : value === '\u0002' ? NOT_HASH : value))
    })
    const window = m.stream.window(markers[i].id, closing[i].id)
    const read = stale[i]
    const unplaced = (keys: Set<string>) =>
      [...keys].filter((key) => key.startsWith(TASK_KEY_PREFIX) && !read.has(key) && !isBadName(key)).length
    uncertain += unplaced(window.beforeInstant) + unplaced(window.instantTurn)
    if (isCluster && masters.length > 1) uncertain += window.afterInstant.size
  })
  return {uncertain, counters, why: `${uncertain} keys changed around the last one`}
}
