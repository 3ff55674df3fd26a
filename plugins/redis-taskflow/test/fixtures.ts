/**
 * The one fixture builder of the redis-taskflow tests: real AsyncTaskFlow-shaped
 * data (../docs/asynctaskflow-keys.md) — `task:{uuid4}` hashes with every field the application writes,
 * ids in the queue the state implies, state counters, DLQ copies, worker
 * heartbeats and Celery result keys — plus helpers to snapshot a database and
 * to read INFO commandstats (for "dry-run writes nothing" checks).
 *
 * Works against a single node (`Redis`) or a cluster client (`Cluster`): on a
 * cluster every key is written with its own command, since the keys of one task
 * span many slots.
 */
import {randomUUID} from 'node:crypto'

import {Cluster, Redis} from 'ioredis'

import {freshRedis} from '../../../test/helpers/servers.js'
import {counterKey, dlqTaskKey, heartbeatKey, Queue, TASK_STATES, taskKey, TaskState} from '../src/keyspace.js'

export type Client = Redis | Cluster

export interface FreshRedis {
  /** The server's redis:// URL, for ops and for other connections. */
  url: string
  /** The test's own connection. */
  redis: Redis
}

/**
 * A throwaway Redis for one describe block (the harness' freshRedis): started and
 * connected before its tests, disconnected after; url and redis are filled in by that before().
 */
export function withFreshRedis(): FreshRedis {
  const server = {} as FreshRedis
  before(async () => {
    const {url} = await freshRedis()
    Object.assign(server, {url, redis: new Redis(url)})
  })
  after(() => server.redis?.disconnect())
  return server
}

/** A task hash as AsyncTaskFlow stores it; every value is a string. */
export type TaskHash = Record<string, string>

/**
 * Field overrides: a string replaces the field, `null` removes it (a missing
 * field, as the defective-task rules see it).
 */
export type TaskOverrides = Partial<Record<string, string | null>> & {state?: TaskState | string | null}

/** Which queue a task's id goes to; `'auto'` follows the state (the default). */
export type QueuePlacement = 'auto' | 'none' | 'primary' | 'retry' | 'scheduled' | 'dlq'

export interface WriteTaskOptions {
  /** Default 'auto': PENDING -> primary, SCHEDULED -> scheduled, DLQ -> dlq:tasks and dlq:task:{id}, others none. */
  queue?: QueuePlacement
  /** Also INCR the task's state counter (as the application does on creation). Default false. */
  count?: boolean
  /** Score for tasks:scheduled, Unix seconds. Default: one hour from now. */
  retryAt?: number
}

/** `datetime.utcnow().isoformat()`: naive ISO-8601 with microseconds. */
export function isoNow(offsetMs = 0): string {
  return new Date(Date.now() + offsetMs).toISOString().replace('Z', '000')
}

/** A complete task hash for `state`, with `overrides` applied (null removes a field). */
export function taskHash(overrides: TaskOverrides = {}): TaskHash {
  const id = typeof overrides.task_id === 'string' && overrides.task_id ? overrides.task_id : randomUUID()
  const state = (overrides.state === undefined ? 'PENDING' : overrides.state) ?? 'PENDING'
  const created = isoNow(-60_000)
  const updated = isoNow()
  const hash: TaskHash = {
    task_id: id,
    content: `Text to summarize for ${id.slice(0, 8)}`,
    task_type: 'summarize',
    state,
    retry_count: '0',
    max_retries: '3',
    last_error: '',
    error_type: '',
    retry_after: '',
    created_at: created,
    updated_at: updated,
    completed_at: '',
    result: '',
    error_history: '[]',
    state_history: JSON.stringify([{state: 'PENDING', timestamp: created}, ...(state === 'PENDING' ? [] : [{state, timestamp: updated}])]),
  }
  if (state === 'COMPLETED')
    Object.assign(hash, {completed_at: updated, result: '{"summary": "done"}', worker_id: 'worker-1', started_at: created})
  if (state === 'ACTIVE') Object.assign(hash, {worker_id: 'worker-1', started_at: updated})
  if (state === 'FAILED') Object.assign(hash, {last_error: 'boom', error_type: 'RuntimeError', failed_at: updated, retry_count: '1'})
  if (state === 'SCHEDULED') Object.assign(hash, {scheduled_at: updated, retry_after: isoNow(3_600_000), retry_count: '1'})
  if (state === 'DLQ') Object.assign(hash, {dlq_at: updated, retry_count: '3', last_error: 'gave up', error_type: 'MaxRetries'})
  for (const [field, value] of Object.entries(overrides)) {
    if (value === null) delete hash[field]
    else if (value !== undefined) hash[field] = value
  }
  return hash
}

