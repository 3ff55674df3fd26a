/**
 * Loads AsyncTaskFlow-shaped data fast, for the taskflow benchmark: the
 * fixture's task hashes (every field the application writes), queue entries
 * the state implies, counters with a known drift, and Celery result keys —
 * written as RESP through `redis-cli --pipe`, which loads a million tasks in
 * about 15 s on 2 cores where a client library takes minutes.
 *
 * Each state's HSET is built once from the fixture's taskHash() and rendered
 * to RESP with a placeholder id; a task is then the template with its uuid
 * spliced in (a uuid4 is always 36 bytes, so the RESP lengths do not change).
 * All tasks of one load therefore share their timestamps, which no benchmarked
 * command looks at.
 */
import {spawn} from 'node:child_process'
import {randomUUID} from 'node:crypto'
import {once} from 'node:events'

import calculateSlot from 'cluster-key-slot'

import {taskHash} from '../plugins/redis-taskflow/test/fixtures.js'
import {counterKey, Queue, TASK_STATES, taskKey, TaskState} from '../plugins/redis-taskflow/src/keyspace.js'

/** A production-like mix: mostly finished work, some in flight, a tail of failures. */
const MIX: [TaskState, number][] = [
  ['COMPLETED', 0.7],
  ['PENDING', 0.1],
  ['ACTIVE', 0.05],
  ['FAILED', 0.08],
  ['SCHEDULED', 0.04],
  ['DLQ', 0.03],
]

/** The state of task i, by i % 100 (exact shares for every multiple of 100 tasks). */
const STATE_OF: TaskState[] = Array.from({length: 100}, (_, n) => {
  const x = n / 100
  let acc = 0
  for (const [state, share] of MIX) if (x < (acc += share)) return state
  return 'COMPLETED'
})

export function resp(args: (string | number)[]): string {
  let out = `*${args.length}\r\n`
  for (const arg of args) {
    const s = String(arg)
    out += `$${Buffer.byteLength(s)}\r\n${s}\r\n`
  }
  return out
}

/** 36 bytes, like a uuid4; `~` appears nowhere else in the data (and JSON leaves it alone). */
const ID = '~'.repeat(36)

/**
 * A RESP command rendered once with the placeholder id: `render(id)` splices in
 * the uuid (and its first 8 characters, which the fixture's content field uses).
 */
function template(args: (string | number)[]): (id: string) => string {
  const parts = resp(args).split(/(~+)/)
  for (let i = 1; i < parts.length; i += 2)
    if (parts[i].length !== 36 && parts[i].length !== 8) throw new Error(`unexpected placeholder run: ${parts[i]}`)
  return (id: string) => {
    let out = parts[0]
    for (let i = 1; i < parts.length; i += 2) out += (parts[i].length === 36 ? id : id.slice(0, 8)) + parts[i + 1]
    return out
  }
}

