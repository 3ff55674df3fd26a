/**
 * stuck:fix and defective:delete against a real concurrent worker, not a mock:
 * three loops on their own connections (in this process) pick PENDING tasks
 * from the primary queue and complete ACTIVE ones the application's way — the
 * hash and both counters in one MULTI/EXEC under WATCH of the hash — while the
 * real CLI runs over a few thousand tasks; a fourth loop chases the command
 * through the tasks it is about to change, so both often go for the same task
 * within one WATCH window. Each worker transaction also reads a key only the
 * command changes, so the test can prove the two interleaved.
 */
import {expect} from 'chai'
import {Redis} from 'ioredis'

import {collect, spawnOps} from '../../../test/helpers/cli.js'
import {counterKey, dlqTaskKey, idOfTaskKey, isTaskState, Queue, TASK_STATES, taskKey, TaskState} from '../src/keyspace.js'
import {
  DEFECTIVE_CASES,
  isoNow,
  queueContents,
  readCounters,
  trueStateCounts,
  withFreshRedis,
  writeHeartbeat,
  writeTasks,
} from './fixtures.js'

const WORKER_LOOPS = 3

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Task ids in the order `SCAN MATCH task:* COUNT 1000 TYPE hash` visits them: the order the commands handle them in. */
async function scanOrder(redis: Redis): Promise<string[]> {
  const ids: string[] = []
  let cursor = '0'
  do {
    const [next, keys] = (await redis.call('SCAN', cursor, 'MATCH', 'task:*', 'COUNT', 1000, 'TYPE', 'hash')) as [string, string[]]
    cursor = next
    ids.push(...keys.map(idOfTaskKey))
  } while (cursor !== '0')
  return ids
}

interface Worker {
  /** Successful state changes (picks and completions). */
  readonly moves: number
  /** Times the chasing worker's EXEC failed because the command changed the task inside its WATCH window. */
  readonly collisions: number
  /** Ids a worker completed (its EXEC succeeded). */
  readonly completed: Set<string>
  /** For each move, what the probe read inside the worker's own MULTI/EXEC. */
  readonly probes: number[]
  /** Ids found in the primary queue although their hash was not PENDING. */
  readonly strays: {id: string; state: string | null}[]
  stop(): Promise<void>
}

/**
 * A worker that follows the command instead of picking at random: the ids in
 * the order the command's SCAN visits them, when the command has begun
 * changing things, and the move to make on a task in `state` (none: pass on).
 * It moves the first task the command has not handled yet, so the two often
 * race for the same task inside one WATCH window.
 */
interface Chase {
  order: string[]
  begun(redis: Redis): Promise<boolean>
  next(state: string | null): TaskState | undefined
}

/**
 * Worker loops as AsyncTaskFlow runs them: RPOP an id from the primary queue
 * and make it ACTIVE (PENDING -1, ACTIVE +1), or complete an ACTIVE task
 * (ACTIVE -1, COMPLETED +1). `probe` is a read-only command queued in every
 * MULTI; its reply tells what the command had done at that instant. With
 * `chase`, a fourth loop follows the command (see Chase).
 */