function placementOf(state: string | null | undefined, queue: QueuePlacement): Exclude<QueuePlacement, 'auto'> {
  if (queue !== 'auto') return queue
  if (state === 'PENDING') return 'primary'
  if (state === 'SCHEDULED') return 'scheduled'
  if (state === 'DLQ') return 'dlq'
  return 'none'
}

/** The commands that write one task, as [command, ...args] (routable one by one on a cluster). */
function taskCommands(id: string, hash: TaskHash, options: WriteTaskOptions): (string | number)[][] {
  const commands: (string | number)[][] = [['HSET', taskKey(id), ...Object.entries(hash).flat()]]
  const placement = placementOf(hash.state, options.queue ?? 'auto')
  if (placement === 'primary') commands.push(['LPUSH', Queue.primary, id])
  if (placement === 'retry') commands.push(['LPUSH', Queue.retry, id])
  if (placement === 'scheduled') commands.push(['ZADD', Queue.scheduled, options.retryAt ?? Math.floor(Date.now() / 1000) + 3600, id])
  if (placement === 'dlq') {
    commands.push(['LPUSH', Queue.dlq, id], ['HSET', dlqTaskKey(id), ...Object.entries(hash).flat()])
  }
  if (options.count && TASK_STATES.includes(hash.state as TaskState)) commands.push(['INCR', counterKey(hash.state as TaskState)])
  return commands
}

async function send(client: Client, commands: (string | number)[][]): Promise<void> {
  if (client instanceof Cluster) {
    // A cluster pipeline must stay on one node; these keys span many slots.
    for (let i = 0; i < commands.length; i += 500) {
      await Promise.all(commands.slice(i, i + 500).map(([name, ...args]) => client.call(String(name), ...args)))
    }
    return
  }
  for (let i = 0; i < commands.length; i += 5000) {
    const pipeline = client.pipeline()
    for (const [name, ...args] of commands.slice(i, i + 5000)) pipeline.call(String(name), ...args)
    const replies = (await pipeline.exec()) ?? []
    for (const [error] of replies) if (error) throw error
  }
}

/**
 * Writes one task hash (and its queue entry, see WriteTaskOptions) and returns
 * its id. The key's id is `overrides.task_id` when that is a non-empty string,
 * else a fresh uuid4 — so `{task_id: null}` makes a hash without task_id.
 */
export async function writeTask(client: Client, overrides: TaskOverrides = {}, options: WriteTaskOptions = {}): Promise<string> {
  const [id] = await writeTasks(client, 1, overrides, options)
  return id
}

/**
 * Writes `n` tasks sharing `overrides` (each with its own id unless overrides
 * fixes task_id) in pipelines; returns their ids. `overrides` may be a function
 * of the index for mixed data.
 */
export async function writeTasks(
  client: Client,
  n: number,
  overrides: TaskOverrides | ((i: number) => TaskOverrides) = {},
  options: WriteTaskOptions = {},
): Promise<string[]> {
  const ids: string[] = []
  let commands: (string | number)[][] = []
  for (let i = 0; i < n; i++) {
    const o = typeof overrides === 'function' ? overrides(i) : overrides
    const id = typeof o.task_id === 'string' && o.task_id && o.task_id !== 'unknown_id' ? o.task_id : randomUUID()
    ids.push(id)
    commands.push(...taskCommands(id, taskHash({...o, task_id: o.task_id === undefined ? id : o.task_id}), options))
    if (commands.length >= 20_000) {
      await send(client, commands)
      commands = []
    }
  }
  await send(client, commands)
  return ids
}

