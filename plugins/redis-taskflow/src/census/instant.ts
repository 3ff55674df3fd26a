import {createHash} from 'node:crypto'

import type {Redis} from 'ioredis'
import {count} from 'ops-cli/base'

import {masterOf, RedisConnection} from '../connection.js'
import {counterKey, TASK_KEY_PREFIX, TASK_STATES, TaskState} from '../keyspace.js'
import {evalCached, SCRIPTS_UNAVAILABLE} from '../read/hash-scan.js'
import {GONE, isBadName, NO_STATE, NOT_HASH, StateReader} from '../read/state-reader.js'
import {ABSENT, Census, codeOf, emptyCounts, readCounters, readTaskStates, StateCounts, Tally} from './census.js'
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
 * With the fence an instant settles unless another client changed a task key
 * the script did not read in the script's own event-loop turn, or changed
 * again a key it must read in the next round.
 */
const MAX_ROUNDS = 400
/**
 * On a cluster: instants this far apart whose drifts must agree, and how many.
 * Under the test's writer (thousands of moves a second) an instant catches a
 * transition half applied about one time in five; three in a row caught the
 * same one-off error about once in 300 runs, and a counter was left off by one.
 * Each further instant multiplies that by the odds of one given error (a few percent).
 */
const CLUSTER_SPACING_MS = 25
const CLUSTER_AGREEING = 4

/**
 * The instant of one master, in one script (atomic, and allowed by a cluster
 * node to read keys of its own slots, as MULTI is not): the counters it holds,
 * the state of the keys given ("\0" deleted, "\1" no state, "\2" not a hash),
 * a PUBLISH of the marker that places the instant in the change stream, then
 * the fence: a SET and DEL of a key whose report closes the script's turn in
 * the stream (see ChangeStream). The last value says whether the fence was
 * written ("1"), or not: none given (a dry run writes nothing at all), or
 * refused by the server (an ACL, out of memory).
 */
const INSTANT_SCRIPT = `
local call = redis.call
local nc = tonumber(ARGV[4])
local out = {}
for i = 5, 4 + nc do out[#out + 1] = call('GET', ARGV[i]) or '0' end
for i = 5 + nc, #ARGV do
  local kind = call('TYPE', ARGV[i]).ok
  if kind == 'hash' then out[#out + 1] = call('HGET', ARGV[i], 'state') or '\\1'
  elseif kind == 'none' then out[#out + 1] = '\\0'
  else out[#out + 1] = '\\2' end
end
call('PUBLISH', ARGV[1], ARGV[2])
local fence = ARGV[3] ~= '' and redis.pcall('SET', ARGV[3], '1')
if not fence or fence.err then out[#out + 1] = '0'
else
  redis.pcall('DEL', ARGV[3])
  out[#out + 1] = '1'
end
return out`
const INSTANT_SCRIPT_SHA = createHash('sha1').update(INSTANT_SCRIPT).digest('hex')

/** One master: its change stream, the counters whose slot it serves, and its fence key. */
interface Master {
  node: Redis
  stream: ChangeStream
  counters: TaskState[]
  fence: string
}

/** One round: every master's script, and what the change streams saw around it. */
interface Instant {
  /** Per master, the keys its script read and their codes. */
  reads: Map<string, number>[]
  counters: StateCounts
  markers: string[]
  /** Per master, where the instant's turn ends in its stream. */
  ends: number[]
  /**
   * Per master, keys changed before the instant that it did not read: the next round
   * reads them, and tells their value at this instant if they did not change again.
   */
  pending: Set<string>[]
  /** Keys changed in the instant's own turn that it did not read: before or after it, nobody can say. */
  unplaced: number
}