/** A `redis-cli --pipe` child fed RESP text, honouring backpressure. */
function openPipe(url: string): {write(text: string): Promise<void>; end(): Promise<void>} {
  const {hostname, port, pathname} = new URL(url)
  const db = pathname.slice(1) || '0'
  const child = spawn('redis-cli', ['-h', hostname, '-p', port || '6379', ...(db === '0' ? [] : ['-n', db]), '--pipe'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  let output = ''
  child.stdout.on('data', (d) => (output += d))
  let chunk = ''
  return {
    async write(text) {
      chunk += text
      if (chunk.length > 1 << 20) {
        if (!child.stdin.write(chunk)) await once(child.stdin, 'drain')
        chunk = ''
      }
    },
    async end() {
      child.stdin.end(chunk)
      const [code] = await once(child, 'exit')
      if (code !== 0 || !/errors: 0/.test(output)) throw new Error(`redis-cli --pipe failed (${code}): ${output}`)
    },
  }
}

/** Streams RESP text into `redis-cli --pipe`. */
async function pipeInto(url: string, chunks: () => Generator<string>): Promise<void> {
  const pipe = openPipe(url)
  for (const text of chunks()) await pipe.write(text)
  await pipe.end()
}

export interface LoadedTaskFlow {
  /** The true number of tasks in each state. */
  states: Record<TaskState, number>
  /** The counters as written: off by a little, as after lost updates. */
  counters: Record<TaskState, number>
}

/** Counters off by a little (+17 / -3 alternately), so that counters:sync has work to do. */
export function driftedCounters(states: Record<TaskState, number>): Record<TaskState, number> {
  return Object.fromEntries(TASK_STATES.map((s, i) => [s, states[s] + (i % 2 === 0 ? 17 : -3)])) as Record<TaskState, number>
}

/** Overwrites the six counters (the bench's own setup, before any ops run). */
export async function writeCounters(url: string, counters: Record<TaskState, number>): Promise<void> {
  await pipeInto(url, function* () {
    for (const state of TASK_STATES) yield resp(['SET', counterKey(state), counters[state]])
  })
}

/** `tasks` task hashes with their queue entries (ids pushed 1,000 per command) and drifted counters. */
export async function loadTasks(url: string, tasks: number): Promise<LoadedTaskFlow> {
  const states = Object.fromEntries(TASK_STATES.map((s) => [s, 0])) as Record<TaskState, number>
  const hset = Object.fromEntries(
    TASK_STATES.map((state) => [state, template(['HSET', taskKey(ID), ...Object.entries(taskHash({task_id: ID, state})).flat()])]),
  ) as Record<TaskState, (id: string) => string>
  const retryAt = Math.floor(Date.now() / 1000) + 3600
  await pipeInto(url, function* () {
    const primary: string[] = []
    const scheduled: (string | number)[] = []
    const dlq: string[] = []
    for (let i = 0; i < tasks; i++) {
      const id = randomUUID()
      const state = STATE_OF[i % 100]
      states[state]++
      yield hset[state](id)
      if (state === 'PENDING' && primary.push(id) === 1000) yield resp(['LPUSH', Queue.primary, ...primary.splice(0)])
      if (state === 'SCHEDULED' && scheduled.push(retryAt, id) === 2000) yield resp(['ZADD', Queue.scheduled, ...scheduled.splice(0)])
      if (state === 'DLQ' && dlq.push(id) === 1000) yield resp(['LPUSH', Queue.dlq, ...dlq.splice(0)])
    }
    if (primary.length > 0) yield resp(['LPUSH', Queue.primary, ...primary])
    if (scheduled.length > 0) yield resp(['ZADD', Queue.scheduled, ...scheduled])
    if (dlq.length > 0) yield resp(['LPUSH', Queue.dlq, ...dlq])
  })
  const counters = driftedCounters(states)
  await writeCounters(url, counters)
  return {states, counters}
}

/** `n` Celery result keys (`celery-task-meta-{uuid}`, a JSON result document). */
export async function loadCeleryMeta(url: string, n: number): Promise<void> {
  const set = template([
    'SET',
    `celery-task-meta-${ID}`,
    JSON.stringify({
      status: 'SUCCESS',
      result: {summary: 'done'},
      traceback: null,
      children: [],
      date_done: new Date().toISOString(),
      task_id: ID,
    }),
  ])
  await pipeInto(url, function* () {
    for (let i = 0; i < n; i++) yield set(randomUUID())
  })
}

/** A master of a cluster: its URL and whether it serves a hash slot. */
export interface ClusterMaster {
  url: string
  owns(slot: number): boolean
}

/**
 * loadTasks for a Redis Cluster: the same data, each command piped into the
 * master that serves its key's slot (one `redis-cli --pipe` per master).
 */
export async function loadTasksIntoCluster(masters: ClusterMaster[], tasks: number): Promise<LoadedTaskFlow> {
  const pipes = masters.map((m) => openPipe(m.url))
  const pipeOf = (key: string) => pipes[masters.findIndex((m) => m.owns(calculateSlot(key)))]
  const states = Object.fromEntries(TASK_STATES.map((s) => [s, 0])) as Record<TaskState, number>
  const hset = Object.fromEntries(
    TASK_STATES.map((state) => [state, template(['HSET', taskKey(ID), ...Object.entries(taskHash({task_id: ID, state})).flat()])]),
  ) as Record<TaskState, (id: string) => string>
  const retryAt = Math.floor(Date.now() / 1000) + 3600
  const queued: Record<string, (string | number)[]> = {[Queue.primary]: [], [Queue.scheduled]: [], [Queue.dlq]: []}
  const flush = async (queue: string) => {
    const items = queued[queue].splice(0)
    if (items.length > 0) await pipeOf(queue).write(resp([queue === Queue.scheduled ? 'ZADD' : 'LPUSH', queue, ...items]))
  }
  for (let i = 0; i < tasks; i++) {
    const id = randomUUID()
    const state = STATE_OF[i % 100]
    states[state]++
    await pipeOf(taskKey(id)).write(hset[state](id))
    const queue = state === 'PENDING' ? Queue.primary : state === 'SCHEDULED' ? Queue.scheduled : state === 'DLQ' ? Queue.dlq : undefined
    if (queue && queued[queue].push(...(queue === Queue.scheduled ? [retryAt, id] : [id])) >= 1000) await flush(queue)
  }
  for (const queue of Object.keys(queued)) await flush(queue)
  const counters = driftedCounters(states)
  for (const state of TASK_STATES) await pipeOf(counterKey(state)).write(resp(['SET', counterKey(state), counters[state]]))
  await Promise.all(pipes.map((p) => p.end()))
  return {states, counters}
}
