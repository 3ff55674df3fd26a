/**
 * How a clear's batches commit (batch-commit.ts): asynchronously by default, made durable by one synchronous commit
 * before anything is reported; synchronously with --synchronous-commit, or where the session's synchronous_commit is
 * not the default. Then a real crash of the server (an immediate shutdown: no WAL flushed), on a throwaway
 * PostgreSQL whose WAL writer waits 10 s: right after a clear exited 0 nothing comes back, and in the middle of a
 * clear the data stays consistent, every row gone is in the archive, and a re-run finishes.
 */
import {expect} from 'chai'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import pg from 'pg'

import {collect, parseJsonOutput, runOps, scratchFile, spawnOps} from '../../../test/helpers/cli.js'
import {startCommitCutter} from '../../../test/helpers/commit-cutter.js'
import {LocalPostgres, runAsServerUser, serverDirectory, startPostmaster} from '../../../test/helpers/standby.js'
import {postgresServerOnce, waitFor, which} from '../../../test/helpers/servers.js'
import {chooseBatchCommit} from '../src/batch-commit.js'
import {createDjangoSchema, generateTasks, rowTexts} from './helpers/django-fixture.js'
import {withDjangoDatabase} from './helpers/django-database.js'

interface ClearJson {
  data: {batchCommit: {asynchronous: boolean; reason: string}; execution: {deleted: number; batches: number; stillMatching: number}}
  details: string[]
}

const doneCount = async (db: pg.Client) =>
  (await db.query(`SELECT count(*)::int AS n FROM task_manager_taskmanager WHERE status = 'DONE'`)).rows[0].n as number

