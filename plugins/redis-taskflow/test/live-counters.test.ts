/**
 * counters:sync / counters:init while workers keep moving tasks: a real
 * concurrent writer (two loops on their own connections, in this process)
 * moves tasks between states, creates and deletes tasks, each time changing
 * the hash and both counters in one MULTI/EXEC as AsyncTaskFlow does. Such
 * traffic keeps `counter - true count` constant, so after a correct sync and
 * after the writer stops, every counter equals the true count.
 */
import {expect} from 'chai'
import {randomUUID} from 'node:crypto'

import {collect, parseJsonOutput, runOps, spawnOps} from '../../../test/helpers/cli.js'
import {counterKey, TASK_STATES, taskKey} from '../src/keyspace.js'
import {mkdtempSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import type {ResolvedUrl} from 'ops-cli/base'

import {measureStates} from '../src/census/instant.js'
import {connectRedis} from '../src/connection.js'
import {applyChanges, counterChanges} from '../src/repair/counters.js'
import {StateLedger} from '../src/census/state-ledger.js'
import {commandCalls, readCounters, setCounters, startWriter, trueStateCounts, withFreshRedis, writeTasks} from './fixtures.js'

const TASKS = 60_000

describe('counters under live traffic', function () {
  const server = withFreshRedis()
  let ids: string[]
  const ops = (args: string[]) => runOps(args, {env: {REDIS_URL: server.url}})

  beforeEach(async () => {
    await server.redis.flushdb()
    await server.redis.config('SET', 'notify-keyspace-events', '')
    ids = await writeTasks(server.redis, TASKS, (i) => ({state: TASK_STATES[i % TASK_STATES.length]}))
    const drifted = Object.fromEntries(TASK_STATES.map((s, i) => [s, TASKS / TASK_STATES.length + [7, -3, 0, 250, -1, 2][i]]))
    await setCounters(server.redis, drifted) // lost updates of the past: what the sync must repair
  })

  it('counters:sync --force ends with every counter equal to the true count while a writer moves tasks', async () => {
    const calls = await commandCalls(server.redis)
    // Every SET the server runs, with its key: the counters must only ever be moved with INCRBY.
    const monitor = await server.redis.monitor()
    const setKeys: string[] = []
    monitor.on('monitor', (_time: string, args: string[]) => args[0]?.toLowerCase() === 'set' && setKeys.push(args[1]))
    const writer = startWriter(server.url, ids)
    const movesBefore = writer.moves
    const result = await ops(['taskflow:counters:sync', '--force', '--json'])
    const movesDuring = writer.moves - movesBefore
    await new Promise((r) => setTimeout(r, 200)) // the writer keeps going after ops exits
    await writer.stop()
    expect(result.code, result.stderr).to.equal(0)
    const doc = parseJsonOutput<{data: {exact: boolean; note: string; changedDuringScan: number}}>(result)
    expect(doc.data.exact, doc.data.note).to.equal(true)
    expect(movesDuring, 'the writer must interleave with the scan').to.be.greaterThan(200)
    expect(doc.data.changedDuringScan).to.be.greaterThan(0)
    expect(await readCounters(server.redis)).to.deep.equal(await trueStateCounts(server.redis))
    // INCRBY only (the one SET is the instant's fence, deleted in the same script), and no server setting touched at all.
    monitor.disconnect()
    expect(setKeys.length, 'the instant script ran').to.be.greaterThan(0)
    expect(
      setKeys.filter((key) => !key.startsWith('~ops:census-fence:')),
      'keys set',
    ).to.deep.equal([])
    expect(await server.redis.keys('~ops:*'), 'fence keys left').to.deep.equal([])
    const after = await commandCalls(server.redis)
    expect((after.config ?? 0) - (calls.config ?? 0), 'CONFIG calls').to.equal(0)
    expect(await server.redis.config('GET', 'notify-keyspace-events')).to.deep.equal(['notify-keyspace-events', ''])
  })

  it('counters:init does the same when workers already run', async () => {
    const writer = startWriter(server.url, ids)
    const result = await ops(['taskflow:counters:init', '--force', '--json'])
    const moves = writer.moves
    await writer.stop()
    expect(result.code, result.stderr).to.equal(0)
    expect(moves).to.be.greaterThan(200)
    expect(await readCounters(server.redis)).to.deep.equal(await trueStateCounts(server.redis))
  })

  it('leaves a notification setting the server already had exactly as it was', async () => {
    await server.redis.config('SET', 'notify-keyspace-events', 'Kh')
    const writer = startWriter(server.url, ids)
    const result = await ops(['taskflow:counters:sync', '--force', '--json'])
    await writer.stop()
    expect(result.code, result.stderr).to.equal(0)
    expect(await readCounters(server.redis)).to.deep.equal(await trueStateCounts(server.redis))
    expect(((await server.redis.config('GET', 'notify-keyspace-events')) as string[])[1]).to.equal('hK')
  })

  it('a dry run is exact under live traffic too, and says it changed no server setting', async () => {
    const writer = startWriter(server.url, ids)
    const result = await ops(['taskflow:counters:sync', '--dry-run'])
    await writer.stop()
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).to.match(/Exact: [\d,]+ task keys changed during the scan/)
    expect(result.stdout).to.contain('Server settings changed: none')
    expect(await server.redis.config('GET', 'notify-keyspace-events')).to.deep.equal(['notify-keyspace-events', ''])
  })

  it('killed with SIGKILL in the middle of its scan, counters:sync leaves no trace on the server, and the next run is exact', async () => {
    await server.redis.config('SET', 'notify-keyspace-events', 'Ex') // the operator's own setting, which must survive
    const tracking = async () => Number(/tracking_clients:(\d+)/.exec(await server.redis.info('clients'))?.[1])
    expect(await tracking()).to.equal(0)
    const writer = startWriter(server.url, ids)
    const child = spawnOps(['taskflow:counters:sync', '--force'], {env: {REDIS_URL: server.url}})
    child.stdin?.end()
    const exited = collect(child)
    // Its change stream is open once the server counts a tracking client: the scan is under way.
    while ((await tracking()) === 0 && child.exitCode === null) await new Promise((r) => setTimeout(r, 5))
    child.kill('SIGKILL')
    const killed = await exited
    expect(killed.signal, killed.stdout).to.equal('SIGKILL')
    expect(killed.stdout).not.to.contain('Fixed')
    for (let i = 0; i < 100 && (await tracking()) > 0; i++) await new Promise((r) => setTimeout(r, 20))
    expect(await tracking(), 'tracking ended with the killed connection').to.equal(0)
    expect(((await server.redis.config('GET', 'notify-keyspace-events')) as string[])[1]).to.equal('xE')
    const next = await ops(['taskflow:counters:sync', '--force', '--json'])
    await writer.stop()
    expect(next.code, next.stderr).to.equal(0)
    expect(parseJsonOutput<{data: {exact: boolean}}>(next).data.exact).to.equal(true)
    expect(await readCounters(server.redis)).to.deep.equal(await trueStateCounts(server.redis))
    expect(((await server.redis.config('GET', 'notify-keyspace-events')) as string[])[1]).to.equal('xE')
  })

  it('the naive sync (scan, then SET the counted values) loses the moves made during its scan: the test can fail', async () => {
    const writer = startWriter(server.url, ids)
    await new Promise((r) => setTimeout(r, 100))
    const counted = await trueStateCounts(server.redis) // a scan while the writer runs, as fix_counter_sync did
    for (const state of TASK_STATES) await server.redis.set(counterKey(state), counted[state])
    const moves = writer.moves
    await writer.stop()
    expect(moves).to.be.greaterThan(200)
    expect(await readCounters(server.redis)).to.not.deep.equal(await trueStateCounts(server.redis))
  })
})

