/**
 * The real `ops` binary: clear production rows into an archive table, put them
 * back with taskmanager:restore, and survive kill -9 in the middle of either —
 * every row is always in exactly one of the two tables. Also the restore of a
 * --archive file that a killed clear left with repeated and half-written lines.
 */
import {expect} from 'chai'
import {appendFileSync, readFileSync} from 'node:fs'
import {join} from 'node:path'

import {flat, OPS_HOME, parseJsonOutput, runOps, runOpsKilledWhen, scratchFile, waitUntil} from '../../../test/helpers/cli.js'
import {
  backendsGone,
  bothTables,
  createArchiveTable,
  holdStatements,
  placement,
  releaseStatements,
  statementHeld,
} from './helpers/archive-round-trip.js'
import {generateTasks} from './helpers/django-fixture.js'
import {terminateBackends, withDjangoDatabase} from './helpers/django-database.js'

const ARCHIVE = 'tm_archive'

describe('ops taskmanager:clear --archive-table and taskmanager:restore (end to end)', function () {
  const django = withDjangoDatabase('ops_tm_restore')
  /** The whole table as PostgreSQL's row text, ordered by id, before anything ran. */
  let original: string[]
  let originalIds: string[]

  beforeEach(async () => {
    await django.db.query(`DROP TABLE IF EXISTS ${ARCHIVE}; DROP SCHEMA IF EXISTS "Arch Schema" CASCADE`)
    await django.reset()
    await generateTasks(django.db, 20_000)
    original = await tableText()
    originalIds = (await django.db.query('SELECT id::text FROM task_manager_taskmanager ORDER BY id')).rows.map((r) => r.id)
  })

  const tableText = async () =>
    (await django.db.query('SELECT t::text AS row FROM task_manager_taskmanager t ORDER BY id')).rows.map((r) => r.row as string)
  const count = async (table: string, where = 'TRUE') => {
    const exists = (await django.db.query('SELECT to_regclass($1) IS NOT NULL AS e', [table])).rows[0].e
    return exists ? ((await django.db.query(`SELECT count(*)::int AS n FROM ${table} WHERE ${where}`)).rows[0].n as number) : 0
  }
  const ops = (command: string, ...args: string[]) => [`taskmanager:${command}`, '--database-url', django.url, ...args]
  /** A clear of the DONE rows in batches of 200, 40 ms apart, into `destination`, killed with SIGKILL once `due()` holds. */
  const slowClearKilledWhen = (destination: string[], due: () => Promise<boolean>) =>
    runOpsKilledWhen(
      ops(
        'clear',
        '--status',
        'DONE',
        ...destination,
        '--force',
        '--use-cursor',
        '--batch-size',
        '200',
        '--target-batch-ms',
        '0',
        '--sleep-ms',
        '40',
      ),
      due,
    )
  const expectEveryRowOnce = async () => expect(await placement(django.db, ARCHIVE, originalIds)).to.deep.equal({inBoth: [], inNeither: []})
  /** Every original row is in exactly one of the two tables, and together they are the original table byte for byte. */
  const expectUnionIsOriginal = async (archive = ARCHIVE) => {
    const {union, inBoth} = await bothTables(django.db, archive)
    expect(inBoth).to.deep.equal([])
    expect([...union.values()]).to.deep.equal(original)
  }
  /** Runs ops and kills it with SIGKILL while one of its batch statements is held open (holdStatements), once `ready()`. */
  const killedInsideBatch = async (args: string[], application: string, ready: () => Promise<boolean>) => {
    const result = await runOpsKilledWhen(args, async () => (await ready()) && (await statementHeld(django.db, application)))
    expect(result.signal).to.equal('SIGKILL')
    // The server notices the client is gone only once the statement ends, then rolls its transaction back.
    await backendsGone(django.db, application)
  }
  const lastAudit = (command: string) => {
    const lines = readFileSync(join(OPS_HOME, 'data', 'audit.log'), 'utf8')
      .trimEnd()
      .split('\n')
    const entries = lines.map((line) => JSON.parse(line) as {command: string; outcome: string; filters: Record<string, unknown>})
    return entries.filter((e) => e.command === command).at(-1)!
  }

  it('--dry-run says what it would create and move, and writes nothing, not even the archive table', async () => {
    const result = await runOps(ops('clear', '--status', 'DONE', '--archive-table', ARCHIVE, '--dry-run'))
    expect(result.code, result.stderr).to.equal(0)
    // Plan lines are wrapped at 100 columns with an indented continuation: read them whole.
    expect(result.stdout.replace(/\n\s+/g, ' ')).to.contain(
      `Archive table: public.${ARCHIVE} does not exist yet; ` +
        'it is created before the first batch (the TaskManager columns plus archived_at)',
    )
    expect(result.stdout).to.contain('DRY RUN MODE - No records will be deleted')
    expect((await django.db.query('SELECT to_regclass($1) AS t', [ARCHIVE])).rows[0].t).to.equal(null)
    expect(await tableText()).to.deep.equal(original)
  })

  it('the round trip: clear into an archive table, restore (dry run first), and the table is back byte for byte', async () => {
    const done = await count('task_manager_taskmanager', `status = 'DONE'`)
    const cleared = await runOps(ops('clear', '--status', 'DONE', '--older-than', '30d', '--archive-table', ARCHIVE, '--force'))
    expect(cleared.code, cleared.stderr).to.equal(0)
    const moved = await count(ARCHIVE)
    expect(moved).to.be.greaterThan(0).and.lessThan(done)
    const rest = await runOps(ops('clear', '--status', 'DONE', '--archive-table', ARCHIVE, '--force', '--use-cursor'))
    expect(rest.code, rest.stderr).to.equal(0)
    expect(await count(ARCHIVE)).to.equal(done)
    await expectEveryRowOnce()

    const dry = await runOps(ops('restore', '--from-archive-table', ARCHIVE, '--dry-run'))
    expect(dry.code, dry.stderr).to.equal(0)
    expect(dry.stdout).to.contain(`Found ${done.toLocaleString('en-US')} archived TaskManager records to restore`)
    expect(dry.stdout).to.contain('Watcher links (task_manager_taskwatcher_tasks) are not restored')
    expect(dry.stdout).to.contain('DRY RUN MODE - No records will be restored')
    expect(await count(ARCHIVE)).to.equal(done)

    const restored = await runOps(ops('restore', '--from-archive-table', ARCHIVE, '--force', '--json'))
    expect(restored.code, restored.stderr).to.equal(0)
    const doc = parseJsonOutput<{outcome: string; done: number; data: {execution: {restored: number; skipped: number}}}>(restored)
    expect(doc).to.include({outcome: 'done', done})
    expect(doc.data.execution).to.include({restored: done, skipped: 0})
    expect(await tableText()).to.deep.equal(original)
    expect(await count(ARCHIVE)).to.equal(0)
  })

  it('--dry-run --use-cursor into an existing archive table says the rows go into the existing table, and how many', async () => {
    const first = await runOps(ops('clear', '--status', 'ERROR', '--archive-table', ARCHIVE, '--force'))
    expect(first.code, first.stderr).to.equal(0)
    const archived = await tableText()
    const done = await count('task_manager_taskmanager', `status = 'DONE'`)
    const result = await runOps(ops('clear', '--status', 'DONE', '--archive-table', ARCHIVE, '--use-cursor', '--dry-run'))
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout.replace(/\n\s+/g, ' ')).to.contain(
      `Archive table: the ${done.toLocaleString('en-US')} deleted rows are inserted ` +
        `into the existing public.${ARCHIVE} by the same statement`,
    )
    expect(await tableText()).to.deep.equal(archived)
  })

  for (const [what, ddl, problem] of [
    ['other columns', `CREATE TABLE ${ARCHIVE} (id bigint PRIMARY KEY, payload jsonb)`, 'extra column payload jsonb'],
    [
      'a same-named column of another type',
      `CREATE TABLE ${ARCHIVE} (LIKE task_manager_taskmanager, archived_at timestamptz); ALTER TABLE ${ARCHIVE} ALTER status TYPE text`,
      'status is text, not character varying(20)',
    ],
    ['no archived_at', `CREATE TABLE ${ARCHIVE} (LIKE task_manager_taskmanager)`, 'missing archived_at timestamp with time zone'],
  ]) {
    it(`refuses an existing table with ${what} (exit 1) before anything is deleted, in a dry run too`, async () => {
      await django.db.query(ddl)
      for (const mode of ['--force', '--dry-run']) {
        const result = await runOps(ops('clear', '--status', 'DONE', '--archive-table', ARCHIVE, mode))
        expect(result.code, result.stdout).to.equal(1)
        expect(flat(result.stderr)).to.contain(`public.${ARCHIVE} exists but is not an archive of public.task_manager_taskmanager (`)
        expect(flat(result.stderr)).to.contain(problem)
      }
      expect(await tableText()).to.deep.equal(original)
    })
  }

  it('a quoted, mixed-case archive name in a schema with a space goes there and comes back', async () => {
    await django.db.query('CREATE SCHEMA "Arch Schema"')
    const name = '"Arch Schema"."TM Archive"'
    const done = await count('task_manager_taskmanager', `status = 'DONE'`)
    const cleared = await runOps(ops('clear', '--status', 'DONE', '--archive-table', name, '--force', '--json'))
    expect(cleared.code, cleared.stderr).to.equal(0)
    expect(parseJsonOutput<{data: {archiveTable: unknown}}>(cleared).data.archiveTable).to.deep.equal({name, exists: false})
    expect(await count(name)).to.equal(done)
    await expectUnionIsOriginal(name)
    const restored = await runOps(ops('restore', '--from-archive-table', name, '--force'))
    expect(restored.code, restored.stderr).to.equal(0)
    expect(await tableText()).to.deep.equal(original)
    expect(await count(name)).to.equal(0)
  })

  it('restore: Ctrl-C (SIGINT) stops after the batch in flight with exit 130, every row in one table, and a re-run finishes', async () => {
    const done = await count('task_manager_taskmanager', `status = 'DONE'`)
    expect((await runOps(ops('clear', '--status', 'DONE', '--archive-table', ARCHIVE, '--force'))).code).to.equal(0)
    const result = await runOpsKilledWhen(
      ops('restore', '--from-archive-table', ARCHIVE, '--force', '--batch-size', '100', '--sleep-ms', '40'),
      async () => (await count(ARCHIVE)) <= done - 500,
      'SIGINT',
    )
    expect(result.code, result.stderr).to.equal(130)
    const left = await count(ARCHIVE)
    expect(left).to.be.greaterThan(0).and.lessThan(done)
    expect((done - left) % 100).to.equal(0)
    await expectUnionIsOriginal()
    expect(lastAudit('taskmanager:restore').outcome).to.equal('interrupted')
    expect((await runOps(ops('restore', '--from-archive-table', ARCHIVE, '--force'))).code).to.equal(0)
    expect(await tableText()).to.deep.equal(original)
  })

  it('restore: a dropped connection fails with exit 1, every row in one table, and a re-run finishes', async () => {
    const done = await count('task_manager_taskmanager', `status = 'DONE'`)
    expect((await runOps(ops('clear', '--status', 'DONE', '--archive-table', ARCHIVE, '--force'))).code).to.equal(0)
    await holdStatements(django.db, ARCHIVE)
    const run = runOps(ops('restore', '--from-archive-table', ARCHIVE, '--force', '--batch-size', '100'))
    await waitUntil(
      async () => (await count(ARCHIVE)) <= done - 300 && (await statementHeld(django.db, 'ops taskmanager:restore')),
      'restore to move 300 rows and be held inside a batch statement',
      run,
    )
    await terminateBackends(django.db, 'ops taskmanager:restore')
    const result = await run
    expect(result.code).to.equal(1)
    expect(result.stderr).to.match(/connection|terminat/i)
    expect((done - (await count(ARCHIVE))) % 100).to.equal(0)
    await expectUnionIsOriginal()
    await releaseStatements(django.db, ARCHIVE)
    expect((await runOps(ops('restore', '--from-archive-table', ARCHIVE, '--force'))).code).to.equal(0)
    expect(await tableText()).to.deep.equal(original)
  })

  it('restore: refused without a TTY and --force (exit 2), and bad source flags are usage errors (exit 2)', async () => {
    expect((await runOps(ops('clear', '--status', 'DONE', '--archive-table', ARCHIVE, '--force'))).code).to.equal(0)
    const archived = await count(ARCHIVE)
    const refused = await runOps(ops('restore', '--from-archive-table', ARCHIVE))
    expect(refused.code, refused.stderr).to.equal(2)
    expect(flat(refused.stderr)).to.match(/--force/)
    expect(lastAudit('taskmanager:restore').outcome).to.equal('refused')
    expect(await count(ARCHIVE)).to.equal(archived)

    const fromFile = await runOps(ops('restore', '--from-file', '/dev/null', '--archived-after', '2026-01-01', '--force'))
    expect(fromFile.code).to.equal(2)
    expect(flat(fromFile.stderr)).to.contain("--archived-after filters on the archive table's archived_at column")
    const neither = await runOps(ops('restore', '--force'))
    expect(neither.code).to.equal(2)
    expect(flat(neither.stderr)).to.match(/--from-archive-table.*--from-file/)
    const both = await runOps(ops('restore', '--from-archive-table', ARCHIVE, '--from-file', '/dev/null', '--force'))
    expect(both.code).to.equal(2)
    expect(flat(both.stderr)).to.match(/--from-archive-table.*--from-file/)
    expect(await count(ARCHIVE)).to.equal(archived)
  })

  it('--archive of rows of 400 KB (tracebacks): batches of clear and of restore from the file stay under 32 MB of JSON', async () => {
    // 100 ERROR rows, each with a status message of about 400 KB (TOAST keeps the table small; the JSON lines are not).
    await django.db.query(`UPDATE task_manager_taskmanager SET status = 'ABORTED' WHERE status = 'ERROR'
                              AND id > (SELECT id FROM task_manager_taskmanager WHERE status = 'ERROR' ORDER BY id OFFSET 99 LIMIT 1)`)
    await django.db.query(`UPDATE task_manager_taskmanager SET status_message = repeat('Traceback (most recent call last) ', 12000) || id
                            WHERE status = 'ERROR'`)
    const before = await tableText()
    const errors = await count('task_manager_taskmanager', `status = 'ERROR'`)
    const file = scratchFile('tracebacks.jsonl')
    const clear = ops('clear', '--status', 'ERROR', '--archive', file, '--use-cursor')
    // 32 MB / 400 KB: about 80 rows a batch, where the starting size is 5,000.
    const planned = await runOps([...clear, '--dry-run'])
    expect(planned.stdout.replace(/\s+/g, ' ')).to.match(
      /rows of up to 40\d KB \(a sample\), so at most 8\d to a batch \(32,768 KB of JSON\)/,
    )
    const cleared = await runOps([...clear, '--force', '--json'])
    expect(cleared.code, cleared.stderr).to.equal(0)
    const doc = parseJsonOutput<{done: number; data: {execution: {batches: number}}}>(cleared)
    expect(doc.done).to.equal(errors)
    expect(doc.data.execution.batches).to.be.at.least(Math.ceil(errors / 90))
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n')
    expect(lines).to.have.length(errors)
    expect(Math.max(...lines.map((line) => Buffer.byteLength(line)))).to.be.greaterThan(400_000)
    // Its batches too: 40 MB of lines go in at least two.
    const restored = await runOps(ops('restore', '--from-file', file, '--force', '--json'))
    expect(restored.code, restored.stderr).to.equal(0)
    expect(parseJsonOutput<{data: {execution: {batches: number}}}>(restored).data.execution.batches).to.be.at.least(2)
    expect(await tableText()).to.deep.equal(before)
  })

  it('the audit line names where a clear put the rows and where a restore took them from', async () => {
    const file = scratchFile('error.jsonl')
    expect((await runOps(ops('clear', '--status', 'ERROR', '--archive', file, '--force'))).code).to.equal(0)
    expect(lastAudit('taskmanager:clear').filters).to.include({status: 'ERROR', archive: file, archiveTable: null})
    expect((await runOps(ops('clear', '--status', 'DONE', '--archive-table', ARCHIVE, '--force'))).code).to.equal(0)
    expect(lastAudit('taskmanager:clear').filters).to.include({status: 'DONE', archive: null, archiveTable: `public.${ARCHIVE}`})

    const after = '2000-01-01T00:00:00.000Z'
    expect((await runOps(ops('restore', '--from-archive-table', ARCHIVE, '--archived-after', after, '--force'))).code).to.equal(0)
    expect(lastAudit('taskmanager:restore').filters).to.include({
      fromArchiveTable: `public.${ARCHIVE}`,
      archivedAfter: after,
      archivedBefore: null,
    })
    expect((await runOps(ops('restore', '--from-file', file, '--status', 'ERROR', '--force'))).code).to.equal(0)
    expect(lastAudit('taskmanager:restore').filters).to.include({fromFile: file, status: 'ERROR'})
    expect(await tableText()).to.deep.equal(original)
  })

  const clearInBatches = (path: string, ...more: string[]) =>
    ops('clear', '--status', 'DONE', '--force', path, '--batch-size', '200', '--target-batch-ms', '0', ...more)

  for (const path of ['--use-cursor', '--use-orm']) {
    const method = path === '--use-cursor' ? 'raw SQL' : 'TypeORM'
    it(`${method}: kill -9 during a clear's batch statement, then a re-run: every row in exactly one table, byte for byte`, async () => {
      const done = await count('task_manager_taskmanager', `status = 'DONE'`)
      await createArchiveTable(django.db, ARCHIVE)
      await holdStatements(django.db, ARCHIVE)
      await killedInsideBatch(
        clearInBatches(path, '--archive-table', ARCHIVE),
        'ops taskmanager:clear',
        async () => (await count(ARCHIVE)) >= 600,
      )
      const archived = await count(ARCHIVE)
      expect(archived).to.be.greaterThan(0).and.lessThan(done)
      expect(archived % 200).to.equal(0) // the held batch rolled back whole
      await expectUnionIsOriginal()
      await releaseStatements(django.db, ARCHIVE)
      const finish = await runOps(ops('clear', '--status', 'DONE', '--archive-table', ARCHIVE, '--force', path))
      expect(finish.code, finish.stderr).to.equal(0)
      expect(await count(ARCHIVE)).to.equal(done)
      expect(await count('task_manager_taskmanager', `status = 'DONE'`)).to.equal(0)
      await expectUnionIsOriginal()
    })
  }

  it('kill -9 while a restore batch statement runs, then a re-run: every row in exactly one table, then the table is back', async () => {
    const done = await count('task_manager_taskmanager', `status = 'DONE'`)
    const cleared = await runOps(ops('clear', '--status', 'DONE', '--archive-table', ARCHIVE, '--force'))
    expect(cleared.code, cleared.stderr).to.equal(0)
    await holdStatements(django.db, ARCHIVE)
    await killedInsideBatch(
      ops('restore', '--from-archive-table', ARCHIVE, '--force', '--batch-size', '100'),
      'ops taskmanager:restore',
      async () => (await count(ARCHIVE)) <= done - 300,
    )
    const left = await count(ARCHIVE)
    expect(left).to.be.greaterThan(0).and.lessThan(done)
    expect((done - left) % 100).to.equal(0) // the held batch rolled back whole
    await expectUnionIsOriginal()
    await releaseStatements(django.db, ARCHIVE)
    const again = await runOps(ops('restore', '--from-archive-table', ARCHIVE, '--force'))
    expect(again.code, again.stderr).to.equal(0)
    expect(await tableText()).to.deep.equal(original)
    expect(await count(ARCHIVE)).to.equal(0)
  })

  it('kill -9 while a restore from a file runs its batch, then a re-run: each row restored once, skipped ones counted', async () => {
    const file = scratchFile('done.jsonl')
    const cleared = await runOps(ops('clear', '--status', 'DONE', '--archive', file, '--force'))
    expect(cleared.code, cleared.stderr).to.equal(0)
    const done = original.length - (await count('task_manager_taskmanager'))
    await holdStatements(django.db, 'task_manager_taskmanager')
    await killedInsideBatch(
      ops('restore', '--from-file', file, '--force', '--batch-size', '100'),
      'ops taskmanager:restore',
      async () => (await count('task_manager_taskmanager')) >= original.length - done + 300,
    )
    const first = (await count('task_manager_taskmanager')) - (original.length - done)
    expect(first).to.be.greaterThan(0).and.lessThan(done)
    expect(first % 100).to.equal(0) // the held batch rolled back whole
    await releaseStatements(django.db, 'task_manager_taskmanager')
    const again = await runOps(ops('restore', '--from-file', file, '--force', '--json'))
    expect(again.code, again.stderr).to.equal(0)
    const doc = parseJsonOutput<{done: number; data: {skippedExisting: number; execution: {restored: number; skipped: number}}}>(again)
    expect(doc.done).to.equal(done - first)
    expect(doc.data.skippedExisting).to.equal(first)
    // Batches meet the rows restored before the kill and count them, as from an archive table.
    expect(doc.data.execution).to.include({restored: done - first, skipped: first})
    expect(await tableText()).to.deep.equal(original)
  })

  it('restores from a file written by --archive after a kill -9, with repeated and half-written lines, each row once', async () => {
    const file = scratchFile('done.jsonl')
    await slowClearKilledWhen(['--archive', file], async () => (await count('task_manager_taskmanager', `status = 'DONE'`)) <= 11_000)
    // What a kill between a batch's fsync and its COMMIT leaves: lines of rows still in the table, the last one cut short.
    const uncommitted = (
      await django.db.query(
        `SELECT row_to_json(t)::text AS row FROM task_manager_taskmanager t WHERE status = 'DONE' ORDER BY id LIMIT 200`,
      )
    ).rows.map((r) => r.row)
    appendFileSync(file, uncommitted.join('\n') + '\n' + uncommitted[0].slice(0, 120))
    const finish = await runOps(ops('clear', '--status', 'DONE', '--archive', file, '--force'))
    expect(finish.code, finish.stderr).to.equal(0)
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n')
    const done = original.length - (await count('task_manager_taskmanager'))
    expect(lines.length).to.be.greaterThan(done)

    const restored = await runOps(ops('restore', '--from-file', file, '--force', '--json', '--batch-size', '700'))
    expect(restored.code, restored.stderr).to.equal(0)
    const doc = parseJsonOutput<{done: number; warnings: string[]; data: {source: {rows: number; distinctRows: number}}}>(restored)
    expect(doc.done).to.equal(done)
    expect(doc.data.source.distinctRows).to.equal(done)
    expect(doc.data.source.rows).to.be.at.least(done + 200)
    expect(doc.warnings.join('\n')).to.match(/a partly written row before row id \d+ was skipped/)
    expect(await tableText()).to.deep.equal(original)

    const twice = await runOps(ops('restore', '--from-file', file, '--force'))
    expect(twice.code, twice.stderr).to.equal(0)
    expect(twice.stdout).to.contain(
      `No archived TaskManager records to restore with the specified criteria (${done.toLocaleString('en-US')} matching rows skipped`,
    )
    expect(await tableText()).to.deep.equal(original)
  })
})