/** Sets the state counters given (others untouched); values may be negative. */
export async function setCounters(client: Client, counters: Partial<Record<TaskState, number>>): Promise<void> {
  for (const [state, value] of Object.entries(counters)) await client.set(counterKey(state as TaskState), String(value))
}

/** The six counters as numbers (a missing counter reads as 0). */
export async function readCounters(client: Client): Promise<Record<TaskState, number>> {
  const out = {} as Record<TaskState, number>
  for (const state of TASK_STATES) out[state] = Number((await client.get(counterKey(state))) ?? 0)
  return out
}

/** Counters equal to the given true counts (as a correctly running application keeps them). */
export async function setCountersToMatch(client: Client, counts: Partial<Record<TaskState, number>>): Promise<void> {
  const full = Object.fromEntries(TASK_STATES.map((s) => [s, counts[s] ?? 0])) as Record<TaskState, number>
  await setCounters(client, full)
}

/** `celery-task-meta-{uuid}` string keys holding a Celery result document. */
export async function writeCeleryMeta(client: Client, n: number): Promise<void> {
  const commands: (string | number)[][] = []
  for (let i = 0; i < n; i++) {
    const id = randomUUID()
    commands.push(['SET', `celery-task-meta-${id}`, JSON.stringify({status: 'SUCCESS', result: null, task_id: id, children: []})])
  }
  await send(client, commands)
}

/** A live worker heartbeat (expires after 90 s, as the workers write it). */
export async function writeHeartbeat(client: Client, workerId: string): Promise<void> {
  await client.set(heartbeatKey(workerId), isoNow(), 'EX', 90)
}

/** Keys no task-flow command may touch: a string, a hash, a list and a `taskish` near-miss. */
export async function writeUnrelatedKeys(client: Client): Promise<string[]> {
  const keys = ['app:config', 'session:abc', 'jobs:queue', 'taskboard:1', 'celery', 'metrics:requests']
  await client.set('app:config', '{"debug": false}')
  await client.hset('session:abc', {user: '42'})
  await client.rpush('jobs:queue', 'a', 'b')
  await client.set('taskboard:1', 'x')
  await client.set('celery', 'y')
  await client.set('metrics:requests', '7')
  return keys
}

/**
 * Every key with its type and a canonical value: for "left byte-for-byte
 * unchanged" comparisons. Single node, or every master of a cluster. Skips TTLs.
 */
export async function snapshot(client: Client, pattern = '*'): Promise<Record<string, unknown>> {
  const nodes = client instanceof Cluster ? client.nodes('master') : [client]
  const out: Record<string, unknown> = {}
  for (const node of nodes) {
    let cursor = '0'
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      for (const key of keys) {
        const type = await node.type(key)
        if (type === 'string') out[key] = await node.get(key)
        else if (type === 'hash') out[key] = await node.hgetall(key)
        else if (type === 'list') out[key] = await node.lrange(key, 0, -1)
        else if (type === 'zset') out[key] = await node.zrange(key, 0, -1, 'WITHSCORES')
        else if (type === 'set') out[key] = (await node.smembers(key)).sort()
        else out[key] = type
      }
    } while (cursor !== '0')
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a.localeCompare(b)))
}