/**
 * Measures task states and counters at one instant, while workers keep moving
 * tasks. The application moves a task and both counters in one MULTI/EXEC, so
 * `counter - true count` only changes when something is wrong; but a scan of a
 * million hashes takes seconds. So: open a change stream on every master
 * (client tracking, no server setting), scan and remember what was counted per
 * key (StateLedger), then re-read just the keys that changed together with the
 * counters in one script per master, and accept that instant once the stream
 * places every change around it (see `instantRound` and `settles`).
 *
 * On a cluster every master has its own instant (the scripts run side by
 * side), and the counters sit on other masters than their tasks, where the
 * application cannot move a task and its counters in one transaction. There
 * instants are taken CLUSTER_SPACING_MS apart until CLUSTER_AGREEING in a row
 * give every state the same drift: a transition half applied at one of them
 * would have changed it.
 */
export async function measureStates(
  connection: RedisConnection,
  options: {onProgress?: (scanned: number) => void; maxLedgerSlots?: number; writeFence?: boolean} = {},
): Promise<StateMeasure> {
  const nodes = connection.masters()
  const masters: Master[] = []
  const ledgers: StateLedger[] = []
  const serverSettingsChanged: string[] = []
  // Also with one master: a cluster refuses the application's MULTI across slots, so its transitions are not atomic there either.
  const {isCluster} = connection
  try {
    let unavailable: string | undefined
    for (const node of nodes) {
      const opened = await ChangeStream.open(node, [TASK_KEY_PREFIX])
      if ('unavailable' in opened) {
        unavailable ??= opened.unavailable
        continue
      }
      const counters = TASK_STATES.filter((state) => !connection.isCluster || masterOf(connection, counterKey(state)) === node)
      masters.push({
        node,
        stream: opened.stream,
        counters,
        fence: options.writeFence === false ? '' : fenceKey(connection, node, opened.stream.fencePrefix),
      })
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
    /** What each changed key holds (at the instant, once one is found). */
    const latest = new Map<string, number>()
    /** Per code, how the census moved since the last instant kept (for the cluster's drift comparison). */
    const moved = new Array<number>(ABSENT + 1).fill(0)
    const remember = (key: string, code: number) => {
      const previous = latest.get(key) ?? ledger.get(key) ?? ABSENT
      moved[previous]--
      moved[code]++
      latest.set(key, code)
    }
    /** The scan's counts with what it counted for changed keys out (and keys it counted twice), what they hold now in. */
    const correct = () => {
      ledger.resolve(latest.keys()).forEach((n, code) => n && tally.add(code, -n))
      for (const code of latest.values()) tally.add(code)
      return tally.census()
    }
    const base = {serverSettingsChanged, changedDuringScan: 0}
    const notExact = async (offBy: number, note: string, counters?: StateCounts): Promise<StateMeasure> => ({
      ...base,
      census: correct(),
      counters: counters ?? (await readCounters(connection)),
      exact: false,
      offBy,
      note,
      changedDuringScan: latest.size,
    })
    if (unavailable) {
      const census = correct()
      return {
        ...base,
        census,
        counters: await readCounters(connection),
        exact: false,
        offBy: census.tasks,
        note:
          `Not exact under live traffic: ${unavailable}; the states are those seen by the scan, ` +
          'so tasks moved while it ran may be miscounted.',
      }
    }
    let candidate: Instant | undefined
    let kept: StateCounts | undefined
    let agreeing = 0
    let disagreement = 0
    let uncertain = Number.POSITIVE_INFINITY
    let why = ''
    let counters = emptyCounts()
    let exact = false
    /** Keeps `instant` (latest then holds every key's value at it); true once the measure is done. */
    const keep = (instant: Instant): boolean => {
      if (!isCluster) return true
      if (kept && !ledger.spilledToDisk) {
        const off = Math.max(...TASK_STATES.map((s, i) => Math.abs(instant.counters[s] - kept![s] - moved[i])))
        agreeing = off === 0 ? agreeing + 1 : 1
        if (off) disagreement = off
      } else agreeing = 1
      kept = instant.counters
      moved.fill(0)
      return agreeing >= CLUSTER_AGREEING
    }
    for (let r = 1; r <= MAX_ROUNDS && !exact; r++) {
      const failure = masters.map((m) => m.stream.failure).find(Boolean)
      if (failure) return notExact(Number.NaN, `Not exact: ${failure}.`)
      let round: Instant | undefined
      try {
        round = await instantRound(masters, remember)
      } catch (error) {
        if (!SCRIPTS_UNAVAILABLE.test(String(error))) throw error
        const note =
          `Not exact under live traffic: the server refuses scripts to this user (${(error as Error).message}), ` +
          'so no instant could be read; the states are those seen by the scan.'
        return notExact(latest.size, note)
      }
      if (!round) {
        why = 'more changes than one instant reads'
        candidate = undefined
        continue
      }
      counters = round.counters
      const settled = candidate !== undefined && settles(masters, candidate, round)
      // No later question reaches back before this round's marker.
      masters.forEach((m, i) => m.stream.forgetBefore(round!.markers[i]))
      if (candidate && settled) {
        candidate.pending.forEach((keys, i) => keys.forEach((key) => remember(key, round!.reads[i].get(key)!)))
        counters = candidate.counters
        if (keep(candidate)) {
          exact = true
          break
        }
        // On a cluster the next instant comes later; this round's reads still count towards it.
        for (const reads of round.reads) for (const [key, code] of reads) remember(key, code)
        candidate = undefined
        await sleep(CLUSTER_SPACING_MS)
        continue
      }
      for (const reads of round.reads) for (const [key, code] of reads) remember(key, code)
      const pending = round.pending.reduce((n, keys) => n + keys.size, 0)
      uncertain = round.unplaced + pending
      why = `${round.unplaced} keys changed in the instant's own turn, ${pending} just before it`
      candidate = round.unplaced === 0 ? round : undefined
      if (candidate && pending === 0) {
        candidate = undefined
        if (keep(round)) exact = true
        else if (isCluster) await sleep(CLUSTER_SPACING_MS)
      }
    }
    const changed = `${count(latest.size)} task keys changed during the scan and were re-read`
    if (!exact) {
      if (isCluster && ledger.spilledToDisk) {
        const note =
          'Not exact: on this cluster the counters sit on other masters than their tasks, and the instants could not be ' +
          'compared (what the scan counted per key went to disk: more keys than memory was given for); ' +
          'a transition half applied at the instant would be miscounted.'
        return notExact(Number.NaN, note, counters)
      }
      if (isCluster && kept) {
        const offBy = Math.max(disagreement, 1)
        const note =
          'Not exact: on this cluster the counters sit on other masters than their tasks, ' +
          `and no ${CLUSTER_AGREEING} instants in a row agreed on every state's drift (tasks moved half applied across masters); ` +
          `each state's figure may be off by up to ${count(offBy)}.`
        return notExact(offBy, note, counters)
      }
      const offBy = Number.isFinite(uncertain) ? uncertain : latest.size
      const note =
        `Not exact: task keys kept changing faster than ${MAX_ROUNDS} instants could settle (${why}); ` +
        `each state's figure may be off by up to ${count(offBy)}.`
      return notExact(offBy, note, counters)
    }
    const how = isCluster
      ? 'with the counters in one script per master, each master at its own instant; the counters sit on other masters ' +
        'than their tasks, where the application moves a task in several commands, ' +
        `so ops took instants ${CLUSTER_SPACING_MS} ms apart until ${CLUSTER_AGREEING} in a row gave every state the same drift ` +
        '(a transition left half applied for longer than that counts as drift, as it is)'
      : 'with the counters in one script (one instant)'
    return {...base, census: correct(), counters, exact: true, offBy: 0, note: `Exact: ${changed} ${how}.`, changedDuringScan: latest.size}
  } finally {
    for (const master of masters) master.stream.close()
    for (const ledger of ledgers) ledger.dispose()
  }
}

/**
 * The instant `candidate` stands once `next` (the round after it) read every
 * key that changed just before it and none of them was reported again from
 * the candidate's marker to the end of next's turn: the value next read is
 * then the value each held at the candidate.
 */
function settles(masters: Master[], candidate: Instant, next: Instant): boolean {
  return masters.every((m, i) => {
    if (candidate.pending[i].size === 0) return true
    const since = m.stream.reportedSince(candidate.markers[i], next.ends[i])
    return [...candidate.pending[i]].every((key) => next.reads[i].has(key) && !since.has(key))
  })
}

/**
 * One instant per master, side by side: the keys each stream reported since
 * the last round are re-read with that master's counters in INSTANT_SCRIPT.
 * Returns nothing when too many keys changed to read at one instant: they are
 * then read in chunks (and given to `remember`), and the next round looks again.
 */
async function instantRound(masters: Master[], remember: (key: string, code: number) => void): Promise<Instant | undefined> {
  // A name that is not UTF-8 cannot be sent back: such a key keeps what the scan counted for it (not a task).
  const stale = masters.map((m) => new Set([...m.stream.take(TASK_KEY_PREFIX)].filter((key) => !isBadName(key))))
  if (stale.some((keys) => keys.size > INSTANT_READ_LIMIT)) {
    // Too many to read at one instant without stalling the server: read them now (in short script calls), look again.
    await Promise.all(
      masters.map(async (m, i) => {
        const keys = [...stale[i]]
        const readings = await new StateReader(m.node).read(keys)
        keys.forEach((key, j) => remember(key, codeOf(readings[j])))
      }),
    )
    return undefined
  }
  const markers = masters.map((m) => m.stream.marker())
  const counters = emptyCounts()
  const results = await Promise.all(
    masters.map(async (m, i) => {
      const keys = [...stale[i]]
      const args = [m.stream.channel, markers[i], m.fence, m.counters.length, ...m.counters.map((s) => counterKey(s)), ...keys]
      const values = (await evalCached(m.node, INSTANT_SCRIPT, INSTANT_SCRIPT_SHA, args)) as string[]
      const fenced = values[values.length - 1] === '1'
      await m.stream.reached(markers[i], fenced)
      let closing: string | undefined
      if (!fenced) {
        closing = m.stream.marker()
        await m.node.publish(m.stream.channel, closing)
        await m.stream.reached(closing, false)
      }
      m.counters.forEach((state, j) => (counters[state] = Number(values[j])))
      const reads = new Map<string, number>()
      keys.forEach((key, j) => {
        const value = values[m.counters.length + j]
        reads.set(key, codeOf(value === '\u0000' ? GONE : value === '\u0001' ? NO_STATE : value === '\u0002' ? NOT_HASH : value))
      })
      const window = m.stream.window(markers[i], fenced, closing)
      const unread = (keys: Set<string>) =>
        new Set([...keys].filter((key) => key.startsWith(TASK_KEY_PREFIX) && !reads.has(key) && !isBadName(key)))
      return {reads, end: window.end, pending: unread(window.beforeInstant), unplaced: unread(window.instantTurn).size}
    }),
  )
  return {
    reads: results.map((r) => r.reads),
    counters,
    markers,
    ends: results.map((r) => r.end),
    pending: results.map((r) => r.pending),
    unplaced: results.reduce((n, r) => n + r.unplaced, 0),
  }
}

/** A fence key under `prefix` that `node` serves (on a cluster, a hash tag of one of its slots). */
function fenceKey(connection: RedisConnection, node: Redis, prefix: string): string {
  if (!connection.isCluster) return `${prefix}fence`
  for (let i = 0; i < 100_000; i++) {
    const key = `${prefix}{fence-${i}}`
    if (masterOf(connection, key) === node) return key
  }
  throw new Error('No hash tag found for the census fence on a master of the cluster.')
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
