/**
 * taskmanager:clear against a replicated primary, as in production: a real
 * streaming standby whose replay a test pauses (ops waits, then finishes once
 * replay resumes) or which stops answering, the standby given as the target, a
 * VACUUM on the table, a cron window (--max-runtime), --concurrency workers
 * stopped by one Ctrl-C, and an application's role (no pg_monitor, a short
 * statement_timeout) rather than a superuser.
 */
import {expect} from 'chai'
import {readFileSync} from 'node:fs'
import pg from 'pg'

import {collect, flat, parseJsonOutput, runOps, spawnOps, waitForOutput} from '../../../test/helpers/cli.js'
import {serverDirectory, Standby, startReplicationClient, startStandby} from '../../../test/helpers/standby.js'
import {waitFor} from '../../../test/helpers/servers.js'
import {generateTasks, insertTasks, rowTexts, taskRow, watch} from './helpers/django-fixture.js'
import {duringMigrationLock, withAppRole, withDjangoDatabase} from './helpers/django-database.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

interface Execution {
  deleted: number
  stillMatching: number
  stoppedBy: string
  pausedMs: number
  workers: number
  longestTransactionMs: number
}

describe('taskmanager:clear in production conditions', function () {
  this.timeout(240_000)
  const django = withDjangoDatabase('ops_tm_prod')
  let ids: string[]
  let statuses: string[]

  const fill = async (rows = 3000) => {
    await django.reset()
    const made = Array.from({length: rows}, (_, i) => taskRow({status: i % 4 === 3 ? 'PENDING' : 'DONE'}))
    statuses = made.map((r) => r.status)
    ids = await insertTasks(django.db, made)
    await watch(
      django.db,
      ids.filter((_, i) => i % 10 === 0),
    )
  }
  const doneLeft = async () =>
    (await django.db.query(`SELECT count(*)::int AS n FROM task_manager_taskmanager WHERE status = 'DONE'`)).rows[0].n as number
  const expectOnlyPendingLeft = async (before: Map<string, string>) => {
    const after = await rowTexts(django.db)
    expect([...after.keys()]).to.deep.equal(ids.filter((_, i) => statuses[i] === 'PENDING'))
    for (const [id, text] of after) expect(text).to.equal(before.get(id))
  }
  const slowClear = (...extra: string[]) => [
    'taskmanager:clear',
    '--database-url',
    django.url,
    '--status',
    'DONE',
    '--use-cursor',
    '--batch-size',
    '100',
    '--target-batch-ms',
    '0',
    '--force',
    ...extra,
  ]

  describe('with a streaming standby', () => {
    let standby: Standby | undefined
    /** The test database on the standby, and the test's own connection to it. */
    let standbyUrl: string
    let replica: pg.Client

    before(async function () {
      standby = await startStandby()
      if (!standby) this.skip() // the primary is not one the harness started from local binaries
      standbyUrl = standby!.url(new URL(django.url).pathname.slice(1))
      replica = new pg.Client({connectionString: standbyUrl})
      await replica.connect()
    })
    after(async () => {
      await replica?.end().catch(() => {})
      await standby?.stop()
    })

    for (const where of ['measured on the replica (--replica-url)', 'measured on the primary (pg_stat_replication)'] as const) {
      it(`waits while the standby's replay is paused, ${where}, and finishes once it resumes`, async () => {
        await fill()
        const before = await rowTexts(django.db)
        await standby!.caughtUp(django.url)
        await replica.query('SELECT pg_wal_replay_pause()')
        const extra = where.includes('replica-url') ? ['--replica-url', standbyUrl] : []
        const child = spawnOps(slowClear('--max-replica-lag', '1s', '--sleep-ms', '100', ...extra))
        child.stdin?.end()
        try {
          await waitForOutput(child, /paused: replica lag [\d.]+m?s > 1s/, 60_000)
          // ops waits: nothing more is deleted while the standby does not replay.
          const paused = await doneLeft()
          await sleep(3000)
          expect(await doneLeft()).to.equal(paused)
          expect(paused).to.be.greaterThan(0)
        } finally {
          await replica.query('SELECT pg_wal_replay_resume()')
        }
        const result = await collect(child, 120_000)
        expect(result.code, result.stderr).to.equal(0)
        expect(result.stdout).to.contain(
          `Successfully deleted ${statuses.filter((s) => s === 'DONE').length.toLocaleString('en-US')} TaskManager records`,
        )
        await expectOnlyPendingLeft(before)
      })
    }

    it('waits while a --replica-url stops answering (a hung host), and goes on by itself once it answers again', async () => {
      await fill()
      const before = await rowTexts(django.db)
      await standby!.caughtUp(django.url)
      const child = spawnOps(slowClear('--max-replica-lag', '5s', '--sleep-ms', '100', '--replica-url', standbyUrl))
      child.stdin?.end()
      const done = collect(child, 120_000)
      await waitForOutput(child, /[\d,]+ \/ [\d,]+/)
      // The standby's backend serving ops' probe, and its postmaster: stopped, they neither answer nor accept.
      const {rows} = await replica.query(`SELECT pid FROM pg_stat_activity WHERE application_name = 'ops taskmanager:clear (replica lag)'`)
      const probe = rows[0].pid as number
      const postmaster = Number(readFileSync(`/proc/${probe}/stat`, 'utf8').split(') ')[1].split(' ')[1])
      const hung = [probe, postmaster]
      hung.forEach((pid) => process.kill(pid, 'SIGSTOP'))
      try {
        await waitForOutput(child, /paused: replica postgres:\/\/\S+ cannot be measured \([^)]*timeout[^)]*\): waiting for it/, 30_000)
        const paused = await doneLeft()
        await sleep(3000)
        expect(await doneLeft()).to.equal(paused)
        expect(paused).to.be.greaterThan(0)
      } finally {
        hung.forEach((pid) => process.kill(pid, 'SIGCONT'))
      }
      const result = await done
      expect(result.code, result.stderr).to.equal(0)
      await expectOnlyPendingLeft(before)
    })

    it('waits for standbys only: a WAL archiver and a stopped logical consumer are named in the plan, not waited for', async () => {
      await fill()
      const before = await rowTexts(django.db)
      await standby!.caughtUp(django.url)
      // Barman's streaming archiver is a pg_receivewal: it writes WAL and replays none (no replay position, ever).
      const archiver = startReplicationClient('pg_receivewal', ['-d', django.url, '-D', serverDirectory('ops-test-wal-')])
      await django.db.query(`SELECT pg_create_logical_replication_slot('ops_test_cdc', 'test_decoding')`)
      const consumer = startReplicationClient('pg_recvlogical', [
        '-d',
        django.url,
        '-S',
        'ops_test_cdc',
        '--start',
        '-f',
        '/dev/null',
        '-s',
        '1',
      ])
      try {
        await waitFor('both clients streaming', async () => {
          const {rows} = await django.db.query(
            `SELECT count(*)::int AS n FROM pg_stat_replication
              WHERE application_name IN ('pg_receivewal', 'pg_recvlogical') AND write_lsn IS NOT NULL`,
          )
          if (rows[0].n !== 2) throw new Error(`${rows[0].n} of 2`)
        })
        // A consumer that stopped acknowledging (a CDC pipeline down): its position stays behind for good.
        consumer.child.kill('SIGSTOP')
        // 23 batches, 100 ms apart: long enough that a receiver counted as a replica that never replays would pause the run.
        const result = await runOps(slowClear('--max-replica-lag', '1s', '--sleep-ms', '100', '--max-runtime', '30s'))
        expect(result.code, result.stdout + result.stderr).to.equal(0)
        const out = result.stdout.replace(/\s+/g, ' ')
        expect(out).to.contain('Standbys streaming from the primary now: walreceiver')
        expect(out).to.match(/Not waited for: .*pg_receivewal \(receives WAL and replays none, as pg_receivewal and pg_basebackup do\)/)
        expect(out).to.match(/Not waited for: .*pg_recvlogical \(a logical replication consumer: its position is what it acknowledged\)/)
        expect(out).not.to.contain('paused')
        await expectOnlyPendingLeft(before)
      } finally {
        consumer.child.kill('SIGCONT')
        await consumer.stop()
        await archiver.stop()
        await django.db.query(`SELECT pg_drop_replication_slot('ops_test_cdc')`)
      }
    })

    it('refuses to clear on the standby itself (exit 2, nothing planned); a dry run plans there and says it is one', async () => {
      await fill()
      await standby!.caughtUp(django.url)
      const args = ['taskmanager:clear', '--database-url', standbyUrl, '--status', 'DONE']
      const refused = await runOps([...args, '--force'])
      expect(refused.code, refused.stdout + refused.stderr).to.equal(2)
      expect(flat(refused.stderr)).to.contain(
        'is a standby (pg_is_in_recovery() is true): taskmanager:clear can only plan there (--dry-run); nothing was changed.',
      )
      expect(refused.stdout).not.to.contain('Found')
      const dry = await runOps([...args, '--dry-run'])
      expect(dry.code, dry.stderr).to.equal(0)
      const done = statuses.filter((st) => st === 'DONE').length
      expect(dry.stdout).to.contain(`Found ${done.toLocaleString('en-US')} TaskManager records to delete`)
      expect(dry.stdout.replace(/\s+/g, ' ')).to.contain('Read-only server: postgres://postgres@127.0.0.1:')
      expect(await doneLeft()).to.equal(done)
    })

    it('refuses --max-replica-lag for a role to which the standby is a row of NULLs, rather than pause on it forever', async () => {
      await fill()
      const before = await rowTexts(django.db)
      await withAppRole(django.db, django.url, async (asRole, role) => {
        const app = new pg.Client({connectionString: asRole})
        await app.connect()
        try {
          // What the role sees: the standby is there, its state and positions hidden (read as "never replays").
          const {rows} = await app.query('SELECT state, replay_lsn, replay_lag FROM pg_stat_replication')
          expect(rows).to.deep.equal([{state: null, replay_lsn: null, replay_lag: null}])
        } finally {
          await app.end()
        }
        const result = await runOps(slowClear('--max-replica-lag', '1s').map((a) => (a === django.url ? asRole : a)))
        expect(result.code, result.stdout + result.stderr).to.equal(2)
        expect(flat(result.stderr)).to.contain(
          `which role ${role} is not allowed to see (it sees 1 standby there, with every position hidden): nothing was deleted.`,
        )
        expect(await rowTexts(django.db)).to.deep.equal(before)
      })
    })
  })

  /** After fill(): ops, connected as `opsUrl`, pauses while a VACUUM run by the test's own (superuser) role works on the table. */
  const pausesOnVacuum = async (opsUrl: string) => {
    const before = await rowTexts(django.db)
    // A cursor pins the table's first page; VACUUM (FREEZE) waits for it, in pg_stat_progress_vacuum all the while.
    const pin = new pg.Client({connectionString: django.url})
    const vacuum = new pg.Client({connectionString: django.url})
    await pin.connect()
    await vacuum.connect()
    try {
      await pin.query('BEGIN')
      await pin.query('DECLARE pin CURSOR FOR SELECT * FROM task_manager_taskmanager')
      await pin.query('FETCH 1 FROM pin')
      const vacuuming = vacuum.query('VACUUM (FREEZE) task_manager_taskmanager')
      const child = spawnOps(slowClear('--pause-on-autovacuum').map((a) => (a === django.url ? opsUrl : a)))
      child.stdin?.end()
      let paused: number
      try {
        await waitForOutput(child, /paused: VACUUM \([a-z ]+\) on public\.task_manager_taskmanager/, 60_000)
        paused = await doneLeft()
        await sleep(2500)
        expect(await doneLeft()).to.equal(paused)
      } finally {
        await pin.query('COMMIT')
      }
      await vacuuming
      const result = await collect(child, 120_000)
      expect(result.code, result.stderr).to.equal(0)
      expect(paused).to.be.greaterThan(0)
      await expectOnlyPendingLeft(before)
    } finally {
      await pin.end()
      await vacuum.end()
    }
  }

  it('--pause-on-autovacuum waits while a VACUUM works on the table, then finishes', async () => {
    await fill()
    await pausesOnVacuum(django.url)
  })

  it('--pause-on-autovacuum, as an application role with pg_monitor, sees and waits for a vacuum run by another role', async () => {
    await fill()
    await withAppRole(django.db, django.url, async (asRole, role) => {
      await django.db.query(`GRANT pg_monitor TO ${role}`)
      await pausesOnVacuum(asRole)
    })
  })

  it("a role's lock_timeout behind a migration's lock: the plan names who holds the table, exit 1, nothing changed", async () => {
    await django.reset()
    await generateTasks(django.db, 1000)
    const done = await doneLeft()
    await withAppRole(django.db, django.url, async (asRole, role) => {
      await django.db.query(`ALTER ROLE ${role} SET lock_timeout = '500ms'`)
      const migration = Object.assign(new URL(django.url), {search: '?application_name=django%20migrate'}).toString()
      await duringMigrationLock(migration, async () => {
        for (const args of [['--dry-run'], ['--force']]) {
          const run = await runOps(['taskmanager:clear', '--status', 'DONE', ...args, '--database-url', asRole])
          expect(run.code, run.stderr).to.equal(1)
          expect(flat(run.stderr)).to.match(/task_manager_taskmanager"? is locked by another session: pid \d+ \(django migrate: /)
          expect(flat(run.stderr)).to.contain("The plan waited as long as this role's lock_timeout allows")
          expect(run.stderr).to.contain('Nothing was changed')
        }
      })
    })
    expect(await doneLeft()).to.equal(done)
  })

  it('a role whose statement_timeout is shorter than a read of the whole table still plans, clears and reports', async () => {
    await django.reset()
    await generateTasks(django.db, 200_000)
    const done = await doneLeft()
    await withAppRole(django.db, django.url, async (asRole, role) => {
      // As production roles often have; 5 ms is far less than counting 200,000 rows takes.
      await django.db.query(`ALTER ROLE ${role} SET statement_timeout = '5ms'`)
      const app = new pg.Client({connectionString: asRole})
      await app.connect()
      try {
        const cancelled = await app.query(`SELECT count(*) FROM task_manager_taskmanager WHERE status = 'DONE'`).catch((e: Error) => e)
        expect(String(cancelled)).to.contain('canceling statement due to statement timeout')
      } finally {
        await app.end()
      }
      const ops = (...args: string[]) => runOps([...args, '--database-url', asRole])
      for (const report of [ops('taskmanager:summary'), ops('taskmanager:stuck', '--hours', '1')]) {
        const result = await report
        expect(result.code, result.stderr).to.equal(0)
      }
      const dry = await ops('taskmanager:clear', '--status', 'DONE', '--dry-run')
      expect(dry.code, dry.stderr).to.equal(0)
      expect(dry.stdout).to.contain(`Found ${done.toLocaleString('en-US')} TaskManager records to delete`)
      const clear = await ops('taskmanager:clear', '--status', 'DONE', '--force', '--json')
      expect(clear.code, clear.stderr).to.equal(0)
      expect(parseJsonOutput<{done: number; data: {execution: Execution}}>(clear).data.execution.stillMatching).to.equal(0)
      expect(await doneLeft()).to.equal(0)
    })
  })

  it("a role with a 1 s idle_session_timeout: the connections that wait (the main one, the workers', TypeORM's) stay open", async () => {
    for (const path of [['--use-cursor', '--concurrency', '2'], []]) {
      await fill()
      const before = await rowTexts(django.db)
      await withAppRole(django.db, django.url, async (asRole, role) => {
        await django.db.query(`ALTER ROLE ${role} SET idle_session_timeout = '1s'`)
        // 1.5 s between batches; the main connection waits all along while the workers (or TypeORM's connection) delete.
        const result = await runOps(
          [
            'taskmanager:clear',
            '--database-url',
            asRole,
            '--status',
            'DONE',
            ...path,
            '--batch-size',
            '800',
            '--target-batch-ms',
            '0',
          ].concat(['--sleep-ms', '1500', '--force']),
        )
        expect(result.code, `${path.join(' ')}: ${result.stdout}${result.stderr}`).to.equal(0)
      })
      await expectOnlyPendingLeft(before)
    }
  })

  it('--max-runtime stops cleanly between batches, says what is left, exits 0; the next window finishes', async () => {
    await fill(6000)
    const before = await rowTexts(django.db)
    const result = await runOps(slowClear('--sleep-ms', '100', '--max-runtime', '1500ms', '--json'))
    expect(result.code, result.stderr).to.equal(0)
    const doc = parseJsonOutput<{done: number; data: {execution: Execution}}>(result)
    const left = await doneLeft()
    expect(doc.data.execution.stoppedBy).to.equal('max-runtime')
    expect(left).to.be.greaterThan(0)
    expect(doc.data.execution.stillMatching).to.equal(left)
    expect(doc.done + left).to.equal(statuses.filter((s) => s === 'DONE').length)
    expect(doc.done % 100).to.equal(0) // whole batches only

    const text = await runOps(slowClear('--max-runtime', '300ms', '--sleep-ms', '100'))
    expect(text.code, text.stderr).to.equal(0)
    expect(text.stdout).to.match(
      /Stopped by --max-runtime 300ms: deleted [\d,]+ TaskManager records; [\d,]+ matching rows are left; run the same command again \(in the next window\) to finish\./,
    )

    const rest = await runOps(slowClear('--max-runtime', '10m'))
    expect(rest.code, rest.stderr).to.equal(0)
    await expectOnlyPendingLeft(before)
  })

  it('--concurrency 3 deletes exactly the matching rows over disjoint id ranges, each worker on its own connection', async () => {
    await fill(6000)
    const before = await rowTexts(django.db)
    const child = spawnOps(slowClear('--concurrency', '3', '--sleep-ms', '20', '--json'))
    child.stdin?.end()
    let workers: string[] = []
    for (let i = 0; i < 100 && workers.length < 3; i++) {
      await sleep(100)
      const {rows} = await django.db.query(
        `SELECT application_name FROM pg_stat_activity WHERE application_name LIKE 'ops taskmanager:clear (worker %' ORDER BY 1`,
      )
      workers = rows.map((r) => r.application_name)
    }
    const result = await collect(child, 120_000)
    expect(result.code, result.stderr).to.equal(0)
    expect(workers).to.deep.equal([
      'ops taskmanager:clear (worker 1)',
      'ops taskmanager:clear (worker 2)',
      'ops taskmanager:clear (worker 3)',
    ])
    const doc = parseJsonOutput<{done: number; data: {execution: Execution}}>(result)
    expect(doc.data.execution.workers).to.equal(3)
    expect(doc.done).to.equal(statuses.filter((s) => s === 'DONE').length)
    await expectOnlyPendingLeft(before)
  })

  it('--concurrency 2: one Ctrl-C stops every worker after its batch in flight (exit 130); a re-run finishes', async () => {
    await fill(6000)
    const before = await rowTexts(django.db)
    const child = spawnOps(slowClear('--concurrency', '2', '--sleep-ms', '50'))
    child.stdin?.end()
    await waitForOutput(child, /batch \d+ \(/, 60_000)
    await sleep(300)
    child.kill('SIGINT')
    const result = await collect(child, 60_000)
    expect(result.code, result.stderr).to.equal(130)
    const left = await doneLeft()
    expect(left).to.be.greaterThan(0)
    expect(left % 100).to.equal(0) // whole batches: each worker's range holds a multiple of 100 DONE rows here
    const {rows} = await django.db.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'ops taskmanager:clear%'`,
    )
    expect(rows[0].n).to.equal(0)
    const rest = await runOps(slowClear('--concurrency', '2'))
    expect(rest.code, rest.stderr).to.equal(0)
    await expectOnlyPendingLeft(before)
  })
})