describe('counters under live traffic, with a ledger that spills to disk', function () {
  const server = withFreshRedis()
  let ids: string[]

  before(async () => {
    ids = await writeTasks(server.redis, 18_000, (i) => ({state: TASK_STATES[i % TASK_STATES.length]}))
    await setCounters(server.redis, Object.fromEntries(TASK_STATES.map((s, i) => [s, 18_000 / 6 + [5, 0, -9, 0, 0, 3][i]])))
  })

  it('measures exactly with memory for 1,024 keys: the rest goes to partition files, read back and removed', async () => {
    const connection = await connectRedis({url: server.url, source: 'flag'} as ResolvedUrl)
    const writer = startWriter(server.url, ids)
    // A temporary directory of this test's own, so the spill files it sees are this ledger's.
    const ownTmp = mkdtempSync(join(tmpdir(), 'ops-test-spill-'))
    const previousTmp = process.env.TMPDIR
    process.env.TMPDIR = ownTmp
    let spilled = false
    const watcher = setInterval(() => (spilled ||= readdirSync(ownTmp).some((f) => f.startsWith('ops-ledger-'))), 5)
    try {
      const measure = await measureStates(connection, {maxLedgerSlots: 1024})
      await applyChanges(connection, counterChanges(measure.census, measure.counters))
      await writer.stop()
      expect(spilled, 'the ledger spilled to disk').to.equal(true)
      expect(measure.exact, measure.note).to.equal(true)
      expect(measure.changedDuringScan).to.be.greaterThan(0)
      expect(await readCounters(server.redis)).to.deep.equal(await trueStateCounts(server.redis))
      expect(readdirSync(ownTmp)).to.deep.equal([])
    } finally {
      clearInterval(watcher)
      if (previousTmp === undefined) delete process.env.TMPDIR
      else process.env.TMPDIR = previousTmp
      rmSync(ownTmp, {recursive: true, force: true})
      await writer.stop()
      await connection.close()
    }
  })
})

