/** taskflow:inspect, taskflow:celery-meta:clean, taskflow:counters:sync/init through the real CLI on a real Redis. */
import {expect} from 'chai'
import {Redis} from 'ioredis'

import {parseJsonOutput, runOps, runOpsInTty} from '../../../test/helpers/cli.js'
import {
  commandCalls,
  readCounters,
  setCounters,
  snapshot,
  withFreshRedis,
  writeCeleryMeta,
  writeHeartbeat,
  writesBetween,
  writeTasks,
  writeUnrelatedKeys,
} from './fixtures.js'

describe('taskflow commands on a real Redis', function () {
  const server = withFreshRedis()
  const ops = (args: string[]) => runOps(args, {env: {REDIS_URL: server.url}})

  beforeEach(async () => {
    await server.redis.flushdb()
    await writeTasks(server.redis, 3000, (i) => ({state: ['COMPLETED', 'PENDING', 'ACTIVE'][i % 3]}))
    await writeCeleryMeta(server.redis, 2500)
    await writeUnrelatedKeys(server.redis)
    await setCounters(server.redis, {COMPLETED: 990, PENDING: 1000, ACTIVE: 1001}) // one phantom active task
  })

  it('inspect shows queues, key counts and counter drift, and writes nothing', async () => {
    const before = await commandCalls(server.redis)
    const result = await ops(['taskflow:inspect', '--json'])
    expect(result.code, result.stderr).to.equal(0)
    const doc = parseJsonOutput<{keys: {tasks: number; celeryMeta: number}; queues: Record<string, number>; drift: Record<string, number>}>(
      result,
    )
    expect(doc.keys).to.include({tasks: 3000, celeryMeta: 2500})
    expect(doc.queues['tasks:pending:primary']).to.equal(1000)
    expect(doc.drift).to.include({COMPLETED: -10, PENDING: 0, ACTIVE: 1})
    expect(writesBetween(before, await commandCalls(server.redis))).to.deep.equal({})
    const text = await ops(['taskflow:inspect'])
    expect(text.stdout).to.match(/ACTIVE\s+1,001\s+1,000\s+\+1/)
  })

  it('celery-meta:clean --dry-run writes nothing; --force removes only celery-task-meta-* keys', async () => {
    const untouched = await snapshot(server.redis, '[^c]*')
    const before = await commandCalls(server.redis)
    const dry = await ops(['taskflow:celery-meta:clean', '--dry-run'])
    expect(dry.code).to.equal(0)
    expect(dry.stdout).to.contain('Found 2,500 celery-task-meta-* keys to delete')
    expect(writesBetween(before, await commandCalls(server.redis))).to.deep.equal({})
    const run = await ops(['taskflow:celery-meta:clean', '--force'])
    expect(run.code, run.stderr).to.equal(0)
    expect(run.stdout).to.contain('Successfully deleted 2,500 celery-task-meta-* keys')
    expect(await server.redis.keys('celery-task-meta-*')).to.have.length(0)
    expect(await server.redis.get('celery')).to.equal('y')
    expect(await snapshot(server.redis, '[^c]*')).to.deep.equal(untouched)
  })

  it("counters:sync prints fix_counter_sync.py's table, --dry-run writes nothing, --force fixes with INCRBY", async () => {
    const before = await commandCalls(server.redis)
    const dry = await ops(['taskflow:counters:sync', '--dry-run'])
    expect(dry.code, dry.stderr).to.equal(0)
    expect(dry.stdout).to.contain('Total tasks found: 3,000')
    expect(dry.stdout).to.match(/State\s+Old\s+New\s+Change/)
    expect(dry.stdout).to.match(/ACTIVE\s+1001\s+1000\s+-1/)
    expect(writesBetween(before, await commandCalls(server.redis))).to.deep.equal({})
    const run = await ops(['taskflow:counters:sync', '--force'])
    expect(run.code, run.stderr).to.equal(0)
    expect(run.stdout).to.match(/Fixed 2 counter discrepancies/)
    expect(run.stdout).to.contain('   - ACTIVE: -1')
    const calls = writesBetween(before, await commandCalls(server.redis))
    expect(calls).to.include.keys('incrby')
    // The only SETs are the instant's fence, each deleted in its script (live-counters.test.ts checks their keys with MONITOR).
    expect(calls.set ?? 0, 'SET calls, one per fence').to.equal(calls.del ?? 0)
    expect(await server.redis.keys('~ops:*'), 'fence keys left').to.deep.equal([])
    expect(await readCounters(server.redis)).to.include({COMPLETED: 1000, PENDING: 1000, ACTIVE: 1000, FAILED: 0})
  })

  it('counters:sync takes the Redis URL as an argument too, as fix_counter_sync.py did', async () => {
    const result = await runOps(['taskflow:counters:sync', server.url, '--force'])
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).to.contain('Fixed 2 counter discrepancies')
    expect(await readCounters(server.redis)).to.include({COMPLETED: 1000, PENDING: 1000, ACTIVE: 1000})
    const twice = await runOps(['taskflow:counters:sync', server.url, '--redis-url', 'redis://127.0.0.1:1/0', '--dry-run'])
    expect(twice.code).to.equal(2)
  })

  it('counters:init creates missing counters from the task states', async () => {
    await server.redis.del(...(await server.redis.keys('metrics:tasks:state:*')))
    const run = await ops(['taskflow:counters:init', '--force'])
    expect(run.code, run.stderr).to.equal(0)
    expect(await readCounters(server.redis)).to.include({COMPLETED: 1000, PENDING: 1000, ACTIVE: 1000, DLQ: 0})
  })

  it('reset removes only task-flow keys of the selected database; other keys and db 1 stay', async () => {
    await writeHeartbeat(server.redis, 'worker-1')
    const other = new Redis(server.url.replace(/\/0$/, '/1'))
    try {
      await writeTasks(other, 10)
      await other.set('tasks:pending:primary:note', 'db 1 is not ours to touch')
      const before = await commandCalls(server.redis)
      const dry = await ops(['taskflow:reset', '--dry-run'])
      expect(dry.code, dry.stderr).to.equal(0)
      expect(writesBetween(before, await commandCalls(server.redis))).to.deep.equal({})
      const unrelated = await snapshot(server.redis, '[^tdmcw]*')
      const run = await ops(['taskflow:reset', '--force'])
      expect(run.code, run.stderr).to.equal(0)
      expect(run.stdout).to.match(/Successfully deleted [\d,]+ task-flow keys/)
      for (const pattern of ['task:*', 'tasks:*', 'dlq:*', 'metrics:tasks:state:*', 'celery-task-meta-*', 'worker:heartbeat:*']) {
        expect(await server.redis.keys(pattern), pattern).to.have.length(0)
      }
      expect(await server.redis.get('celery')).to.equal('y')
      expect(await server.redis.get('taskboard:1')).to.equal('x')
      expect(await server.redis.get('metrics:requests')).to.equal('7')
      expect(await snapshot(server.redis, '[^tdmcw]*')).to.deep.equal(unrelated)
      expect(await other.dbsize()).to.equal(11 + 1) // 10 tasks, their queue list, the note
      expect(writesBetween(before, await commandCalls(server.redis))).not.to.have.any.keys('flushdb', 'flushall')

      const all = await ops(['taskflow:reset', '--all-keys', '--force'])
      expect(all.code, all.stderr).to.equal(0)
      expect(await server.redis.dbsize()).to.equal(0)
      expect(await other.dbsize()).to.equal(12)
    } finally {
      await other.flushdb()
      other.disconnect()
    }
  })

  it('reset inspects by default, as reset_redis.py did, and resets with --confirm after a "yes"', async () => {
    const before = await commandCalls(server.redis)
    const look = await ops(['taskflow:reset'])
    expect(look.code, look.stderr).to.equal(0)
    expect(look.stdout)
      .to.match(/task:\*\s+3,000/)
      .and.match(/tasks:pending:primary\s+1,000/)
      .and.contain('Inspection only, nothing was deleted')
    const noTty = await ops(['taskflow:reset', '--confirm'])
    expect(noTty.code).to.equal(2)
    expect(writesBetween(before, await commandCalls(server.redis))).to.deep.equal({})
    expect(await server.redis.exists('tasks:pending:primary')).to.equal(1)
    const no = await runOpsInTty(['taskflow:reset', '--confirm'], 'no', {env: {REDIS_URL: server.url}})
    expect(no.code, no.stderr).to.equal(0)
    expect(await server.redis.keys('task:*')).to.have.length(3000)
    const yes = await runOpsInTty(['taskflow:reset', '--confirm'], 'yes', {env: {REDIS_URL: server.url}})
    expect(yes.code, yes.stderr).to.equal(0)
    expect(await server.redis.keys('task:*')).to.have.length(0)
    expect(await server.redis.get('taskboard:1')).to.equal('x')
  })

  it("tells reset_redis.py's bare --confirm from a production --confirm NAME", async () => {
    const {confirmSwitchOf} = await import('../src/commands/taskflow/reset.js')
    expect(confirmSwitchOf(['--confirm'])).to.deep.equal({argv: [], confirmSwitch: true})
    expect(confirmSwitchOf(['--confirm', '--force'])).to.deep.equal({argv: ['--force'], confirmSwitch: true})
    expect(confirmSwitchOf(['--confirm', 'cache:6379', '--profile', 'prod'])).to.deep.equal({
      argv: ['--confirm', 'cache:6379', '--profile', 'prod'],
      confirmSwitch: false,
    })
    expect(confirmSwitchOf(['--confirm=cache:6379'])).to.deep.equal({argv: ['--confirm=cache:6379'], confirmSwitch: false})
  })

  it('names host and port and masks the password when Redis is unreachable', async () => {
    const result = await runOps(['taskflow:inspect', '--redis-url', 'redis://user:sup3rsecret@127.0.0.1:1/0'])
    expect(result.code).to.equal(1)
    expect(result.stderr).to.contain('127.0.0.1:1')
    expect(result.stderr).not.to.contain('sup3rsecret')
  })
})
