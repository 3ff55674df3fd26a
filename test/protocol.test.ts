/**
 * The safety protocol (docs/protocol.md), tested through a test-only command built on
 * the public base API, against a real PostgreSQL table and real Redis keys.
 */
import {expect} from 'chai'
import {Redis} from 'ioredis'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import pg from 'pg'

import {collect, flat, OPS_HOME, parseJsonOutput, ROOT, runOps, runOpsInTty, Screen, spawnOps, waitForOutput} from './helpers/cli.js'
import {createWidgets} from '../examples/plugin-template/test/widgets-table.js'
import {RateMeter} from '../src/base/progress.js'
import {count, wrap} from '../src/base/format.js'
import {freshDatabase, freshRedis} from './helpers/servers.js'

const entry = join(ROOT, 'test', 'fixtures', 'protocol-cli.ts')
const fixture = {entry}

describe('the destructive-command protocol', function () {
  let url: string
  let db: pg.Client

  before(async function () {
    url = await freshDatabase('ops_protocol')
    db = new pg.Client({connectionString: url})
    await db.connect()
  })
  after(async () => db?.end())

  beforeEach(async () => {
    // 2,000 widgets, every fourth one to keep.
    await createWidgets(db, 2000, (i) => ({kind: i % 4 === 0 ? 'keep' : 'drop', payload: `payload ${i}`}))
  })

  const snapshot = async () => (await db.query('SELECT id, kind, payload FROM widgets ORDER BY id')).rows
  const deletedTuples = async () => {
    // Statistics reach pg_stat_* lazily; flush this backend's and drop the cached snapshot.
    await db.query('SELECT pg_stat_force_next_flush()')
    await db.query('SELECT pg_stat_clear_snapshot()')
    const {rows} = await db.query(`SELECT n_tup_del::int AS n FROM pg_stat_user_tables WHERE relname = 'widgets'`)
    return rows[0].n as number
  }
  const clear = (...args: string[]) => ['widgets:clear', '--database-url', url, '--kind', 'drop', ...args]

  it('prints the plan and writes nothing at all with --dry-run', async () => {
    const before = await snapshot()
    const deletedBefore = await deletedTuples()
    const result = await runOps(clear('--dry-run', '--show-summary'), fixture)
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).to.contain('Found 1,500 widgets to delete')
    expect(result.stdout).to.contain('DRY RUN MODE - No records will be deleted')
    expect(result.stdout).to.contain('drop: 1500')
    await new Promise((r) => setTimeout(r, 700)) // let the CLI's backend report its statistics
    expect(await deletedTuples()).to.equal(deletedBefore)
    expect(await snapshot()).to.deep.equal(before)
  })

  it('off a terminal a slow plan prints no waiting line: plain output and --json stay as they were', async () => {
    const plain = await runOps(clear('--dry-run', '--plan-delay-ms', '1200'), fixture)
    expect(plain.code, plain.stderr).to.equal(0)
    expect(plain.stdout.split('\n')[0]).to.equal('Found 1,500 widgets to delete')
    expect(plain.stdout + plain.stderr).not.to.contain('Counting')
    const json = await runOps(clear('--dry-run', '--plan-delay-ms', '1200', '--json'), fixture)
    expect(parseJsonOutput<{outcome: string}>(json).outcome).to.equal('dry-run')
    expect(json.stderr).not.to.contain('Counting')
  })

  it('a failing batch: says exactly what was done before it (nothing, or the committed batches), exit 1', async () => {
    const before = await snapshot()
    const first = await runOps(clear('--force', '--fail-at-batch', '1'), fixture)
    expect(first.code, first.stderr).to.equal(1)
    expect(flat(first.stderr)).to.contain(
      'batch 1 failed Nothing was deleted before the failure (a batch in flight was rolled back whole). ' +
        'Run the same command again once its cause is fixed.',
    )
    expect(await snapshot()).to.deep.equal(before)
    const third = await runOps(clear('--force', '--fail-at-batch', '3'), fixture)
    expect(third.code, third.stderr).to.equal(1)
    expect(flat(third.stderr)).to.contain(
      'batch 3 failed 200 of 1,500 widgets were deleted before the failure; the batch in flight was rolled back whole. ' +
        'Run the same command again to finish.',
    )
    expect((await snapshot()).length).to.equal(before.length - 200)
    // Batch 14 finds nothing left: every planned widget was deleted before it failed.
    const last = await runOps(clear('--force', '--fail-at-batch', '14'), fixture)
    expect(last.code, last.stderr).to.equal(1)
    expect(flat(last.stderr)).to.contain(
      'batch 14 failed All 1,300 widgets planned were deleted before the failure. Run the same command again to make sure none is left.',
    )
  })

  it('a batch whose COMMIT got no answer: says it may have been applied, never "rolled back whole", exit 1', async () => {
    const before = await snapshot()
    const first = await runOps(clear('--force', '--unanswered-at-batch', '1'), fixture)
    expect(first.code, first.stderr).to.equal(1)
    expect(flat(first.stderr)).to.contain(
      'batch 1: no answer to COMMIT Nothing was deleted before the failure (but perhaps the batch in flight: its COMMIT got no answer). ' +
        'Run the same command again once its cause is fixed.',
    )
    // The fixture's server did commit it: ops could not know.
    expect((await snapshot()).length).to.equal(before.length - 100)
    const third = await runOps(clear('--force', '--unanswered-at-batch', '3'), fixture)
    expect(third.code, third.stderr).to.equal(1)
    expect(flat(third.stderr)).to.contain(
      'batch 3: no answer to COMMIT 200 of 1,400 widgets were deleted before the failure; ' +
        'the batch in flight may have been too (its COMMIT got no answer). Run the same command again to finish.',
    )
    expect(first.stderr + third.stderr).not.to.contain('rolled back')
    // For a script: the --json document's error code tells it from a batch rolled back.
    const json = await runOps(clear('--force', '--unanswered-at-batch', '2', '--json'), fixture)
    expect(json.code).to.equal(1)
    expect(parseJsonOutput<{error: {code: string; message: string}}>(json).error).to.include({code: 'BATCH_IN_FLIGHT_OUTCOME_UNKNOWN'})
    const failed = await runOps(clear('--force', '--fail-at-batch', '2', '--json'), fixture)
    expect(parseJsonOutput<{error: {code?: string}}>(failed).error.code).to.equal(undefined)
  })

  it('refuses without a TTY and without --force, exits 2, never hangs, deletes nothing', async () => {
    const before = await snapshot()
    const result = await runOps(clear(), {...fixture, timeoutMs: 30_000})
    expect(result.code).to.equal(2)
    expect(result.stderr).to.match(/Refusing to delete 1,500 widgets without confirmation/)
    expect(result.stderr).to.contain('--force')
    expect(await snapshot()).to.deep.equal(before)
  })

  it('changes nothing when the user answers "no" at the prompt', async () => {
    const before = await snapshot()
    const result = await runOpsInTty(clear(), 'no', fixture)
    expect(result.stdout).to.contain('Are you sure you want to delete 1,500 widgets? (yes/no)')
    expect(result.stdout).to.contain('Operation cancelled')
    expect(result.code).to.equal(0)
    expect(await snapshot()).to.deep.equal(before)
  })

  it('treats an empty answer as no (the default)', async () => {
    const before = await snapshot()
    const result = await runOpsInTty(clear(), '', fixture)
    expect(result.stdout).to.contain('Operation cancelled')
    expect(await snapshot()).to.deep.equal(before)
  })

  for (const answer of ['yes', 'y']) {
    it(`deletes exactly the matching rows when the user answers "${answer}"`, async () => {
      const kept = (await snapshot()).filter((r) => r.kind === 'keep')
      const result = await runOpsInTty(clear(), answer, fixture)
      expect(result.code, result.stdout).to.equal(0)
      expect(result.stdout).to.contain('Successfully deleted 1,500 widgets')
      expect(await snapshot()).to.deep.equal(kept)
    })
  }

  it('prints exactly one JSON document on stdout with --json', async () => {
    const result = await runOps(clear('--force', '--json'), fixture)
    expect(result.code, result.stderr).to.equal(0)
    const doc = parseJsonOutput<{outcome: string; planned: number; done: number; noun: string; details: string[]}>(result)
    expect(doc).to.include({outcome: 'done', planned: 1500, done: 1500, noun: 'widgets'})
    // The plan's detail lines, which plain output prints under "Found …".
    expect(doc.details).to.deep.equal(['Kind: drop'])
    expect(result.stdout.trim().startsWith('{')).to.equal(true)
    expect(result.stdout).not.to.contain('Successfully')
  })

  it('prints a JSON error document and exits 1 when the server is unreachable, password masked', async () => {
    const dead = 'postgres://postgres:hunter2secret@127.0.0.1:1/nowhere'
    const result = await runOps(['widgets:clear', '--database-url', dead, '--force', '--json'], fixture)
    expect(result.code).to.equal(1)
    const doc = parseJsonOutput<{error: {message: string; exit: number}}>(result)
    expect(doc.error.message).to.contain('Could not connect to PostgreSQL at 127.0.0.1:1')
    expect(doc.error.exit).to.equal(1)
    expect(result.stdout + result.stderr).not.to.contain('hunter2secret')
  })

  it('names host and port and masks the password in a plain error too', async () => {
    const dead = 'postgres://postgres:hunter2secret@127.0.0.1:1/nowhere'
    const result = await runOps(['widgets:clear', '--database-url', dead, '--force'], fixture)
    expect(result.code).to.equal(1)
    expect(result.stderr).to.contain('127.0.0.1:1')
    expect(result.stderr).to.contain('postgres:****@')
    expect(result.stdout + result.stderr).not.to.contain('hunter2secret')
  })

  it('exits 2 on bad usage', async () => {
    const result = await runOps(['widgets:clear', '--database-url', url, '--batch-size', 'many'], fixture)
    expect(result.code).to.equal(2)
  })

  describe('on the screen of a real terminal (120x35)', () => {
    const lastAudit = () =>
      readFileSync(join(OPS_HOME, 'data', 'audit.log'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
        .at(-1)

    it('draws each batch as "batch N (R rows, T ms)", and the finished line without an ETA', async () => {
      const screen = await Screen.start(clear('--force', '--batch-size', '100', '--delay-ms', '60'), fixture)
      const live = await screen.waitFor(/batch \d+ \(100 rows, \d+ ms\)/)
      expect(live).to.match(/› [\d,]+ \/ 1,500 \([\d.]+%\) · [\d,]+\/s · ETA \S+ · elapsed \S+ · batch \d+ \(100 rows, \d+ ms\)/)
      const {code, screen: end} = await screen.exit()
      expect(code, end).to.equal(0)
      expect(end).to.match(/^✔ Deleting widgets: 1,500 \/ 1,500 \(100\.0%\) in [\d.]+m?s · [\d,]+\/s$/m)
      expect(end).not.to.contain('ETA')
      expect(end).to.contain('Successfully deleted 1,500 widgets')
    })

    it('"Done in" is the work\'s own time, not the seconds the user spent reading the prompt', async () => {
      const screen = await Screen.start(clear(), fixture)
      await screen.waitFor('Are you sure you want to delete 1,500 widgets? (yes/no)')
      const reading = 3000
      await new Promise((r) => setTimeout(r, reading))
      await screen.answer('yes')
      const {code, screen: end} = await screen.exit()
      expect(code, end).to.equal(0)
      const done = /^Done in ([\d.]+)(ms|s)\.$/m.exec(end)
      expect(done, end).not.to.equal(null)
      const shownMs = Number(done![1]) * (done![2] === 's' ? 1000 : 1)
      const entry = lastAudit()
      expect(entry.promptMs).to.be.at.least(reading)
      // The screen and the audit log tell the same work time, and it leaves the prompt out.
      expect(Math.abs(shownMs - entry.durationMs)).to.be.lessThan(100)
      expect(entry.durationMs + entry.promptMs).to.be.at.least(reading)
      expect(entry.durationMs).to.be.lessThan(reading)
    })

    it('draws an interrupted step as stopped (■), not done (✔), and says what was done', async () => {
      const screen = await Screen.start(clear('--force', '--batch-size', '100', '--delay-ms', '150'), fixture)
      await screen.waitFor(/[\d,]+ \/ 1,500/)
      await screen.interrupt()
      const {code, screen: end} = await screen.exit()
      expect(code, end).to.equal(130)
      expect(end).to.match(/^■ Deleting widgets: stopped at [\d,]+ \/ 1,500 \([\d.]+%\) after [\d.]+m?s · [\d,]+\/s \(interrupted\)$/m)
      expect(end).not.to.match(/✔ Deleting widgets/)
      expect(end).to.match(/Interrupted: deleted [\d,]+ of 1,500 widgets in/)
      await runOps(clear('--force'), fixture)
    })

    it('says what a slow plan waits for, with its seconds, and erases the line once the plan is printed', async () => {
      const screen = await Screen.start(clear('--dry-run', '--plan-delay-ms', '2500'), fixture)
      const waiting = await screen.waitFor(/❯ Counting what matches · [12]s/)
      expect(waiting).not.to.contain('Found')
      const {code, screen: end} = await screen.exit()
      expect(code, end).to.equal(0)
      expect(end).not.to.contain('Counting what matches')
      expect(end.split('\n')[0]).to.equal('Found 1,500 widgets to delete')
    })

    it("wraps a long plan line at the terminal's width, its continuation indented, no word cut", async () => {
      const label = Array.from({length: 14}, (_, i) => `word${i},`).join(' ')
      const screen = await Screen.start(clear('--dry-run', '--label', label), {...fixture, width: 50})
      const {code, screen: end} = await screen.exit()
      expect(code, end).to.equal(0)
      const lines = end.split('\n')
      expect(
        lines.every((l) => l.length <= 50),
        end,
      ).to.equal(true)
      const start = lines.findIndex((l) => l.startsWith('Label: '))
      const block = lines.slice(
        start,
        lines.findIndex((l) => l.startsWith('DRY RUN')),
      )
      expect(block.length).to.be.greaterThan(1)
      expect(block.slice(1).every((l) => l.startsWith('  '))).to.equal(true)
      expect(block.map((l) => l.trim()).join(' ')).to.equal(`Label: ${label}`)
    })
  })

  it('records a refusal without a TTY as "refused" in the audit log, not "failed"', async () => {
    const result = await runOps(clear(), {...fixture, timeoutMs: 30_000})
    expect(result.code).to.equal(2)
    const audit = readFileSync(join(OPS_HOME, 'data', 'audit.log'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
    expect(audit.at(-1)).to.include({outcome: 'refused', planned: 1500, done: 0})
  })

  it('a second SIGINT stops at once, exit 130: the server rolls back the batch in flight, and only whole batches are gone', async () => {
    const child = spawnOps(clear('--force', '--batch-size', '100', '--delay-ms', '3000'), fixture)
    child.stdin?.end()
    const done = collect(child)
    await waitForOutput(child, /\d+ \/ 1,500/) // the first batch has committed; the second sleeps inside its transaction
    child.kill('SIGINT')
    await waitForOutput(child, /SIGINT received/)
    const started = Date.now()
    child.kill('SIGINT')
    const result = await done
    expect(result.code, result.stderr).to.equal(130)
    expect(Date.now() - started, 'it did not wait for the batch in flight').to.be.lessThan(2000)
    expect(flat(result.stderr)).to.contain('Second SIGINT: stopping now; the server rolls back the batch in flight')
    const left = (await db.query(`SELECT count(*)::int AS n FROM widgets WHERE kind = 'drop'`)).rows[0].n
    expect(left).to.equal(1400)
  })

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`on ${signal} mid-run finishes the batch in flight, reports, exits 130, and a re-run finishes`, async () => {
      const kept = (await snapshot()).filter((r) => r.kind === 'keep')
      const child = spawnOps(clear('--force', '--batch-size', '100', '--delay-ms', '150'), fixture)
      child.stdin?.end()
      const done = collect(child)
      await waitForOutput(child, /\d+ \/ 1,500/) // the first batch has committed
      child.kill(signal)
      const result = await done
      expect(result.code, result.stderr).to.equal(130)
      const match = /Interrupted: deleted ([\d,]+) of 1,500 widgets/.exec(result.stderr)
      expect(match, result.stderr).not.to.equal(null)
      const reported = Number(match![1].replace(/,/g, ''))
      const left = (await db.query(`SELECT count(*)::int AS n FROM widgets WHERE kind = 'drop'`)).rows[0].n
      // Whole batches only: the batch in flight committed, nothing half-done.
      expect(reported % 100).to.equal(0)
      expect(reported).to.be.greaterThan(0).and.lessThan(1500)
      expect(left).to.equal(1500 - reported)
      expect((await snapshot()).filter((r) => r.kind === 'keep')).to.deep.equal(kept)
      // The audit log records the interrupted run with what it did.
      const audit = readFileSync(join(OPS_HOME, 'data', 'audit.log'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))
      expect(audit.at(-1)).to.include({outcome: 'interrupted', planned: 1500, done: reported})

      const rerun = await runOps(clear('--force'), fixture)
      expect(rerun.code).to.equal(0)
      expect(await snapshot()).to.deep.equal(kept)
    })
  }
})

describe('the protocol against real Redis keys', function () {
  let redis: Redis
  let url: string

  before(async () => {
    url = (await freshRedis()).url
    redis = new Redis(url)
  })
  after(() => redis?.disconnect())

  beforeEach(async () => {
    await redis.flushdb()
    const pipeline = redis.pipeline()
    for (let i = 0; i < 1000; i++) pipeline.set(`doomed:${i}`, 'x')
    for (let i = 0; i < 100; i++) pipeline.set(`precious:${i}`, 'y')
    await pipeline.exec()
  })

  const writeCalls = async () => {
    const info = await redis.info('commandstats')
    return [...info.matchAll(/cmdstat_(\w+):calls=(\d+)/g)]
      .filter(([, name]) => ['unlink', 'del', 'set', 'flushdb', 'flushall'].includes(name))
      .map(([, name, calls]) => `${name}=${calls}`)
      .sort()
  }

  it('issues no write command with --dry-run (INFO commandstats)', async () => {
    const before = await writeCalls()
    const result = await runOps(['keys:clear', '--redis-url', url, '--pattern', 'doomed:*', '--dry-run'], fixture)
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).to.contain('Found 1,000 keys to delete')
    expect(await writeCalls()).to.deep.equal(before)
    expect(await redis.dbsize()).to.equal(1100)
  })

  it('removes only the matching keys once forced', async () => {
    const result = await runOps(['keys:clear', '--redis-url', url, '--pattern', 'doomed:*', '--force'], fixture)
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).to.contain('Successfully deleted 1,000 keys')
    expect(await redis.dbsize()).to.equal(100)
    expect((await redis.keys('precious:*')).length).to.equal(100)
  })

  it('exits 130 on SIGINT with the keys removed so far reported', async () => {
    const child = spawnOps(
      ['keys:clear', '--redis-url', url, '--pattern', 'doomed:*', '--force', '--batch-size', '50', '--delay-ms', '100'],
      fixture,
    )
    child.stdin?.end()
    const done = collect(child)
    await waitForOutput(child, /\d+ \/ 1,000/)
    child.kill('SIGINT')
    const result = await done
    expect(result.code).to.equal(130)
    const reported = Number(/Interrupted: deleted ([\d,]+) of 1,000 keys/.exec(result.stderr)![1].replace(/,/g, ''))
    expect(await redis.dbsize()).to.equal(1100 - reported)
  })
})