/** INFO commandstats as {command: calls}, summed over every master of a cluster. */
export async function commandCalls(client: Client): Promise<Record<string, number>> {
  const nodes = client instanceof Cluster ? client.nodes('master') : [client]
  const calls: Record<string, number> = {}
  for (const node of nodes) {
    const info = await node.info('commandstats')
    for (const match of info.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[match[1]] = (calls[match[1]] ?? 0) + Number(match[2])
    // The server's own count of data changes: it counts writes inside scripts and MULTI too, which command names cannot tell.
    calls[DATA_CHANGES] = (calls[DATA_CHANGES] ?? 0) + Number(/rdb_changes_since_last_save:(\d+)/.exec(await node.info('persistence'))?.[1])
  }
  return calls
}

/** The pseudo-command under which commandCalls() reports the server's count of data changes. */
export const DATA_CHANGES = 'data changes'

/** Commands that change data or settings (and any data change at all); none may run during a dry run or an inspection. */
export const WRITE_COMMANDS = [
  'del',
  'unlink',
  'hdel',
  'hset',
  'hmset',
  'lrem',
  'lpush',
  'rpush',
  'lpop',
  'rpop',
  'zrem',
  'zadd',
  'set',
  'setex',
  'mset',
  'incr',
  'incrby',
  'decr',
  'decrby',
  'flushdb',
  'flushall',
  'expire',
  'rename',
  'fcall',
  'exec',
  'config|set',
  DATA_CHANGES,
]

/**
 * Write commands that ran between two commandCalls() readings (only those with
 * a changed count), e.g. `expect(writesBetween(before, after)).to.deep.equal({})`.
 */
export function writesBetween(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const command of WRITE_COMMANDS) {
    const delta = (after[command] ?? 0) - (before[command] ?? 0)
    if (delta > 0) out[command] = delta
  }
  return out
}

/** Connects a test client (single node) to `url`; the caller quits it. */
export async function connectTestClient(url: string): Promise<Redis> {
  const client = new Redis(url, {lazyConnect: true, maxRetriesPerRequest: 1})
  await client.connect()
  return client
}

/** Connects a cluster client through one seed node; the caller quits it. */
export async function connectTestCluster(nodes: {host: string; port: number}[]): Promise<Cluster> {
  const client = new Cluster(nodes, {lazyConnect: true})
  await client.connect()
  return client
}

/** The masters of a cluster client, or the single node itself. */
export function mastersOf(client: Client): Redis[] {
  return client instanceof Cluster ? client.nodes('master') : [client]
}

/** How many keys match `pattern` on each master (one entry for a single node). */
export async function keysPerMaster(client: Client, pattern: string): Promise<number[]> {
  const out: number[] = []
  for (const node of mastersOf(client)) {
    let n = 0
    let cursor = '0'
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
      cursor = next
      n += keys.length
    } while (cursor !== '0')
    out.push(n)
  }
  return out
}

/** The true number of task hashes per state (every master), for "counters equal the states" checks. */
export async function trueStateCounts(client: Client): Promise<Record<TaskState, number>> {
  const counts = Object.fromEntries(TASK_STATES.map((s) => [s, 0])) as Record<TaskState, number>
  for (const node of mastersOf(client)) {
    let cursor = '0'
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', 'task:*', 'COUNT', 1000)
      cursor = next
      const pipeline = node.pipeline()
      for (const key of keys) pipeline.hget(key, 'state')
      for (const [error, state] of (await pipeline.exec()) ?? []) {
        if (error && !/WRONGTYPE/.test(error.message)) throw error // a task:* key that is not a hash is no task
        if (TASK_STATES.includes(state as TaskState)) counts[state as TaskState]++
      }
    } while (cursor !== '0')
  }
  return counts
}

/** Every queue's ids, by queue key (the scheduled sorted set by member). */
export async function queueContents(client: Client): Promise<Record<(typeof Queue)[keyof typeof Queue], string[]>> {
  return {
    [Queue.primary]: await client.lrange(Queue.primary, 0, -1),
    [Queue.retry]: await client.lrange(Queue.retry, 0, -1),
    [Queue.scheduled]: await client.zrange(Queue.scheduled, 0, -1),
    [Queue.dlq]: await client.lrange(Queue.dlq, 0, -1),
  } as Record<(typeof Queue)[keyof typeof Queue], string[]>
}

/** FLUSHDB on every master: a clean database (or cluster) between tests. */
export async function flushAll(client: Client): Promise<void> {
  for (const node of mastersOf(client)) await node.flushdb()
}

/**
 * One task per defective-task rule (../docs/asynctaskflow-keys.md), as [what is wrong, overrides]:
 * every rule of delete_defective_tasks, in several states.
 */
