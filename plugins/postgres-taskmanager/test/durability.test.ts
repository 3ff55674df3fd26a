/**
 * How a clear's batches commit (batch-commit.ts): asynchronously by default, and the run waits until the server has
 * flushed its WAL past the last batch before it reports; synchronously with --synchronous-commit, or where the
 * session's synchronous_commit is a DBA's stricter choice. Then real crashes of the server (an immediate shutdown: no
 * WAL flushed), on a throwaway PostgreSQL whose WAL writer sleeps 10 s: right after a clear exited 0 nothing comes
 * back; the wait cut short is reported, not called done; and in the middle of a clear the data stays consistent, every
 * row gone is in the archive, and a re-run finishes.
 */
import {expect} from 'chai'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import pg from 'pg'

import {collect, parseJsonOutput, runOps, scratchFile, spawnOps} from '../../../test/helpers/cli.js'
import {LocalPostgres, runAsServerUser, serverDirectory, startPostmaster} from '../../../test/helpers/standby.js'
import {postgresServerOnce, waitFor, which} from '../../../test/helpers/servers.js'
import {chooseBatchCommit} from '../src/batch-commit.js'
import {deleteInBatches, newStats, splitIdRange} from '../src/batches.js'
import {BatchRequest, TaskManagerTable} from '../src/task-manager-table.js'
import {createDjangoSchema, generateTasks, rowTexts} from './helpers/django-fixture.js'
import {withDjangoDatabase} from './helpers/django-database.js'

interface ClearJson {
  data: {
    batchCommit: {asynchronous: boolean; setting?: string; reason: string}
    execution: {deleted: number; batches: number; stillMatching: number}
  }
  details: string[]
}
const ASYNCHRONOUS_LINE =
  "Batches commit asynchronously (synchronous_commit off in ops' own transactions); the run waits until the server has " +
  'flushed them to disk before it reports (--synchronous-commit waits at every batch)'

const doneCount = async (db: pg.Client) =>
  (await db.query(`SELECT count(*)::int AS n FROM task_manager_taskmanager WHERE status = 'DONE'`)).rows[0].n as number