function startWorkers(url: string, active: string[], probe: (multi: ReturnType<Redis['multi']>) => void, chase?: Chase): Worker {
  let running = true
  let moves = 0
  let collisions = 0
  const completed = new Set<string>()
  const probes: number[] = []
  const strays: Worker['strays'] = []
  const take = (id: string) => {
    const i = active.indexOf(id)
    if (i >= 0) active.splice(i, 1)
  }

  /** Moves task `id` from `from` to `fields.state` in one MULTI (hash, both counters, probe); false when WATCH saw a change. */
  const commit = async (
    redis: Redis,
    id: string,
    from: TaskState,
    fields: Record<string, string> & {state: TaskState},
  ): Promise<boolean> => {
    const multi = redis.multi().hset(taskKey(id), fields)
    multi.decrby(counterKey(from), 1).incrby(counterKey(fields.state), 1)
    probe(multi)
    const replies = await multi.exec()
    if (!replies) return false
    moves++
    probes.push(Number(replies.at(-1)![1]))
    return true
  }

  const pick = async (redis: Redis): Promise<void> => {
    const id = await redis.rpop(Queue.primary)
    if (!id) return
    for (;;) {
      await redis.watch(taskKey(id))
      const state = await redis.hget(taskKey(id), 'state')
      if (state !== 'PENDING') {
        await redis.unwatch()
        strays.push({id, state})
        return
      }
      const now = isoNow()
      const fields = {state: 'ACTIVE' as const, started_at: now, updated_at: now, worker_id: 'worker-1'}
      if (!(await commit(redis, id, 'PENDING', fields))) continue // the hash changed under WATCH: look again
      active.push(id)
      return
    }
  }

  const complete = async (redis: Redis): Promise<void> => {
    const id = active[Math.floor(Math.random() * active.length)]
    if (!id) return
    await redis.watch(taskKey(id))
    if ((await redis.hget(taskKey(id), 'state')) !== 'ACTIVE') {
      await redis.unwatch()
      take(id)
      return
    }
    const now = isoNow()
    const fields = {state: 'COMPLETED' as const, completed_at: now, updated_at: now, result: '{"summary": "done"}'}
    if (!(await commit(redis, id, 'ACTIVE', fields))) return // lost to someone else's change: looked at again on a later turn
    completed.add(id)
    take(id)
  }

  const loop = async () => {
    const redis = new Redis(url)
    try {
      while (running) {
        await (Math.random() < 0.5 ? pick(redis) : complete(redis))
        await sleep(1) // a worker does work between transitions
      }
    } finally {
      redis.disconnect()
    }
  }
  const chaseLoop = async ({order, begun, next}: Chase) => {
    const redis = new Redis(url)
    try {
      while (running && !(await begun(redis))) await sleep(1)
      for (let j = 0; running && j < order.length;) {
        // Catch up with the command in one round trip: the first of the next ids it has not handled yet.
        const ahead = order.slice(j, j + 64)
        const states = (await redis.pipeline(ahead.map((id) => ['hget', taskKey(id), 'state'])).exec()) ?? []
        const k = states.findIndex(([, state]) => next(state as string | null) !== undefined)
        if (k < 0) {
          j += ahead.length
          continue
        }
        j += k
        const key = taskKey(order[j])
        await redis.watch(key)
        const state = await redis.hget(key, 'state')
        const target = next(state)
        if (!target) {
          await redis.unwatch()
          j++ // handled by the command (or not ours to move): on to the next
          continue
        }
        const now = isoNow()
        const multi = redis.multi().hset(key, 'state', target, ...(target === 'COMPLETED' ? ['completed_at', now] : []))
        multi.decrby(counterKey(state as TaskState), 1).incrby(counterKey(target), 1)
        probe(multi)
        const replies = await multi.exec()
        if (!replies) {
          collisions++ // the command changed it under our WATCH: look again
          continue
        }
        moves++
        probes.push(Number(replies.at(-1)![1]))
        if (target === 'COMPLETED') completed.add(order[j])
        j++
        await sleep(Math.random() * 2) // let the command catch up, then race it for its current task
      }
    } finally {
      redis.disconnect()
    }
  }
  const loops = [...Array.from({length: WORKER_LOOPS}, loop), ...(chase ? [chaseLoop(chase)] : [])]
  return {
    get moves() {
      return moves
    },
    get collisions() {
      return collisions
    },
    completed,
    probes,
    strays,
    async stop() {
      running = false
      await Promise.all(loops)
    },
  }
}

/** Ops with --force while the workers run; the workers stop once it has exited. */
async function runDuring(url: string, args: string[], worker: Worker) {
  const result = await collect(spawnOps(args, {env: {REDIS_URL: url}}), 60_000)
  await worker.stop()
  return result
}

/** Ids that occur more than once in one queue or in two queues. */
function duplicates(queues: Record<string, string[]>): string[] {
  const seen = new Set<string>()
  const twice: string[] = []
  for (const ids of Object.values(queues)) {
    for (const id of ids) {
      if (seen.has(id)) twice.push(id)
      seen.add(id)
    }
  }
  return twice
}