export const DEFECTIVE_CASES: [string, TaskOverrides][] = [
  ['task_id missing', {task_id: null, state: 'PENDING'}],
  ['task_id empty', {task_id: '', state: 'COMPLETED'}],
  ['task_id "unknown_id"', {task_id: 'unknown_id', state: 'DLQ'}],
  ['state missing', {state: null}],
  ['state empty', {state: ''}],
  ['created_at missing', {created_at: null, state: 'FAILED'}],
  ['created_at empty', {created_at: '', state: 'PENDING'}],
  ['created_at in year 1', {created_at: '0001-01-01T00:00:00', state: 'COMPLETED'}],
  ['created_at unparseable', {created_at: 'not a date', state: 'ACTIVE'}],
  ['updated_at unparseable', {updated_at: 'yesterday', state: 'ACTIVE'}],
  ['updated_at in year 1, scheduled', {updated_at: '0001-01-01T00:00:00.000000', state: 'SCHEDULED'}],
  ['completed_at not a date', {completed_at: '2025-13-45T99:00:00', state: 'COMPLETED'}],
  ['completed_at in year 1', {completed_at: '0001-01-01T00:00:00', state: 'DLQ'}],
]

/**
 * Two worker loops moving, creating and deleting tasks the application's way
 * until stopped, each on its own connection and its own half of `ids`. On a
 * single node the hash and both counters change in one MULTI/EXEC under WATCH,
 * as AsyncTaskFlow does, so `counter - true count` stays constant. A cluster
 * refuses that MULTI (the keys are in different slots): there the hash and
 * the counters are sent side by side, three commands to their own masters, so
 * a transition is half applied for the moment between them.
 */
export function startWriter(url: string | Cluster, ids: string[]) {
  let running = true
  let moves = 0
  const own = (loop: number) => ids.filter((_, i) => i % 2 === loop)
  const next = (state: TaskState) => TASK_STATES[(TASK_STATES.indexOf(state) + 1 + Math.floor(Math.random() * 5)) % TASK_STATES.length]
  const single = async (loop: number, redis: Redis) => {
    const mine = own(loop)
    while (running) {
      const roll = Math.random()
      if (roll < 0.05) {
        const id = randomUUID()
        if (
          await redis
            .multi()
            .hset(taskKey(id), taskHash({task_id: id, state: 'PENDING'}))
            .incr(counterKey('PENDING'))
            .exec()
        )
          moves++
        mine.push(id)
        continue
      }
      const key = taskKey(mine[Math.floor(Math.random() * mine.length)])
      await redis.watch(key)
      const state = (await redis.hget(key, 'state')) as TaskState | null
      if (!state) {
        await redis.unwatch()
        continue
      }
      const multi = redis.multi()
      if (roll < 0.08) multi.del(key).decrby(counterKey(state), 1)
      else {
        const to = next(state)
        multi.hset(key, 'state', to, 'updated_at', isoNow()).decrby(counterKey(state), 1).incrby(counterKey(to), 1)
      }
      if (await multi.exec()) moves++
    }
  }
  const cluster = async (loop: number, client: Cluster) => {
    const mine = own(loop)
    while (running) {
      const roll = Math.random()
      if (roll < 0.05) {
        const id = randomUUID()
        await Promise.all([client.hset(taskKey(id), taskHash({task_id: id, state: 'PENDING'})), client.incr(counterKey('PENDING'))])
        mine.push(id)
        moves++
        continue
      }
      const key = taskKey(mine[Math.floor(Math.random() * mine.length)])
      const state = (await client.hget(key, 'state')) as TaskState | null
      if (!state) continue
      if (roll < 0.08) await Promise.all([client.del(key), client.decrby(counterKey(state), 1)])
      else {
        const to = next(state)
        await Promise.all([
          client.hset(key, 'state', to, 'updated_at', isoNow()),
          client.decrby(counterKey(state), 1),
          client.incrby(counterKey(to), 1),
        ])
      }
      moves++
    }
  }
  const loops = [0, 1].map(async (loop) => {
    if (typeof url !== 'string') return cluster(loop, url)
    const redis = new Redis(url)
    try {
      await single(loop, redis)
    } finally {
      redis.disconnect()
    }
  })
  return {
    get moves() {
      return moves
    },
    async stop() {
      running = false
      await Promise.all(loops)
    },
  }
}
