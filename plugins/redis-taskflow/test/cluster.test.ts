/**
 * Every taskflow command through the real CLI against a three-master Redis
 * Cluster started from redis-server binaries. The keys of one task (its hash,
 * its DLQ copy, the queues, the counters) sit in different slots and, with a
 * few thousand tasks, on every master: each test first checks that they do.
 */
import {expect} from 'chai'
import {Cluster} from 'ioredis'

import {parseJsonOutput, runOps} from '../../../test/helpers/cli.js'
import {freshRedisCluster} from '../../../test/helpers/redis-cluster.js'
import {counterKey, dlqTaskKey, Queue, TASK_STATES, taskKey} from '../src/keyspace.js'
import {
  commandCalls,
  connectTestCluster,
  DATA_CHANGES,
  DEFECTIVE_CASES,
  flushAll,
  isoNow,
  keysPerMaster,
  mastersOf,
  queueContents,
  readCounters,
  setCounters,
  snapshot,
  startWriter,
  trueStateCounts,
  writeCeleryMeta,
  writeHeartbeat,
  writesBetween,
  writeTask,
  writeTasks,
  writeUnrelatedKeys,
} from './fixtures.js'

const TASKS = 3000

describe('taskflow commands on a three-master Redis Cluster', function () {
  let url: string
  let cluster: Cluster
  const ops = (args: string[]) => runOps(args, {env: {REDIS_URL: url}})

  /** Asserts a dry run (or an inspection) issued no write command on any master. */
  async function expectNoWrites(run: () => Promise<unknown>): Promise<void> {
    const before = await commandCalls(cluster)
    await run()
    expect(writesBetween(before, await commandCalls(cluster))).to.deep.equal({})
  }

  before(async () => {
    const server = await freshRedisCluster()
    url = server.url
    cluster = await connectTestCluster(server.nodes)
    expect(mastersOf(cluster)).to.have.length(3)
  })
  after(() => cluster?.disconnect())

  let ids: string[]

  beforeEach(async () => {
    await flushAll(cluster)
    ids = await writeTasks(cluster, TASKS, (i) => ({state: TASK_STATES[i % TASK_STATES.length]}), {count: true})
    const perMaster = await keysPerMaster(cluster, 'task:*')
    expect(
      perMaster.every((n) => n > 300),
      `task keys per master: ${perMaster}`,
    ).to.equal(true)
  })

  it('inspect counts tasks, queues and counter drift over all masters, and writes nothing', async () => {
    await writeCeleryMeta(cluster, 1200)
    await setCounters(cluster, {ACTIVE: TASKS / 6 + 1, COMPLETED: TASKS / 6 - 10})
    await expectNoWrites(async () => {
      const result = await ops(['taskflow:inspect', '--json'])
      expect(result.code, result.stderr).to.equal(0)
      const doc = parseJsonOutput<{
        cluster: boolean
        keys: {tasks: number; dlqTasks: number; celeryMeta: number}
        queues: Record<string, number>
        drift: Record<string, number>
      }>(result)
      expect(doc.cluster).to.equal(true)
      expect(doc.keys).to.include({tasks: TASKS, dlqTasks: TASKS / 6, celeryMeta: 1200})
      expect(doc.queues).to.deep.equal({[Queue.primary]: 500, [Queue.retry]: 0, [Queue.scheduled]: 500, [Queue.dlq]: 500})
      expect(doc.drift).to.deep.equal({PENDING: 0, ACTIVE: 1, COMPLETED: -10, FAILED: 0, SCHEDULED: 0, DLQ: 0})
    })
  })

  it('celery-meta:clean --dry-run writes nothing on any master; --force removes exactly the celery-task-meta-* keys', async () => {
    await writeCeleryMeta(cluster, 2400)
    await writeUnrelatedKeys(cluster)
    const perMaster = await keysPerMaster(cluster, 'celery-task-meta-*')
    expect(
      perMaster.every((n) => n > 0),
      `celery keys per master: ${perMaster}`,
    ).to.equal(true)
    const others = await snapshot(cluster, '[^c]*')
    await expectNoWrites(async () => {
      const dry = await ops(['taskflow:celery-meta:clean', '--dry-run'])
      expect(dry.code, dry.stderr).to.equal(0)
      expect(dry.stdout).to.contain('Found 2,400 celery-task-meta-* keys to delete')
    })
    const run = await ops(['taskflow:celery-meta:clean', '--force'])
    expect(run.code, run.stderr).to.equal(0)
    expect(run.stdout).to.contain('Successfully deleted 2,400 celery-task-meta-* keys')
    expect(await keysPerMaster(cluster, 'celery-task-meta-*')).to.deep.equal([0, 0, 0])
    expect(await cluster.get('celery')).to.equal('y')
    expect(await snapshot(cluster, '[^c]*')).to.deep.equal(others)
  })

  it('counters:sync --dry-run writes nothing; --force makes every counter equal the true state count', async () => {
    await setCounters(cluster, {PENDING: 0, ACTIVE: 900, FAILED: -4, DLQ: 12_000})
    await expectNoWrites(async () => {
      const dry = await ops(['taskflow:counters:sync', '--dry-run'])
      expect(dry.code, dry.stderr).to.equal(0)
      expect(dry.stdout).to.contain(`Total tasks found: ${TASKS.toLocaleString('en-US')}`)
      expect(dry.stdout).to.match(/ACTIVE\s+900\s+500\s+-400/)
    })
    const run = await ops(['taskflow:counters:sync', '--force'])
    expect(run.code, run.stderr).to.equal(0)
    expect(run.stdout).to.match(/Fixed 4 counter discrepancies/)
    expect(await readCounters(cluster)).to.deep.equal(await trueStateCounts(cluster))
    expect(await readCounters(cluster)).to.include({PENDING: 500, ACTIVE: 500, DLQ: 500})
  })

  it('counters:init --dry-run writes nothing; --force creates the counters from the task states', async () => {
    for (const state of TASK_STATES) await cluster.del(counterKey(state))
    await expectNoWrites(async () => {
      const dry = await ops(['taskflow:counters:init', '--dry-run'])
      expect(dry.code, dry.stderr).to.equal(0)
    })
    expect(await keysPerMaster(cluster, 'metrics:tasks:state:*')).to.deep.equal([0, 0, 0])
    const run = await ops(['taskflow:counters:init', '--force'])
    expect(run.code, run.stderr).to.equal(0)
    expect(await readCounters(cluster)).to.deep.equal({PENDING: 500, ACTIVE: 500, COMPLETED: 500, FAILED: 500, SCHEDULED: 500, DLQ: 500})
  })

  it('reset removes only task-flow keys on every master; unrelated keys survive byte for byte', async () => {
    await writeCeleryMeta(cluster, 600)
    await writeHeartbeat(cluster, 'worker-1')
    await writeUnrelatedKeys(cluster)
    for (let i = 0; i < 300; i++) await cluster.set(`app:cache:${i}`, String(i)) // unrelated keys on every master too
    expect((await keysPerMaster(cluster, 'app:*')).every((n) => n > 0)).to.equal(true)
    const unrelated = await snapshot(cluster, '[^tdmcw]*')
    await expectNoWrites(async () => {
      const dry = await ops(['taskflow:reset', '--dry-run'])
      expect(dry.code, dry.stderr).to.equal(0)
      expect(dry.stdout).to.match(/task:\*\s+3,000/)
    })
    const before = await commandCalls(cluster)
    const run = await ops(['taskflow:reset', '--force'])
    expect(run.code, run.stderr).to.equal(0)
    expect(run.stdout).to.match(/Successfully deleted [\d,]+ task-flow keys/)
    for (const pattern of ['task:*', 'tasks:*', 'dlq:*', 'metrics:tasks:state:*', 'celery-task-meta-*', 'worker:heartbeat:*']) {
      expect(await keysPerMaster(cluster, pattern), pattern).to.deep.equal([0, 0, 0])
    }
    for (const key of ['celery', 'taskboard:1', 'metrics:requests', 'jobs:queue']) expect(await cluster.exists(key), key).to.equal(1)
    expect(await snapshot(cluster, '[^tdmcw]*')).to.deep.equal(unrelated)
    expect(writesBetween(before, await commandCalls(cluster))).not.to.have.any.keys('flushdb', 'flushall')
  })

  it('reset --all-keys on a cluster: FLUSHDB ASYNC on every master empties the whole cluster, after counting all its keys', async () => {
    await writeUnrelatedKeys(cluster)
    const total = (await Promise.all(mastersOf(cluster).map((m) => m.dbsize()))).reduce((a, b) => a + b, 0)
    await expectNoWrites(async () => {
      const dry = await ops(['taskflow:reset', '--all-keys', '--dry-run'])
      expect(dry.code, dry.stderr).to.equal(0)
      expect(dry.stdout).to.contain(`Found ${total.toLocaleString('en-US')} keys (the whole cluster, every master)`)
    })
    const before = await commandCalls(cluster)
    const run = await ops(['taskflow:reset', '--all-keys', '--force'])
    expect(run.code, run.stderr).to.equal(0)
    expect(await Promise.all(mastersOf(cluster).map((m) => m.dbsize()))).to.deep.equal([0, 0, 0])
    const {[DATA_CHANGES]: _changes, ...writes} = writesBetween(before, await commandCalls(cluster))
    expect(writes).to.deep.equal({flushdb: 3})
  })

  describe('defective:delete', () => {
    let defective: {id: string; keyId: string; queue: string}[]

    beforeEach(async () => {
      defective = []
      // Every rule, each in every queue a task id can sit in (and with a dlq:task copy), spread over the masters.
      for (const queue of ['primary', 'retry', 'scheduled', 'dlq', 'none'] as const) {
        for (const [, overrides] of DEFECTIVE_CASES) {
          const keyId = await writeTask(cluster, overrides, {count: true, queue})
          const id =
            typeof overrides.task_id === 'string' && overrides.task_id && overrides.task_id !== 'unknown_id' ? overrides.task_id : keyId
          defective.push({id, keyId, queue})
        }
      }
      const perMaster = await Promise.all(
        mastersOf(cluster).map(async (m) => (await m.keys('task:*')).filter((k) => defective.some((d) => taskKey(d.keyId) === k)).length),
      )
      expect(
        perMaster.every((n) => n > 0),
        `defective keys per master: ${perMaster}`,
      ).to.equal(true)
    })

    it('--dry-run lists every defective task and writes nothing on any master', async () => {
      await expectNoWrites(async () => {
        const dry = await ops(['taskflow:defective:delete', '--dry-run', '--limit', '1000'])
        expect(dry.code, dry.stderr).to.equal(0)
        expect(dry.stdout).to.contain(`Found ${defective.length} defective tasks`)
        for (const d of defective) expect(dry.stdout).to.contain(`Redis Key: ${taskKey(d.keyId)}`)
      })
    })

    it('--force removes the hashes, their DLQ copies and ids in every queue, and keeps every counter equal to the states', async () => {
      const healthy = await snapshot(cluster, 'task:*')
      for (const d of defective) delete healthy[taskKey(d.keyId)]
      const queuesBefore = await queueContents(cluster)
      const run = await ops(['taskflow:defective:delete', '--force'])
      expect(run.code, run.stderr).to.equal(0)
      expect(run.stdout).to.contain(`Successfully deleted ${defective.length} defective tasks`)
      for (const d of defective) {
        expect(await cluster.exists(taskKey(d.keyId)), taskKey(d.keyId)).to.equal(0)
        expect(await cluster.exists(dlqTaskKey(d.keyId))).to.equal(0)
      }
      expect(await snapshot(cluster, 'task:*')).to.deep.equal(healthy)
      const gone = new Set(defective.flatMap((d) => [d.id, d.keyId]))
      const queues = await queueContents(cluster)
      for (const [queue, ids] of Object.entries(queues)) {
        expect(
          ids.filter((id) => gone.has(id)),
          queue,
        ).to.deep.equal([])
        expect(ids, queue).to.deep.equal(queuesBefore[queue as keyof typeof queues].filter((id) => !gone.has(id)))
      }
      expect(queues[Queue.primary]).to.have.length(500)
      expect(await keysPerMaster(cluster, 'dlq:task:*')).to.satisfy((n: number[]) => n.reduce((a, b) => a + b, 0) === 500)
      expect(await readCounters(cluster)).to.deep.equal(await trueStateCounts(cluster))
    })
  })

  describe('stuck:fix', () => {
    let orphans: string[]
    let stuck: string[]
    let deadWorker: string[]

    beforeEach(async () => {
      await writeHeartbeat(cluster, 'worker-1')
      orphans = await writeTasks(cluster, 60, {state: 'PENDING'}, {count: true, queue: 'none'})
      stuck = await writeTasks(cluster, 60, {state: 'ACTIVE', started_at: isoNow(-2 * 3_600_000)}, {count: true})
      deadWorker = await writeTasks(cluster, 30, {state: 'ACTIVE', worker_id: 'worker-gone'}, {count: true})
    })

    it('--dry-run finds them all and writes nothing on any master', async () => {
      await expectNoWrites(async () => {
        const dry = await ops(['taskflow:stuck:fix', '--dry-run'])
        expect(dry.code, dry.stderr).to.equal(0)
        expect(dry.stdout).to.contain('Found 150 stuck tasks to fix')
      })
    })

    it('--force re-queues orphaned PENDING tasks and fails stuck ACTIVE ones, counters moved and ids on the retry queue', async () => {
      const others = await snapshot(cluster, 'task:*')
      for (const id of [...stuck, ...deadWorker]) delete others[taskKey(id)]
      const primaryBefore = await cluster.lrange(Queue.primary, 0, -1)
      const run = await ops(['taskflow:stuck:fix', '--force', '--older-than', '30m'])
      expect(run.code, run.stderr).to.equal(0)
      expect(run.stdout).to.contain('Successfully fixed 150 stuck tasks')
      const primary = await cluster.lrange(Queue.primary, 0, -1)
      expect([...primary].sort()).to.deep.equal([...primaryBefore, ...orphans].sort())
      expect((await cluster.lrange(Queue.retry, 0, -1)).sort()).to.deep.equal([...stuck, ...deadWorker].sort())
      for (const id of [...stuck, ...deadWorker]) {
        const task = await cluster.hgetall(taskKey(id))
        expect(task).to.include({state: 'FAILED', error_type: 'StuckTask'})
        expect(JSON.parse(task.error_history).at(-1)).to.include({error_type: 'StuckTask'})
        expect(JSON.parse(task.state_history).at(-1)).to.include({state: 'FAILED'})
      }
      const after = await snapshot(cluster, 'task:*')
      for (const id of [...stuck, ...deadWorker]) delete after[taskKey(id)]
      expect(after).to.deep.equal(others)
      const counters = await readCounters(cluster)
      expect(counters).to.deep.equal(await trueStateCounts(cluster))
      expect(counters).to.include({PENDING: 560, ACTIVE: 500, FAILED: 590})
    })
  })

  describe('while a writer moves tasks on every master', () => {
    /** Runs `args` with the writer going, stops it, and checks ops neither failed nor showed a raw server error. */
    async function withWriter(args: string[]) {
      const writer = startWriter(cluster, ids)
      await new Promise((r) => setTimeout(r, 100))
      const movesBefore = writer.moves
      const result = await ops(args)
      const moves = writer.moves - movesBefore
      await writer.stop()
      expect(result.stdout + result.stderr).not.to.match(/CROSSSLOT|MOVED|ASK /)
      expect(result.code, result.stderr).to.equal(0)
      expect(moves, 'the writer moved tasks while ops ran').to.be.greaterThan(20)
      return result
    }

    it('counters:sync --force measures each master at its own instant and ends exact, counters on other masters than tasks', async () => {
      await setCounters(cluster, {PENDING: 0, ACTIVE: 900, FAILED: -4})
      const result = await withWriter(['taskflow:counters:sync', '--force', '--json'])
      const doc = parseJsonOutput<{data: {exact: boolean; offBy: number; note: string; serverSettingsChanged: string[]}}>(result)
      expect(doc.data.serverSettingsChanged).to.deep.equal([])
      expect(doc.data.exact, doc.data.note).to.equal(true)
      expect(doc.data.note).to.match(/instants 25 ms apart until 4 in a row gave every state the same drift/)
      expect(await readCounters(cluster)).to.deep.equal(await trueStateCounts(cluster))
    })

    it('inspect, defective:delete, stuck:fix, celery-meta:clean and reset --force each finish on every master', async () => {
      await writeCeleryMeta(cluster, 900)
      await writeTasks(cluster, 40, {state: 'ACTIVE', started_at: isoNow(-2 * 3_600_000)}, {count: true})
      for (const [, overrides] of DEFECTIVE_CASES) await writeTask(cluster, overrides, {count: true})
      await withWriter(['taskflow:inspect', '--json'])
      const defective = await withWriter(['taskflow:defective:delete', '--force'])
      expect(defective.stdout, defective.stdout).to.contain(`Successfully deleted ${DEFECTIVE_CASES.length} defective tasks`)
      const stuck = await withWriter(['taskflow:stuck:fix', '--force'])
      expect(stuck.stdout).to.match(/Successfully fixed [\d,]+ stuck tasks/)
      const celery = await withWriter(['taskflow:celery-meta:clean', '--force'])
      expect(celery.stdout).to.contain('Successfully deleted 900 celery-task-meta-* keys')
      expect(await keysPerMaster(cluster, 'celery-task-meta-*')).to.deep.equal([0, 0, 0])
      await withWriter(['taskflow:reset', '--force'])
    })
  })
})