describe('taskmanager:clear batch commits', function () {
  this.timeout(240_000)

  describe('which synchronous_commit each batch runs with', () => {
    const django = withDjangoDatabase('ops_tm_commit')

    /** Every transaction that deletes task rows records the synchronous_commit it commits with (a deferred trigger: at COMMIT). */
    const recordCommitLevels = async () => {
      await django.reset()
      await generateTasks(django.db, 3000)
      await django.db.query(`
        DROP TABLE IF EXISTS commit_levels;
        CREATE TABLE commit_levels (xid bigint PRIMARY KEY, level text NOT NULL, pid int NOT NULL);
        CREATE OR REPLACE FUNCTION record_commit_level() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
          INSERT INTO commit_levels VALUES (txid_current(), current_setting('synchronous_commit'), pg_backend_pid())
            ON CONFLICT DO NOTHING;
          RETURN NULL;
        END $$;
        CREATE CONSTRAINT TRIGGER record_commit_level AFTER DELETE ON task_manager_taskmanager
          DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION record_commit_level();`)
    }
    /** The level of each deleting transaction, in commit order. */
    const levels = async () => (await django.db.query('SELECT level FROM commit_levels ORDER BY xid')).rows.map((r) => r.level as string)
    /** The same per worker (its connection's backend). */
    const levelsByWorker = async () =>
      (await django.db.query('SELECT array_agg(level ORDER BY xid) AS levels FROM commit_levels GROUP BY pid ORDER BY pid')).rows.map(
        (r) => r.levels as string[],
      )
    /** Asynchronous, but for the last: the short batch that ends the walk commits synchronously, and with it every batch before. */
    const expectAsynchronousUntilTheLast = (seen: string[], batches: number) => {
      expect(seen.length)
        .to.be.at.least(batches - 1)
        .and.above(3)
      expect(seen.slice(0, -1)).to.deep.equal(seen.slice(0, -1).map(() => 'off'))
      expect(seen.at(-1)).to.equal('on')
    }
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
      it(`by default (${path}), every batch commits with synchronous_commit off; the plan says the run waits for the disk`, async () => {
        await recordCommitLevels()
        const doc = await clear(path)
        expect(doc.data.batchCommit).to.include({asynchronous: true, setting: 'off'})
        expect(doc.details).to.include(ASYNCHRONOUS_LINE)
        expectAsynchronousUntilTheLast(await levels(), doc.data.execution.batches)
      })
    }

    it('--concurrency 2: each worker commits asynchronously until its last deleting batch, which waits for the disk', async () => {
      await recordCommitLevels()
      const doc = await clear('--use-cursor', '--concurrency', '2')
      const workers = await levelsByWorker()
      expect(workers).to.have.length(2)
      // Each one's synchronous COMMIT flushes the WAL up to it, the other's earlier batches included: no wait at the end.
      for (const seen of workers) {
        expect(seen.length).to.be.at.least(2)
        expect(seen.slice(0, -1)).to.deep.equal(seen.slice(0, -1).map(() => 'off'))
        expect(seen.at(-1)).to.equal('on')
      }
      expect(workers.flat()).to.have.length(doc.data.execution.batches - 2) // and each worker's batch that found none
    })

    it('--synchronous-commit: every batch waits at its COMMIT (the session setting, on)', async () => {
      await recordCommitLevels()
      const doc = await clear('--use-cursor', '--synchronous-commit')
      expect(doc.data.batchCommit).to.include({asynchronous: false, reason: '--synchronous-commit'})
      expect(doc.details).to.include('Every batch waits at its COMMIT until it is durable (--synchronous-commit)')
      expect([...new Set(await levels())]).to.deep.equal(['on'])
    })

    for (const [level, asynchronous] of [
      ['remote_apply', false],
      ['off', true],
    ] as const) {
      it(`a database whose synchronous_commit is ${level}: its batches keep it, and --synchronous-commit makes them wait`, async () => {
        await recordCommitLevels()
        const database = new URL(django.url).pathname.slice(1)
        await django.db.query(`ALTER DATABASE ${database} SET synchronous_commit = ${level}`)
        try {
          const doc = await clear('--use-cursor')
          expect(doc.data.batchCommit).to.deep.equal(
            asynchronous
              ? {asynchronous: true, reason: 'synchronous_commit is off for this session'}
              : {asynchronous: false, reason: `synchronous_commit is ${level} for this session, kept`},
          )
          if (asynchronous) expectAsynchronousUntilTheLast(await levels(), doc.data.execution.batches)
          else expect([...new Set(await levels())]).to.deep.equal([level])
          await recordCommitLevels()
          const strict = await clear('--use-cursor', '--synchronous-commit')
          expect(strict.data.batchCommit.asynchronous).to.equal(false)
          expect([...new Set(await levels())]).to.deep.equal([level === 'off' ? 'on' : level])
        } finally {
          await django.db.query(`ALTER DATABASE ${database} SET synchronous_commit = on`)
        }
      })
    }

    it('a walk stopped after an asynchronous batch (Ctrl-C) waits for the WAL flush; one ended by short batches need not', async () => {
      // Two workers take 620 DONE rows each: a full batch of 500 (asynchronous), then a short one; a worker done first
      // takes over the far half of the other's rest, fewer than 500 rows, so every batch after the first is short.
      for (const [workers, stopAfter, batch] of [
        [1, undefined, 200],
        [1, 3, 200],
        [2, undefined, 500],
      ] as const) {
        const label = `${workers} worker(s), stopped after ${stopAfter ?? '-'}`
        await django.reset()
        await generateTasks(django.db, 2000)
        const clients = Array.from({length: workers}, () => new pg.Client({connectionString: django.url}))
        for (const client of clients) await client.connect()
        try {
          const tables = await Promise.all(
            clients.map((client) => TaskManagerTable.open(client, {name: 'task_manager_taskmanager'}, 'test')),
          )
          const events: string[] = []
          const ctrlC = new AbortController()
          const {rows} = await django.db.query('SELECT min(id)::text AS min, max(id)::text AS max FROM task_manager_taskmanager')
          const stats = newStats(batch)
          const {snapshot} = await tables[0].countMatchingWithLinks({status: 'DONE'})
          const walk = deleteInBatches(
            {
              deleters: tables.map((table) => ({
                deleteBatch: async (request: BatchRequest) => {
                  const outcome = await table.deleteBatch(request)
                  events.push('batch')
                  if (events.filter((e) => e === 'batch').length === stopAfter) ctrlC.abort()
                  return outcome
                },
                ping: () => table.ping(),
                get deletionsDurable() {
                  return table.deletionsDurable
                },
              })),
              countLeft: (passedOver) => {
                events.push('count')
                return tables[0].countLeft({status: 'DONE'}, rows[0].max, snapshot, passedOver)
              },
              walPosition: async () => {
                events.push('wal end')
                return tables[0].walInsertPosition()
              },
              walFlushedTo: async (position) => {
                const flushed = await tables[0].walFlushedTo(position)
                events.push(flushed ? 'flushed' : 'not yet')
                return flushed
              },
            },
            {
              filter: {status: 'DONE'},
              ranges: splitIdRange(rows[0].min, rows[0].max, workers),
              batchSize: batch,
              targetMs: 0,
              maxBatchSize: batch,
              limits: {statementTimeoutMs: 30_000, lockTimeoutMs: 2000, synchronousCommit: 'off'},
              asynchronousCommit: true,
              sleepMs: 0,
            },
            ctrlC.signal,
            stats,
          )
          for await (const _ of walk);
          const order = events.filter((e) => e !== 'not yet')
          const lastBatch = order.lastIndexOf('batch')
          // Stopped after a full batch: where the WAL ends is noted and its flush waited for. Walked to the end: each
          // worker's last batch that deleted rows (a short one) committed synchronously, flushing the WAL up to it and
          // so every batch before it, of every worker: the final count comes straight after.
          expect(order.slice(lastBatch + 1), label).to.deep.equal(stopAfter ? ['wal end', 'flushed'] : ['count'])
          expect(
            tables.map((table) => table.deletionsDurable),
            label,
          ).to.deep.equal(Array(workers).fill(!stopAfter))
          if (stopAfter) expect(stats.batches, label).to.equal(stopAfter)
          else expect(stats.deleted, label).to.equal(1240)
          // 1,240 DONE rows in batches of 200, and the one that finds none.
          if (workers === 1 && !stopAfter) expect(stats.batches, label).to.equal(8)
        } finally {
          for (const client of clients) await client.end()
        }
      }
    })
  })

  it('the choice: asynchronous where the session commits on (ops sets off) or off (kept), unless synchronous standbys pace it', () => {
    const choose = (level: string, synchronousStandbys = '', flag = false) => chooseBatchCommit({level, synchronousStandbys}, flag)
    expect(choose('on')).to.deep.equal({asynchronous: true, setting: 'off', reason: "synchronous_commit off in ops' own transactions"})
    expect(choose('off')).to.deep.equal({asynchronous: true, reason: 'synchronous_commit is off for this session'})
    expect(choose('on', '', true)).to.include({asynchronous: false, setting: undefined, reason: '--synchronous-commit'})
    expect(choose('off', '', true)).to.include({asynchronous: false, setting: 'on', reason: '--synchronous-commit'})
    expect(choose('on', 'FIRST 1 (replica_a)')).to.deep.equal({
      asynchronous: false,
      reason: "synchronous standbys are configured (synchronous_standby_names = 'FIRST 1 (replica_a)')",
    })
    for (const level of ['local', 'remote_write', 'remote_apply']) {
      expect(choose(level).asynchronous, level).to.equal(false)
      expect(choose(level).setting, level).to.equal(undefined)
    }
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

    it('right after a clear exited 0, a crash brings no deleted row back: the run waited for the flush before it reported', async () => {
      await fill()
      const result = await runOps(clearArgs('--use-cursor', '--batch-size', '1000', '--target-batch-ms', '0'))
      expect(result.code, result.stderr).to.equal(0)
      expect(parseJsonOutput<ClearJson>(result).data.execution.deleted).to.equal(12_400)
      await db.end()
      await server.crashAndRestart()
      await connect()
      expect(await doneCount(db)).to.equal(0)
    })

    it('the wait for the flush cut short (Ctrl-C, then its backend terminated): exit 1 says so; a crash, a re-run finishes', async () => {
      await fill()
      const child = spawnOps(clearArgs('--use-cursor', '--batch-size', '300', '--target-batch-ms', '0', '--sleep-ms', '30'))
      child.stdin?.end()
      const run = collect(child)
      await waitFor('a few batches', async () => {
        if ((await doneCount(db)) > 12_400 - 1500) throw new Error('not yet')
      })
      // Stopped after a batch committed asynchronously, ops waits for the flush (the WAL writer sleeps 10 s): cut it off there.
      child.kill('SIGINT')
      let pid: number | undefined
      await waitFor('ops waiting for the WAL flush', async () => {
        const {rows} = await db.query(
          `SELECT pid FROM pg_stat_activity WHERE application_name = 'ops taskmanager:clear' AND query LIKE '%pg_current_wal_flush_lsn%'`,
        )
        if (rows.length === 0) throw new Error('not yet')
        pid = rows[0].pid
      })
      await db.query('SELECT pg_terminate_backend($1)', [pid])
      const result = await run
      expect(result.code, result.stdout).to.equal(1)
      const {error} = parseJsonOutput<{error: {message: string}}>(result)
      expect(error.message).to.include('Every batch was committed, but ops could not see the server write them to disk')
      expect(error.message).to.match(/[\d,]+ of 12,400 TaskManager records were deleted before the failure; no batch was in flight/)
      await db.end()
      await server.crashAndRestart()
      await connect()
      // What the server had not written was undone by its recovery; the re-run deletes it with the rest.
      const left = await doneCount(db)
      const again = await runOps(clearArgs('--use-cursor'))
      expect(again.code, again.stderr).to.equal(0)
      expect(parseJsonOutput<ClearJson>(again).data.execution.deleted).to.equal(left)
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