describe('stuck:fix and defective:delete race a real worker', function () {
  const server = withFreshRedis()

  beforeEach(async () => {
    await server.redis.flushdb()
    await writeHeartbeat(server.redis, 'worker-1')
  })

  it('stuck:fix: counters equal the states, each id in the one queue its state implies, no task a worker completed is FAILED', async () => {
    const queued = await writeTasks(server.redis, 1500, {state: 'PENDING'}, {count: true})
    const orphans = await writeTasks(server.redis, 400, {state: 'PENDING'}, {count: true, queue: 'none'})
    const stuck = await writeTasks(server.redis, 2500, {state: 'ACTIVE', started_at: isoNow(-2 * 3_600_000)}, {count: true})
    await writeTasks(server.redis, 500, {state: 'COMPLETED'}, {count: true})
    // The probe: the FAILED counter, which only the command moves.
    const stuckSet = new Set(stuck)
    const worker = startWorkers(server.url, [...stuck], (multi) => multi.get(counterKey('FAILED')), {
      order: (await scanOrder(server.redis)).filter((id) => stuckSet.has(id)),
      begun: async (r) => Number(await r.get(counterKey('FAILED'))) > 0,
      next: (state) => (state === 'ACTIVE' ? 'COMPLETED' : undefined),
    })
    const result = await runDuring(server.url, ['taskflow:stuck:fix', '--force', '--older-than', '30m'], worker)
    expect(result.code, result.stderr).to.equal(0)

    const found = Number(/Found ([\d,]+) stuck tasks to fix/.exec(result.stdout)![1].replace(/,/g, ''))
    const fixed = Number(/Successfully fixed ([\d,]+) stuck tasks/.exec(result.stdout)![1].replace(/,/g, ''))
    const failedByOps = (await readCounters(server.redis)).FAILED
    const during = worker.probes.filter((failed) => failed > 0 && failed < failedByOps).length
    expect(during, `worker moves while ops was failing tasks (of ${worker.moves})`).to.be.greaterThan(100)
    expect(fixed, 'some stuck tasks were completed by a worker after the scan, and ops let them be').to.be.lessThan(found)
    expect(found).to.be.greaterThan(400)
    expect(worker.collisions, "times ops changed a task inside the chasing worker's WATCH window").to.be.greaterThan(5)

    expect(await readCounters(server.redis)).to.deep.equal(await trueStateCounts(server.redis))
    const states = new Map<string, Record<string, string>>()
    for (const id of [...queued, ...orphans, ...stuck]) states.set(id, await server.redis.hgetall(taskKey(id)))
    for (const id of worker.completed)
      expect(states.get(id) ?? (await server.redis.hgetall(taskKey(id))), id).to.include({state: 'COMPLETED', error_type: ''})
    const failed = [...states].filter(([, h]) => h.state === 'FAILED')
    expect(failed.length).to.equal(failedByOps)
    for (const [id, h] of failed) expect(h.error_type, id).to.equal('StuckTask')

    const queues = await queueContents(server.redis)
    expect(duplicates(queues), 'ids in two queues or twice in one').to.deep.equal([])
    expect(worker.strays, 'ids in the primary queue whose task was not PENDING').to.deep.equal([])
    const pending = [...states].filter(([, h]) => h.state === 'PENDING').map(([id]) => id)
    expect([...queues[Queue.primary]].sort(), 'every PENDING task queued, nothing else').to.deep.equal(pending.sort())
    expect([...queues[Queue.retry]].sort(), 'every task ops failed is on the retry queue').to.deep.equal(failed.map(([id]) => id).sort())
  })

  it('defective:delete: counters equal the states, healthy tasks kept, every defective one gone from hashes, copies, queues', async () => {
    const healthyPending = await writeTasks(server.redis, 1500, {state: 'PENDING'}, {count: true})
    const healthyActive = await writeTasks(server.redis, 1500, {state: 'ACTIVE'}, {count: true})
    await writeTasks(server.redis, 500, {state: 'COMPLETED'}, {count: true})
    const placements = ['primary', 'retry', 'scheduled', 'dlq', 'auto'] as const
    const defectiveKeyIds: string[] = []
    for (let round = 0; round < 25; round++) {
      for (const [i, [, overrides]] of DEFECTIVE_CASES.entries()) {
        defectiveKeyIds.push(
          ...(await writeTasks(server.redis, 1, overrides, {count: true, queue: placements[(round + i) % placements.length]})),
        )
      }
    }
    const healthy = [...healthyPending, ...healthyActive]
    const keysBefore = await server.redis.dbsize()
    // The probe: DBSIZE, which only the command changes (the worker never creates or deletes a key).
    const defectiveSet = new Set(defectiveKeyIds)
    const worker = startWorkers(server.url, [...healthyActive], (multi) => multi.dbsize(), {
      order: (await scanOrder(server.redis)).filter((id) => defectiveSet.has(id)),
      begun: async (r) => (await r.dbsize()) < keysBefore,
      // Any state to another, as a worker or the API might: the command must take one off the counter of the state it deletes.
      next: (state) => (isTaskState(state) ? TASK_STATES[(TASK_STATES.indexOf(state) + 1) % TASK_STATES.length] : undefined),
    })
    const result = await runDuring(server.url, ['taskflow:defective:delete', '--force'], worker)
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).to.contain(`Found ${defectiveKeyIds.length.toLocaleString('en-US')} defective tasks`)
    const keysAfter = await server.redis.dbsize()
    const during = worker.probes.filter((n) => n < keysBefore && n > keysAfter).length
    expect(worker.collisions, "times ops deleted a task inside the chasing worker's WATCH window").to.be.greaterThan(5)
    expect(during, `worker moves while ops was deleting (of ${worker.moves})`).to.be.greaterThan(100)

    expect(await readCounters(server.redis)).to.deep.equal(await trueStateCounts(server.redis))
    for (const id of healthy) expect(await server.redis.exists(taskKey(id)), `healthy ${id}`).to.equal(1)
    for (const id of defectiveKeyIds) {
      expect(await server.redis.exists(taskKey(id), dlqTaskKey(id)), `defective ${id}`).to.equal(0)
    }
    const queues = await queueContents(server.redis)
    const gone = new Set(defectiveKeyIds)
    expect(
      Object.values(queues)
        .flat()
        .filter((id) => gone.has(id)),
    ).to.deep.equal([])
    expect(duplicates(queues)).to.deep.equal([])
    const healthyStrays = worker.strays.filter((s) => !gone.has(s.id))
    expect(healthyStrays, 'healthy ids in the primary queue whose task was not PENDING').to.deep.equal([])
    const pendingHealthy = []
    for (const id of healthy) if ((await server.redis.hget(taskKey(id), 'state')) === 'PENDING') pendingHealthy.push(id)
    expect([...queues[Queue.primary]].sort(), 'every healthy PENDING task still queued').to.deep.equal(pendingHealthy.sort())
  })
})