describe('taskmanager:clear batch commits', function () {
  this.timeout(240_000)

  describe('which synchronous_commit each batch runs with', () => {
    const django = withDjangoDatabase('ops_tm_commit')

    /** Every DELETE statement on the task table records the synchronous_commit of its transaction. */
    const recordCommitLevels = async () => {
      await django.reset()
      await generateTasks(django.db, 3000)
      await django.db.query(`
        DROP TABLE IF EXISTS commit_levels;
        CREATE TABLE commit_levels (level text NOT NULL);
        CREATE OR REPLACE FUNCTION record_commit_level() RETURNS trigger LANGUAGE plpgsql AS
          $$ BEGIN INSERT INTO commit_levels VALUES (current_setting('synchronous_commit')); RETURN NULL; END $$;
        CREATE TRIGGER record_commit_level AFTER DELETE ON task_manager_taskmanager
          FOR EACH STATEMENT EXECUTE FUNCTION record_commit_level();`)
    }
    const levels = async () => (await django.db.query('SELECT level FROM commit_levels')).rows.map((r) => r.level as string)
    const clear = async (...extra: string[]) => {
      const result = await runOps([
        'taskmanager:clear',
        '--database-url',
        django.url,
        '--status',
        'DONE',
        '--force',
        '--json',
        '--batch-size',
        '400',
        '--target-batch-ms',
        '0',
        ...extra,
      ])
      expect(result.code, result.stderr).to.equal(0)
      const doc = parseJsonOutput<ClearJson>(result)
      expect(doc.data.execution.stillMatching).to.equal(0)
      expect(await doneCount(django.db)).to.equal(0)
      return doc
    }

    for (const path of ['--use-cursor', '--use-orm']) {
      it(`by default (${path}), every batch commits with synchronous_commit off; the plan says the end makes them durable`, async () => {
        await recordCommitLevels()
        const doc = await clear(path)
        expect(doc.data.batchCommit.asynchronous).to.equal(true)
        expect(doc.details).to.include(
          "Batches commit asynchronously (synchronous_commit off in ops' own transactions); one synchronous commit at the end " +
            'makes them all durable before anything is reported (--synchronous-commit waits at every batch)',
        )
        const seen = await levels()
        expect(seen.length)
          .to.be.at.least(doc.data.execution.batches - 1)
          .and.above(3)
        expect([...new Set(seen)]).to.deep.equal(['off'])
      })
    }

    it('--synchronous-commit: every batch waits at its COMMIT (the session setting, on)', async () => {
      await recordCommitLevels()
      const doc = await clear('--use-cursor', '--synchronous-commit')
      expect(doc.data.batchCommit).to.deep.equal({asynchronous: false, reason: '--synchronous-commit'})
      expect(doc.details).to.include('Every batch waits at its COMMIT until it is durable (--synchronous-commit)')
      expect([...new Set(await levels())]).to.deep.equal(['on'])
    })

    it('the connection cut at the durable end: exit 1 says every batch was committed; nothing is left to delete', async () => {
      await recordCommitLevels()
      // The cut comes before that COMMIT reaches the server: the batches were committed asynchronously, not yet made durable.
      const cutter = await startCommitCutter(django.url, {commitNumber: 1, moment: 'before-commit', after: /ops_durable_point/})
      try {
        const result = await runOps(
          ['taskmanager:clear', '--database-url', cutter.url, '--status', 'DONE', '--force', '--use-cursor', '--batch-size', '400'],
          {},
        )
        expect(result.code, result.stderr).to.equal(1)
        expect(result.stderr).to.include('Every batch was committed, but making them durable failed')
        expect(result.stderr).to.include('its recovery may also undo the batches committed in its last moment')
        expect(cutter.cuts).to.equal(1)
      } finally {
        await cutter.close()
      }
      expect(await doneCount(django.db)).to.equal(0)
    })

    it("a database whose synchronous_commit is remote_apply keeps it for every batch (a DBA's choice is not relaxed)", async () => {
      await recordCommitLevels()
      const database = new URL(django.url).pathname.slice(1)
      await django.db.query(`ALTER DATABASE ${database} SET synchronous_commit = remote_apply`)
      try {
        const doc = await clear('--use-cursor')
        expect(doc.data.batchCommit).to.deep.equal({
          asynchronous: false,
          reason: 'synchronous_commit is remote_apply for this session, kept',
        })
        expect([...new Set(await levels())]).to.deep.equal(['remote_apply'])
      } finally {
        await django.db.query(`ALTER DATABASE ${database} SET synchronous_commit = on`)
      }
    })
  })

  it('the choice: asynchronous only where the session commits synchronously (on) and no synchronous standby paces it', () => {
    expect(chooseBatchCommit({level: 'on', synchronousStandbys: '', mayCreateTemporaryTables: true}, false).asynchronous).to.equal(true)
    expect(chooseBatchCommit({level: 'on', synchronousStandbys: '', mayCreateTemporaryTables: true}, true)).to.deep.equal({
      asynchronous: false,
      reason: '--synchronous-commit',
    })
    expect(
      chooseBatchCommit({level: 'on', synchronousStandbys: 'FIRST 1 (replica_a)', mayCreateTemporaryTables: true}, false),
    ).to.deep.equal({
      asynchronous: false,
      reason: "synchronous standbys are configured (synchronous_standby_names = 'FIRST 1 (replica_a)')",
    })
    for (const level of ['off', 'local', 'remote_write', 'remote_apply'])
      expect(chooseBatchCommit({level, synchronousStandbys: '', mayCreateTemporaryTables: true}, false).asynchronous, level).to.equal(false)
    expect(chooseBatchCommit({level: 'on', synchronousStandbys: '', mayCreateTemporaryTables: false}, false).asynchronous).to.equal(false)
  })

  describe('a crash of the server (immediate shutdown, WAL writer asleep for 10 s)', () => {
    let server: LocalPostgres
    let url: string
    let db: pg.Client

    before(async function () {
      // A server of its own that can be crashed: from local binaries, as the harness's own when it started one.
      const initdb = which('initdb')
      if ((await postgresServerOnce()).how !== 'binaries' || !initdb) this.skip()
      const dir = serverDirectory('ops-test-crash-')
      const data = join(dir, 'data')
      runAsServerUser(initdb!, ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'])
      // Asynchronous commits reach the WAL files only when the WAL writer wakes (10 s at most) or a full page is written.
      server = await startPostmaster(dir, data, {fsync: 'off', full_page_writes: 'off', wal_writer_delay: '10s'})
      url = server.url('postgres')
    })
    after(async () => {
      await db?.end().catch(() => {})
      await server?.stop()
    })

    const connect = async () => {
      await db?.end().catch(() => {})
      db = new pg.Client({connectionString: url})
      await db.connect()
    }
    const fill = async () => {
      await connect()
      await db.query('DROP SCHEMA public CASCADE; CREATE SCHEMA public')
      await createDjangoSchema(db)
      await generateTasks(db, 20_000)
      await db.query('CHECKPOINT')
    }
    const clearArgs = (...extra: string[]) => [
      'taskmanager:clear',
      '--database-url',
      url,
      '--status',
      'DONE',
      '--force',
      '--json',
      ...extra,
    ]

    it('right after a clear exited 0, a crash brings no deleted row back: the run was made durable before it reported', async () => {
      await fill()
      const result = await runOps(clearArgs('--use-cursor', '--batch-size', '1000', '--target-batch-ms', '0'))
      expect(result.code, result.stderr).to.equal(0)
      expect(parseJsonOutput<ClearJson>(result).data.execution.deleted).to.equal(12_400)
      await db.end()
      await server.crashAndRestart()
      await connect()
      expect(await doneCount(db)).to.equal(0)
    })

    it('mid-run: exit 1 says recent batches may be undone; the data is consistent, all rows gone archived, a re-run finishes', async () => {
      await fill()
      const before = await rowTexts(db)
      const done = new Set((await db.query(`SELECT id::text FROM task_manager_taskmanager WHERE status = 'DONE'`)).rows.map((r) => r.id))
      const archive = scratchFile('crash.jsonl')
      const archived = () =>
        new Set(
          readFileSync(archive, 'utf8')
            .split('\n')
            .filter(Boolean)
            .map((line) => String(JSON.parse(line).id)),
        )
      const child = spawnOps(
        clearArgs('--use-cursor', '--batch-size', '300', '--target-batch-ms', '0', '--sleep-ms', '30', '--archive', archive),
      )
      child.stdin?.end()
      const run = collect(child)
      await waitFor('a few batches', async () => {
        if ((await doneCount(db)) > done.size - 1500) throw new Error('not yet')
      })
      await db.end()
      await server.crashAndRestart()
      const result = await run
      expect(result.code, result.stdout).to.equal(1)
      const {error} = parseJsonOutput<{error: {message: string}}>(result)
      expect(error.message).to.include('its recovery may also undo the batches committed in its last moment')

      await connect()
      const after = await rowTexts(db)
      const inArchive = archived()
      // Every row of another status is there byte for byte; a DONE row is either there unchanged or gone and archived.
      for (const [id, text] of before) {
        if (!done.has(id)) expect(after.get(id), id).to.equal(text)
        else if (after.has(id)) expect(after.get(id), id).to.equal(text)
        else expect(inArchive.has(id), id).to.equal(true)
      }
      expect(after.size).to.be.below(before.size)
      // Link rows only point at rows that exist: each batch's link rows went with its task rows, or stayed with them.
      const {rows: dangling} = await db.query(
        `SELECT count(*)::int AS n FROM task_manager_taskwatcher_tasks l
          WHERE NOT EXISTS (SELECT 1 FROM task_manager_taskmanager t WHERE t.id = l.taskmanager_id)`,
      )
      expect(dangling[0].n).to.equal(0)

      const again = await runOps(clearArgs('--use-cursor', '--archive', archive))
      expect(again.code, again.stderr).to.equal(0)
      expect(await doneCount(db)).to.equal(0)
      const all = archived()
      expect([...done].filter((id) => !all.has(id))).to.deep.equal([])
      const final = await rowTexts(db)
      for (const [id, text] of before) if (!done.has(id)) expect(final.get(id), id).to.equal(text)
    })
  })
})
