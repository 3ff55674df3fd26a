/**
 * Odd data never crashes a command: task:* keys that are a string, a list or a
 * set, a hash with none of a task's fields, a key name and field values that
 * are not UTF-8, a 5 MB field, keys that expire while ops scans. Each is
 * counted and reported in the user's words, and the real tasks beside them
 * are counted and repaired as usual.
 */
import {expect} from 'chai'

import {parseJsonOutput, runOps} from '../../../test/helpers/cli.js'
import {TASK_STATES, taskKey} from '../src/keyspace.js'
import {readCounters, setCounters, taskHash, trueStateCounts, withFreshRedis, writeTask, writeTasks} from './fixtures.js'

const HEALTHY = 600
const FIVE_MB = 'x'.repeat(5 * 1024 * 1024)
/** `task:` then bytes that are no UTF-8 text. */
const BAD_NAME = Buffer.concat([Buffer.from('task:'), Buffer.from([0xff, 0xfe, 0x80])])

describe('taskflow commands on odd data', function () {
  const server = withFreshRedis()
  let bigDefective: string
  const ops = (args: string[]) => runOps(args, {env: {REDIS_URL: server.url}})

  beforeEach(async () => {
    await server.redis.flushdb()
    await writeTasks(server.redis, HEALTHY, (i) => ({state: TASK_STATES[i % TASK_STATES.length]}), {count: true})
    // Three task:* keys of other types: not tasks.
    await server.redis.set('task:a-string', 'hello')
    await server.redis.rpush('task:a-list', 'a', 'b')
    await server.redis.sadd('task:a-set', 'x')
    // A hash with none of a task's fields (Redis keeps no hash without fields at all).
    await server.redis.hset('task:no-fields', 'unrelated', '1')
    // A key name and field values that are not UTF-8.
    await server.redis.hset(BAD_NAME, 'state', 'PENDING', 'task_id', 'x')
    await writeTask(server.redis, {state: 'COMPLETED', content: Buffer.from([0xc3, 0x28, 0xff]).toString('latin1')}, {count: true})
    await server.redis.hset(taskKey('bytes-state'), {
      task_id: 'bytes-state',
      state: Buffer.from([0xff, 0xfe]),
      created_at: '2024-01-01T00:00:00',
    })
    // 5 MB fields: one healthy task's result, and a defective task's content.
    await writeTask(server.redis, {state: 'COMPLETED', result: FIVE_MB}, {count: true})
    bigDefective = await writeTask(server.redis, {state: 'FAILED', content: FIVE_MB, created_at: 'yesterday'}, {count: true})
  })

  it('inspect counts them apart, in words: "3 task:* keys are not hashes", "1 task:* key name is not UTF-8"', async () => {
    const result = await ops(['taskflow:inspect'])
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).to.contain('3 task:* keys are not hashes (strings, lists, ...): not counted as tasks')
    expect(result.stdout).to.contain('1 task:* key name is not UTF-8: not counted as tasks')
    // The hash without fields and the one whose state is bytes are tasks without a valid state.
    expect(result.stdout).to.contain('(2 hashes have no valid state: see taskflow:defective:delete)')
    const doc = parseJsonOutput<{keys: {tasks: number}; notHashes: number; badNames: number; unknownState: number}>(
      await ops(['taskflow:inspect', '--json']),
    )
    expect(doc).to.include({notHashes: 3, badNames: 1, unknownState: 2})
    expect(doc.keys.tasks).to.equal(HEALTHY + 3 + 2)
  })

  it('counters:sync --force counts the real tasks exactly and says which keys it left out', async () => {
    await setCounters(server.redis, {PENDING: 0, COMPLETED: 7})
    const result = await ops(['taskflow:counters:sync', '--force'])
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).to.contain('3 task:* keys are not hashes')
    expect(result.stdout).to.contain('1 task:* key name is not UTF-8')
    expect(result.stdout).to.contain('Tasks without a valid state: 2')
    expect(await readCounters(server.redis)).to.deep.equal(await trueStateCounts(server.redis))
  })

  it('defective:delete lists the 5 MB task by its first 60 characters, deletes only it, and leaves the odd keys alone', async () => {
    const dry = await ops(['taskflow:defective:delete', '--dry-run'])
    expect(dry.code, dry.stderr).to.equal(0)
    expect(dry.stdout).to.contain(`Redis Key: ${taskKey(bigDefective)}`)
    expect(dry.stdout).to.contain(`Content: ${'x'.repeat(60)}\n`)
    const run = await ops(['taskflow:defective:delete', '--force'])
    expect(run.code, run.stderr).to.equal(0)
    expect(await server.redis.exists(taskKey(bigDefective))).to.equal(0)
    for (const key of ['task:a-string', 'task:a-list', 'task:a-set', BAD_NAME])
      expect(await server.redis.exists(key), String(key)).to.equal(1)
    expect(await readCounters(server.redis)).to.deep.equal(await trueStateCounts(server.redis))
  })

  it('stuck:fix and celery-meta:clean finish, and stuck:fix does not take the key it cannot name for an orphan', async () => {
    const stuck = await ops(['taskflow:stuck:fix', '--dry-run', '--json'])
    expect(stuck.code, stuck.stderr).to.equal(0)
    // The HEALTHY / 6 PENDING tasks are queued; the PENDING hash with the non-UTF-8 name is not listed as an orphan.
    expect(parseJsonOutput<{data: {orphanedPending: string[]}}>(stuck).data.orphanedPending).to.deep.equal([])
    const celery = await ops(['taskflow:celery-meta:clean', '--force'])
    expect(celery.code, celery.stderr).to.equal(0)
  })

  it('celery-meta:clean and reset remove keys whose names are not UTF-8, by their bytes, and count them', async () => {
    const badCelery = Buffer.concat([Buffer.from('celery-task-meta-'), Buffer.from([0xff, 0xfe, 0x80])])
    await server.redis.set(badCelery, '{"status": "SUCCESS"}')
    await server.redis.set('celery-task-meta-plain', '{"status": "SUCCESS"}')
    // A valid UTF-8 name holding U+FFFD itself is a plain name, not one to take as bytes.
    await server.redis.set('celery-task-meta-\uFFFD-valid', '{"status": "SUCCESS"}')
    const celery = await ops(['taskflow:celery-meta:clean', '--force'])
    expect(celery.code, celery.stderr).to.equal(0)
    expect(celery.stdout).to.contain('Successfully deleted 3 celery-task-meta-* keys')
    expect(await server.redis.exists(badCelery)).to.equal(0)
    const reset = await ops(['taskflow:reset', '--force', '--json'])
    expect(reset.code, reset.stderr).to.equal(0)
    expect(parseJsonOutput<{data: {perPattern: Record<string, number>}}>(reset).data.perPattern['task:*']).to.be.greaterThan(HEALTHY)
    expect(await server.redis.exists(BAD_NAME)).to.equal(0)
    expect(await server.redis.keys('task:*')).to.deep.equal([])
  })

  it('keys expiring while ops scans are neither counted nor a crash, and the sync is exact', async () => {
    // 20,000 more tasks that expire at random within the next 1.5 s, while the commands run.
    const pipeline = server.redis.pipeline()
    for (let i = 0; i < 20_000; i++) {
      const id = `expiring-${i}`
      pipeline.hset(taskKey(id), taskHash({task_id: id, state: 'PENDING'})).pexpire(taskKey(id), 50 + Math.floor(Math.random() * 1500))
    }
    await pipeline.exec()
    const inspect = await ops(['taskflow:inspect', '--json'])
    expect(inspect.code, inspect.stderr).to.equal(0)
    const sync = await ops(['taskflow:counters:sync', '--dry-run', '--json'])
    expect(sync.code, sync.stderr).to.equal(0)
    const doc = parseJsonOutput<{data: {exact: boolean; note: string; changedDuringScan: number}}>(sync)
    expect(doc.data.exact, doc.data.note).to.equal(true)
    await new Promise((r) => setTimeout(r, 1600))
    expect(await server.redis.keys('task:expiring-*')).to.deep.equal([])
    const after = await ops(['taskflow:counters:sync', '--force', '--json'])
    expect(after.code, after.stderr).to.equal(0)
    expect(await readCounters(server.redis)).to.deep.equal(await trueStateCounts(server.redis))
  })
})
