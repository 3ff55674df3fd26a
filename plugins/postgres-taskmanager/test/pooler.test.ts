/**
 * The taskmanager commands behind a real PgBouncer in transaction mode, as many Django databases are reached in
 * production: each transaction of a client may run on another server connection, and a server connection passes from
 * client to client with whatever its sessions set on it.
 */
import {expect} from 'chai'
import pg from 'pg'

import {collect, runOps, spawnOps, waitUntil} from '../../../test/helpers/cli.js'
import {PgBouncer, startPgBouncer} from '../../../test/helpers/pgbouncer.js'
import {APPLICATION_NAMES, openTaskManager} from '../src/connection.js'
import {insertTasks, rowTexts, taskRow, watch} from './helpers/django-fixture.js'
import {duringMigrationLock, withDjangoDatabase} from './helpers/django-database.js'

describe('taskmanager commands behind PgBouncer in transaction mode', function () {
  this.timeout(120_000)
  const django = withDjangoDatabase('ops_tm_pooler')
  let bouncer: PgBouncer | undefined
  afterEach(async () => {
    await bouncer?.stop()
    bouncer = undefined
  })

  /** 2,000 rows, one in four PENDING, the rest DONE; a tenth of them watched. */
  const fill = async () => {
    await django.reset()
    const ids = await insertTasks(
      django.db,
      Array.from({length: 2000}, (_, i) => taskRow({status: i % 4 === 3 ? 'PENDING' : 'DONE'})),
    )
    await watch(
      django.db,
      ids.filter((_, i) => i % 10 === 0),
    )
  }
  const pooledUrl = () => bouncer!.url(new URL(django.url).pathname.slice(1))

  it("leaves the pooled server connection as it found it: the application's next transaction keeps its statement_timeout", async () => {
    await fill()
    // One server connection, so every client gets the one ops used; 5 s is what the installation gives each.
    bouncer = await startPgBouncer({poolSize: 1, connectQuery: 'SET statement_timeout = 5000'})
    const url = pooledUrl()
    const application = new pg.Client({connectionString: url})
    await application.connect()
    const timeoutSeen = async () => (await application.query('SHOW statement_timeout')).rows[0].statement_timeout as string
    try {
      expect(await timeoutSeen()).to.equal('5s')
      const runs = [
        ['taskmanager:summary'],
        ['taskmanager:stuck', '--hours', '0'],
        ['taskmanager:clear', '--status', 'DONE', '--dry-run', '--show-summary'],
        // Below 50,000 rows: the TypeORM path, with its own connection.
        ['taskmanager:clear', '--status', 'DONE', '--batch-size', '200', '--force', '--show-summary'],
      ]
      for (const args of runs) {
        const result = await runOps([...args, '--database-url', url])
        expect(result.code, `${args.join(' ')}\n${result.stdout}${result.stderr}`).to.equal(0)
        expect(await timeoutSeen(), args.join(' ')).to.equal('5s')
      }
      await django.db.query(
        `UPDATE task_manager_taskmanager SET status = 'DONE' WHERE id IN (SELECT id FROM task_manager_taskmanager ORDER BY id LIMIT 250)`,
      )
      const raw = await runOps([
        'taskmanager:clear',
        '--status',
        'DONE',
        '--use-cursor',
        '--batch-size',
        '100',
        '--force',
        '--database-url',
        url,
      ])
      expect(raw.code, raw.stdout + raw.stderr).to.equal(0)
      expect(await timeoutSeen(), 'the raw-SQL path').to.equal('5s')
      const {rows} = await django.db.query('SELECT status, count(*)::int AS n FROM task_manager_taskmanager GROUP BY status')
      expect(rows).to.deep.equal([{status: 'PENDING', n: 250}])
    } finally {
      await application.end()
    }
  })

  it("Ctrl-C while the plan waits on a migration's lock cancels its count through the pooler: exit 130, nothing left waiting", async () => {
    await fill()
    const before = await rowTexts(django.db)
    // The process id PgBouncer gives a client is its own, no backend's: only the protocol's cancel request finds the count.
    bouncer = await startPgBouncer({poolSize: 2})
    const waitingOps = async () =>
      (
        await django.db.query(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE application_name = 'ops taskmanager:clear' AND datname = current_database() AND wait_event_type = 'Lock'`,
        )
      ).rows[0].n as number
    await duringMigrationLock(django.url, async (untilGone) => {
      const child = spawnOps(['taskmanager:clear', '--status', 'DONE', '--force', '--database-url', pooledUrl()])
      child.stdin?.end()
      const done = collect(child, 30_000)
      await waitUntil(async () => (await waitingOps()) === 1, 'ops waiting on the lock', done)
      child.kill('SIGINT')
      const result = await done
      expect(result.code, result.stderr).to.equal(130)
      expect(result.stderr).to.contain('Interrupted (SIGINT) while planning: nothing was changed.')
      // The lock is still held: a count that was not cancelled would still be waiting for it.
      expect(await untilGone(waitingOps)).to.equal(0)
    })
    expect(await rowTexts(django.db)).to.deep.equal(before)
  })

  it('does not warn of another run for a pooled server connection an earlier run left idle, only for one that works', async () => {
    await fill()
    bouncer = await startPgBouncer({poolSize: 2})
    const clear = APPLICATION_NAMES.clear
    // An earlier run whose transactions went to both server connections: each keeps its application_name, idle.
    const earlier = await Promise.all(
      [0, 1].map(async () => {
        const client = new pg.Client({connectionString: pooledUrl(), application_name: clear})
        await client.connect()
        await client.query('BEGIN')
        return client
      }),
    )
    for (const client of earlier) await client.query('SELECT 1; COMMIT')
    await Promise.all(earlier.map((client) => client.end()))
    const db = await openTaskManager(pooledUrl(), 'task_manager_taskmanager', clear)
    const working = new pg.Client({connectionString: django.url, application_name: clear})
    try {
      await new Promise((r) => setTimeout(r, 700))
      // Without the idle limit, the server connection this run did not get reads as a run of its own.
      expect(await db.table.otherSessionsOf([clear], 3_600_000)).to.have.length(1)
      expect(await db.table.otherSessionsOf([clear], 500)).to.deep.equal([])
      // A run that is working: listed.
      await working.connect()
      const sleeping = working.query('SELECT pg_sleep(2)')
      await new Promise((r) => setTimeout(r, 200))
      const others = await db.table.otherSessionsOf([clear], 500)
      expect(others.map((o) => o.pid)).to.deep.equal([(working as unknown as {processID: number}).processID])
      await sleeping
    } finally {
      await working.end()
      await db.client.end()
    }
  })
})
