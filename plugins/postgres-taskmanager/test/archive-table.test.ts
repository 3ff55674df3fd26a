/**
 * taskmanager:clear --archive-table and taskmanager:restore, driven in-process
 * against Django's exact schema: what a clear moves into the archive table is
 * exactly what it deleted, and a restore puts the table back byte for byte.
 */
import {expect} from 'chai'
import {readFileSync, writeFileSync} from 'node:fs'

import {scratchFile} from '../../../test/helpers/cli.js'
import {clearDirect} from './helpers/direct.js'
import {insertTasks, MODULES, NAMES, rowTexts, STATUSES, taskRow, TaskRow, watch} from './helpers/django-fixture.js'
import {withDjangoDatabase} from './helpers/django-database.js'
import {archivedTexts, bothTables, clearIntoArchive, placement, restoreDirect} from './helpers/archive-round-trip.js'

const ARCHIVE = 'task_manager_archive'

function population(): TaskRow[] {
  const rows: TaskRow[] = []
  for (const status of STATUSES)
    for (const task_module of MODULES)
      for (const task_name of NAMES)
        rows.push(taskRow({status, task_module, task_name, ageDays: 2}), taskRow({status, task_module, task_name, ageDays: 45}))
  return rows
}

describe('taskmanager:clear --archive-table and taskmanager:restore', function () {
  const django = withDjangoDatabase('ops_tm_archive')
  let ids: string[]

  beforeEach(async () => {
    await django.db.query(`DROP TABLE IF EXISTS ${ARCHIVE}, archive_other.${ARCHIVE}, not_an_archive`)
    await django.reset()
    ids = await insertTasks(django.db, population())
    await watch(
      django.db,
      ids.filter((_, i) => i % 5 === 0),
    )
  })

  const idsWhere = async (where: string) =>
    (await django.db.query(`SELECT id::text FROM task_manager_taskmanager WHERE ${where} ORDER BY id`)).rows.map((r) => r.id as string)
  const archiveCount = async (table = ARCHIVE) => (await django.db.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n as number
  /**
   * Clears the SCHEDULED rows into the archive, then the application makes the first of them again
   * (its archived values, another status_message): the cleared ids, that id, and its row's text.
   */
  const archiveThenRecreateFirst = async (statusMessage: string) => {
    const scheduled = await idsWhere(`status = 'SCHEDULED'`)
    await clearIntoArchive(django.url, ARCHIVE, {status: 'SCHEDULED'}, {useCursor: true})
    const [taken] = scheduled
    await django.db.query(
      `INSERT INTO task_manager_taskmanager OVERRIDING SYSTEM VALUE
       SELECT (jsonb_populate_record(NULL::task_manager_taskmanager, to_jsonb(a) || jsonb_build_object('status_message', $2::text))).*
         FROM ${ARCHIVE} a WHERE id = $1`,
      [taken, statusMessage],
    )
    return {scheduled, taken, text: (await rowTexts(django.db)).get(taken)}
  }

  for (const method of ['raw SQL', 'TypeORM'] as const) {
    const useCursor = method === 'raw SQL'

    it(`${method}: moves exactly the deleted rows into a new archive table, then restore gives the table back byte for byte`, async () => {
      const before = await rowTexts(django.db)
      const done = await idsWhere(`status = 'DONE'`)

      const cleared = await clearIntoArchive(django.url, ARCHIVE, {status: 'DONE'}, {useCursor})
      expect(cleared.plan.data.archiveTable).to.deep.equal({name: `public.${ARCHIVE}`, exists: false})
      expect(cleared.done).to.equal(done.length)
      const archived = await archivedTexts(django.db, ARCHIVE)
      expect([...archived.keys()]).to.deep.equal(done)
      for (const [id, text] of archived) expect(text).to.equal(before.get(id))
      expect(await idsWhere(`status = 'DONE'`)).to.deep.equal([])

      const restored = await restoreDirect(django.url, {fromTable: ARCHIVE})
      expect(restored.done).to.equal(done.length)
      expect(await rowTexts(django.db)).to.deep.equal(before)
      expect(await archiveCount()).to.equal(0)
    })

    it(`${method}: refuses an existing table with other columns before deleting anything`, async () => {
      await django.db.query('CREATE TABLE not_an_archive (id bigint PRIMARY KEY, note text)')
      const before = await rowTexts(django.db)
      let error: Error | undefined
      try {
        await clearIntoArchive(django.url, 'not_an_archive', {status: 'DONE'}, {useCursor})
      } catch (caught) {
        error = caught as Error
      }
      expect(error?.message).to.contain('public.not_an_archive exists but is not an archive of public.task_manager_taskmanager')
      expect(error?.message).to.contain('extra column note text')
      expect(await rowTexts(django.db)).to.deep.equal(before)
      expect(await archiveCount('not_an_archive')).to.equal(0)
    })
  }

  it('deletes the watcher links of archived rows in the same transaction, and restore does not bring them back', async () => {
    const linked = (await django.db.query('SELECT taskmanager_id::text AS id FROM task_manager_taskwatcher_tasks ORDER BY 1')).rows.map(
      (r) => r.id,
    )
    const cleared = await clearIntoArchive(django.url, ARCHIVE, {status: 'ALL'}, {useCursor: true})
    expect(cleared.plan.data.execution.links).to.equal(linked.length)
    const restored = await restoreDirect(django.url, {fromTable: ARCHIVE})
    expect(restored.plan.details).to.include(
      'Watcher links (task_manager_taskwatcher_tasks) are not restored: they name watchers that may be gone',
    )
    expect(await archiveCount()).to.equal(0)
    expect((await django.db.query('SELECT count(*)::int AS n FROM task_manager_taskwatcher_tasks')).rows[0].n).to.equal(0)
  })

  it('appends to an existing archive table (schema-qualified) on the second clear, and restores only what the filters name', async () => {
    await django.db.query('CREATE SCHEMA IF NOT EXISTS archive_other')
    const archive = `archive_other.${ARCHIVE}`
    const before = await rowTexts(django.db)
    await clearIntoArchive(django.url, archive, {status: 'ERROR'}, {useCursor: true})
    const between = (await django.db.query('SELECT clock_timestamp() AS at')).rows[0].at as Date
    const second = await clearIntoArchive(django.url, archive, {status: 'PENDING'}, {useCursor: false})
    expect(second.plan.data.archiveTable).to.deep.equal({name: archive, exists: true})
    const archived = await archivedTexts(django.db, archive)

    const archivedWhere = async (where: string) =>
      (await django.db.query(`SELECT id::text FROM ${archive} WHERE ${where} ORDER BY id`, [MODULES[1]])).rows.map((r) => r.id as string)
    const expected = await archivedWhere(`status = 'ERROR' AND task_module = $1`)
    const pending = await archivedWhere(`status = 'PENDING' OR $1 = ''`)

    // Only the first clear's rows, and of them only one module.
    const restored = await restoreDirect(django.url, {fromTable: archive, filter: {taskModule: MODULES[1]}, window: {before: between}})
    expect(restored.done).to.equal(expected.length).and.to.be.greaterThan(0)
    const live = await rowTexts(django.db)
    for (const id of expected) expect(live.get(id)).to.equal(before.get(id))
    expect(await archiveCount(archive)).to.equal(archived.size - expected.length)

    // Then the rest, archived after the instant in between: PENDING only.
    const rest = await restoreDirect(django.url, {fromTable: archive, window: {after: between}})
    expect(rest.done).to.equal(pending.length).and.to.be.greaterThan(0)
    const {inBoth, inNeither} = await placement(django.db, archive, before.keys())
    expect(inBoth).to.deep.equal([])
    expect(inNeither).to.deep.equal([])
  })

  it('restores with --older-than on created_at and leaves the younger rows archived', async () => {
    const before = await rowTexts(django.db)
    await clearIntoArchive(django.url, ARCHIVE, {taskName: NAMES[2]}, {useCursor: true})
    const old = (
      await django.db.query(`SELECT id::text FROM ${ARCHIVE} WHERE created_at < now() - interval '30 days' ORDER BY id`)
    ).rows.map((r) => r.id)
    const restored = await restoreDirect(django.url, {fromTable: ARCHIVE, olderThanMs: 30 * 86_400_000})
    expect(restored.done).to.equal(old.length).and.to.be.greaterThan(0)
    expect(restored.plan.details!.some((line) => line.startsWith('Older than:'))).to.equal(true)
    const live = await rowTexts(django.db)
    for (const id of old) expect(live.get(id)).to.equal(before.get(id))
    expect(
      (await django.db.query(`SELECT count(*)::int AS n FROM ${ARCHIVE} WHERE created_at < now() - interval '30 days'`)).rows[0].n,
    ).to.equal(0)
    expect(await archiveCount()).to.be.greaterThan(0)
  })

  it('skips and counts archived rows whose id exists again, never overwriting them, and keeps them archived', async () => {
    const {scheduled, taken, text: mine} = await archiveThenRecreateFirst('someone else')

    const restored = await restoreDirect(django.url, {fromTable: ARCHIVE})
    expect(restored.plan.count).to.equal(scheduled.length - 1)
    expect(restored.plan.data.skippedExisting).to.equal(1)
    expect(restored.plan.data.execution).to.include({restored: scheduled.length - 1, skipped: 1})
    expect(restored.plan.details).to.include(
      'Skipped: 1 matching rows whose id already exists in public.task_manager_taskmanager ' +
        '(never overwritten; they stay in the archive table)',
    )
    expect(restored.done).to.equal(scheduled.length - 1)
    expect((await rowTexts(django.db)).get(taken)).to.equal(mine)
    expect((await django.db.query(`SELECT id::text FROM ${ARCHIVE}`)).rows.map((r) => r.id)).to.deep.equal([taken])
  })

  for (const method of ['raw SQL', 'TypeORM'] as const) {
    it(`${method}: a clear of a live row whose id a restore left archived succeeds, and the archive keeps the newest version`, async () => {
      // The application made a row with that id again, and a restore skipped it: the old copy stays archived.
      const {scheduled, taken, text: newer} = await archiveThenRecreateFirst('the newer row')
      const restored = await restoreDirect(django.url, {fromTable: ARCHIVE})
      expect(restored.plan.data.execution.skipped).to.equal(1)
      expect(await archiveCount()).to.equal(1)

      const again = await clearIntoArchive(django.url, ARCHIVE, {status: 'SCHEDULED'}, {useCursor: method === 'raw SQL'})
      expect(again.done).to.equal(scheduled.length)
      expect(again.plan.details).to.include(
        'Archive table: 1 of them have an id archived there already (a restore skipped it); ' +
          'the archive keeps the newer row, the one deleted now',
      )
      const archived = await archivedTexts(django.db, ARCHIVE)
      expect(archived.size).to.equal(scheduled.length)
      expect(archived.get(taken)).to.equal(newer)
      expect(await idsWhere(`status = 'SCHEDULED'`)).to.deep.equal([])
    })
  }

  it('refuses an archive table without a unique key on id, for a clear and a restore, before anything moves', async () => {
    await django.db.query(`CREATE TABLE not_an_archive (LIKE task_manager_taskmanager, archived_at timestamptz NOT NULL DEFAULT now())`)
    const before = await rowTexts(django.db)
    for (const run of [
      () => clearIntoArchive(django.url, 'not_an_archive', {status: 'DONE'}, {useCursor: true}),
      () => restoreDirect(django.url, {fromTable: 'not_an_archive'}),
    ]) {
      const error = await run().then(
        () => undefined,
        (caught: Error) => caught,
      )
      expect(error?.message).to.contain("public.not_an_archive has the archive's columns but no unique key on id")
    }
    expect(await rowTexts(django.db)).to.deep.equal(before)
  })

  const archiveFile = () => scratchFile('rows.jsonl')

  it('restores the last line of an id from a file: a stale earlier copy never wins', async () => {
    const before = await rowTexts(django.db)
    const file = archiveFile()
    await clearDirect(django.url, {status: 'ERROR'}, {useCursor: true, batchSize: 7, archive: file})
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n')
    // A stale copy of every third row ahead of its newest one, as a re-run's append leaves it.
    const stale = (line: string) => JSON.stringify({...JSON.parse(line), status_message: 'stale copy', attempts: 99})
    writeFileSync(file, lines.flatMap((line, i) => (i % 3 === 0 ? [stale(line), line] : [line])).join('\n') + '\n')
    const restored = await restoreDirect(django.url, {fromFile: file})
    expect(restored.done).to.equal(lines.length)
    expect(restored.plan.data.source).to.include({rows: lines.length + Math.ceil(lines.length / 3), distinctRows: lines.length})
    expect(await rowTexts(django.db)).to.deep.equal(before)
  })

  it('restores from a file only the rows --status and --older-than name', async () => {
    const before = await rowTexts(django.db)
    const wanted = await idsWhere(`status = 'ERROR' AND created_at < now() - interval '30 days'`)
    expect(wanted.length)
      .to.be.greaterThan(0)
      .and.lessThan((await idsWhere(`status = 'ERROR'`)).length)
    const file = archiveFile()
    await clearDirect(django.url, {}, {useCursor: true, archive: file})
    const restored = await restoreDirect(django.url, {fromFile: file, filter: {status: 'ERROR'}, olderThanMs: 30 * 86_400_000})
    expect(restored.done).to.equal(wanted.length)
    const live = await rowTexts(django.db)
    expect([...live.keys()]).to.deep.equal(wanted)
    for (const [id, text] of live) expect(text).to.equal(before.get(id))
  })

  for (const source of ['archive table', 'file'] as const) {
    it(`${source}: restoring low ids never moves the sequence back, even after RESTART WITH a higher value`, async () => {
      const file = archiveFile()
      await clearDirect(
        django.url,
        {taskName: NAMES[0]},
        {useCursor: true, ...(source === 'file' ? {archive: file} : {archiveTable: ARCHIVE})},
      )
      const from = source === 'file' ? {fromFile: file} : {fromTable: ARCHIVE}
      // Newer rows take ids above every archived one, then the sequence is restarted further up still.
      const newer = await insertTasks(django.db, [taskRow(), taskRow()])
      const restart = Number(newer.at(-1)) + 100
      await django.db.query(`ALTER TABLE task_manager_taskmanager ALTER COLUMN id RESTART WITH ${restart}`)
      const restored = await restoreDirect(django.url, {...from, batchSize: 3})
      expect(restored.done).to.be.greaterThan(0)
      const [fresh] = await insertTasks(django.db, [taskRow()])
      expect(Number(fresh)).to.equal(restart)
      // And after a restore with nothing restarted, the application's next insert still takes the next id.
      const [next] = await insertTasks(django.db, [taskRow()])
      expect(Number(next)).to.equal(restart + 1)
    })
  }

  it('leaves the identity sequence ahead of every restored id, even when it had been reset behind them', async () => {
    await clearIntoArchive(django.url, ARCHIVE, {}, {useCursor: true})
    await django.db.query('ALTER TABLE task_manager_taskmanager ALTER COLUMN id RESTART WITH 1')
    await restoreDirect(django.url, {fromTable: ARCHIVE})
    const [fresh] = await insertTasks(django.db, [taskRow()])
    expect(Number(fresh)).to.be.greaterThan(Number(ids.at(-1)))
  })

  it('stops between batches when aborted: every row is in exactly one of the two tables, and a re-run finishes', async () => {
    const before = await rowTexts(django.db)
    await clearIntoArchive(django.url, ARCHIVE, {}, {useCursor: true})
    const first = await restoreDirect(django.url, {fromTable: ARCHIVE, batchSize: 9}, 3)
    expect(first.done).to.equal(27)
    expect(await placement(django.db, ARCHIVE, before.keys())).to.deep.equal({inBoth: [], inNeither: []})
    await restoreDirect(django.url, {fromTable: ARCHIVE})
    expect(await rowTexts(django.db)).to.deep.equal(before)
  })

  it('restores from an archive partitioned by id without touching rows of another partition that share a ctid', async () => {
    const before = await rowTexts(django.db)
    const done = await idsWhere(`status = 'DONE'`)
    const middle = ids[Math.floor(ids.length / 2)]
    await django.db.query(
      `CREATE TABLE ${ARCHIVE} (
         LIKE task_manager_taskmanager, archived_at timestamp with time zone NOT NULL DEFAULT now(), PRIMARY KEY (id)
       ) PARTITION BY RANGE (id)`,
    )
    await django.db.query(`CREATE TABLE ${ARCHIVE}_low PARTITION OF ${ARCHIVE} FOR VALUES FROM (MINVALUE) TO (${middle})`)
    await django.db.query(`CREATE TABLE ${ARCHIVE}_high PARTITION OF ${ARCHIVE} FOR VALUES FROM (${middle}) TO (MAXVALUE)`)
    await clearIntoArchive(django.url, ARCHIVE, {}, {useCursor: true})
    expect(await archiveCount()).to.equal(before.size)
    // Each partition numbers its own ctids: a DONE row's ctid must also name a row kept archived in the other partition.
    const {rows} = await django.db.query(
      `SELECT count(*)::int AS n FROM ${ARCHIVE}_low l JOIN ${ARCHIVE}_high h ON l.ctid = h.ctid
        WHERE (l.status = 'DONE') <> (h.status = 'DONE')`,
    )
    expect(rows[0].n).to.be.greaterThan(0)

    const restored = await restoreDirect(django.url, {fromTable: ARCHIVE, filter: {status: 'DONE'}})
    expect(restored.done).to.equal(done.length).and.to.be.greaterThan(0)
    expect(await archiveCount()).to.equal(before.size - done.length)
    const {union, inBoth} = await bothTables(django.db, ARCHIVE)
    expect(inBoth).to.deep.equal([])
    expect(union).to.deep.equal(before)
  })
})