describe('plan and progress lines, as printed', () => {
  it('wraps an indented line keeping its indentation, continuations deeper, no lone mark on a line', () => {
    const line = '   Exact: 0 task keys changed during the scan and were re-read with the counters in one script (one instant).'
    expect(wrap(line, 60, '     ')).to.deep.equal([
      '   Exact: 0 task keys changed during the scan and were',
      '     re-read with the counters in one script (one instant).',
    ])
    // Short indented lines and table rows come back exactly as given.
    expect(wrap('   ACTIVE    1001 1000 -1', 100, '     ')).to.deep.equal(['   ACTIVE    1001 1000 -1'])
    expect(wrap('Status: SCHEDULED — breathecode.assignments.tasks', 18, '  ')).to.deep.equal([
      'Status:',
      '  SCHEDULED —',
      '  breathecode.assignments.tasks',
    ])
    expect(wrap('x'.repeat(30), 20, '  ')).to.deep.equal(['x'.repeat(30)])
  })

  it('groups counts by thousands as the original tools print them, negative and large ones too', () => {
    const cases: [number, string][] = [
      [0, '0'],
      [999, '999'],
      [1000, '1,000'],
      [620_000, '620,000'],
      [1_234_567, '1,234,567'],
      [-1234, '-1,234'],
      [Number.MAX_SAFE_INTEGER, '9,007,199,254,740,991'],
      [2 ** 60, '1,152,921,504,606,847,000'],
      [1234.5678, '1,234.568'],
    ]
    for (const [n, text] of cases) expect(count(n), String(n)).to.equal(text)
  })

  it('shows "ETA <1s", never "ETA 0ms", while a little work is left', async () => {
    const meter = new RateMeter(1000)
    await new Promise((r) => setTimeout(r, 20))
    expect(meter.describe({done: 999})).to.match(/ · ETA <1s · /)
    // 999 left at the rate of 1 done: any duration() form, hours or days included when a loaded machine was slow to get here.
    expect(meter.describe({done: 1})).to.match(/ · ETA (\d+(\.\d)?s|\d+m \d\ds|\d+h \d\dm|\d+d \d\dh) · /)
  })
})