describe('StateLedger', () => {
  it('spills past its slots and still finds every key: twice-counted keys and changed keys come back out', () => {
    const ledger = new StateLedger(64, 64)
    const keys = Array.from({length: 3000}, () => taskKey(randomUUID()))
    keys.forEach((key, i) => ledger.set(key, i % 6))
    // SCAN returning keys again after a spill (a rehash): recorded twice, once in a file and once in the table.
    const repeated = keys.slice(0, 100)
    repeated.forEach((key) => ledger.set(key, keys.indexOf(key) % 6))
    expect(ledger.size).to.equal(3100)
    const changed = [keys[0], keys[500], keys[2999], 'task:not-a-uuid']
    ledger.set('task:not-a-uuid', 7)
    const out = ledger.resolve(changed)
    const expected = new Array<number>(8).fill(0)
    for (const key of repeated) expected[keys.indexOf(key) % 6]++ // one of each pair
    expected[0 % 6]++ // keys[0] changed: its second record too
    expected[500 % 6]++
    expected[2999 % 6]++
    expected[7]++
    expect(out.slice(0, 8)).to.deep.equal(expected)
  })

  it('remembers one code per key, uuid keys and any other key alike, through growth', () => {
    const ledger = new StateLedger(8)
    const keys = Array.from({length: 5000}, () => taskKey(randomUUID()))
    keys.push('task:unknown_id', 'task:', 'task:ABCDEF00-0000-4000-8000-000000000000')
    keys.forEach((key, i) => expect(ledger.set(key, i % 7)).to.equal(undefined))
    expect(ledger.size).to.equal(keys.length)
    keys.forEach((key, i) => expect(ledger.get(key)).to.equal(i % 7))
    expect(ledger.set(keys[10], 5)).to.equal(10 % 7)
    expect(ledger.get(keys[10])).to.equal(5)
    expect(ledger.get(taskKey(randomUUID()))).to.equal(undefined)
    expect(ledger.size).to.equal(keys.length)
  })
})
