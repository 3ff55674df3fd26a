/**
 * The connection breaks while a batch's COMMIT is in flight (a network cut, a
 * crash or failover of the primary): ops cannot know whether the server
 * committed the batch. Through a proxy that cuts the connection at that moment,
 * after or before the server got the COMMIT: --archive FILE keeps the batch's
 * rows either way, the run says what it does not know, a re-run finishes, and a
 * restore from the file gives the table back byte for byte.
 */
import {expect} from 'chai'
import {readFileSync} from 'node:fs'

import {runOps, scratchFile} from '../../../test/helpers/cli.js'
import {CutMoment, startCommitCutter} from '../../../test/helpers/commit-cutter.js'
import {generateTasks} from './helpers/django-fixture.js'
import {withDjangoDatabase} from './helpers/django-database.js'

const BATCH = 300

describe('taskmanager:clear --archive FILE when the connection breaks during a COMMIT', function () {
  const django = withDjangoDatabase('ops_tm_lost_commit')

  const tableText = async () =>
    (await django.db.query('SELECT t::text AS row FROM task_manager_taskmanager t ORDER BY id')).rows.map((r) => r.row as string)
  const idsWhere = async (where: string) =>
    (await django.db.query(`SELECT t.id::text AS id FROM task_manager_taskmanager t WHERE ${where} ORDER BY t.id`)).rows.map(
      (r) => r.id as string,
    )
  const archivedIds = (file: string) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => String(JSON.parse(line).id))

  /** The DONE rows cleared into `file` in fixed batches of BATCH, on `path` (--use-cursor or --use-orm). */
  const clearIntoArchive = (url: string, file: string, path: string) =>
    runOps([
      'taskmanager:clear',
      '--database-url',
      url,
      '--status',
      'DONE',
      '--archive',
      file,
      '--batch-size',
      String(BATCH),
      '--target-batch-ms',
      '0',
      path,
      '--force',
    ])

  for (const [method, path] of [
    ['raw SQL', '--use-cursor'],
    ['TypeORM', '--use-orm'],
  ]) {
    it(`${method}: a COMMIT the server refuses (another table's deferred foreign key) rolled back: its lines leave the file`, async () => {
      await django.reset()
      await generateTasks(django.db, 3000)
      const done = await idsWhere(`status = 'DONE'`)
      await django.db.query(`CREATE TABLE task_audit (id serial PRIMARY KEY,
        task_id bigint REFERENCES task_manager_taskmanager(id) DEFERRABLE INITIALLY DEFERRED)`)
      try {
        // A row of the second batch: the server refuses that batch's COMMIT (23503), and says so.
        await django.db.query(`INSERT INTO task_audit (task_id) VALUES ($1)`, [done[BATCH + 10]])
        const file = scratchFile('refused-commit.jsonl')
        const run = await clearIntoArchive(django.url, file, path)
        expect(run.code, run.stdout + run.stderr).to.equal(1)
        expect(run.stderr).to.contain('task_audit_task_id_fkey')
        expect(run.stderr).to.contain('the batch in flight was rolled back whole')
        expect(await idsWhere(`status = 'DONE'`)).to.deep.equal(done.slice(BATCH))
        expect(archivedIds(file)).to.deep.equal(done.slice(0, BATCH))
      } finally {
        await django.db.query('DROP TABLE task_audit')
      }
    })
  }

  it('restore --from-file, cut after the server committed a batch: the run says so, and a re-run skips the rows already back', async () => {
    await django.reset()
    await generateTasks(django.db, 3000)
    const original = await tableText()
    const file = scratchFile('restore-cut.jsonl')
    const cleared = await runOps(['taskmanager:clear', '--database-url', django.url, '--status', 'DONE', '--archive', file, '--force'])
    expect(cleared.code, cleared.stderr).to.equal(0)
    const restore = (url: string) =>
      runOps(['taskmanager:restore', '--database-url', url, '--from-file', file, '--batch-size', String(BATCH), '--force'])

    const cutter = await startCommitCutter(django.url, {commitNumber: 2, moment: 'after-commit', after: /\bINSERT\s+INTO\b/i})
    let cut
    try {
      cut = await restore(cutter.url)
    } finally {
      await cutter.close()
    }
    expect(cutter.cuts).to.equal(1)
    expect(cut.code, cut.stdout + cut.stderr).to.equal(1)
    expect(cut.stderr).to.contain('the server may have restored that batch or rolled it back')
    expect(cut.stderr).to.contain(`${BATCH} of`)
    expect(cut.stderr).not.to.contain('rolled back whole')
    expect(await idsWhere(`status = 'DONE'`)).to.have.length(2 * BATCH)

    const rerun = await restore(django.url)
    expect(rerun.code, rerun.stderr).to.equal(0)
    expect(await tableText()).to.deep.equal(original)
  })

  const cases: [string, string, CutMoment][] = [
    ['raw SQL', '--use-cursor', 'after-commit'],
    ['raw SQL', '--use-cursor', 'before-commit'],
    ['TypeORM', '--use-orm', 'after-commit'],
    ['TypeORM', '--use-orm', 'before-commit'],
  ]
  for (const [method, path, moment] of cases) {
    const committed = moment === 'after-commit'
    const when = committed ? 'after the server committed' : 'before the COMMIT reached the server'
    it(`${method}, cut ${when}: the batch's rows stay archived, a re-run and a restore give everything back`, async () => {
      await django.reset()
      await generateTasks(django.db, 3000)
      const original = await tableText()
      const done = await idsWhere(`status = 'DONE'`)
      const file = scratchFile('lost-commit.jsonl')
      const clear = (url: string) => clearIntoArchive(url, file, path)

      const cutter = await startCommitCutter(django.url, {commitNumber: 2, moment})
      let cut
      try {
        cut = await clear(cutter.url)
      } finally {
        await cutter.close()
      }
      expect(cutter.cuts, 'the proxy cut the second batch').to.equal(1)
      expect(cut.code, cut.stdout + cut.stderr).to.equal(1)
      expect(cut.stderr).to.contain("The connection was lost while a batch's COMMIT was in flight")
      expect(cut.stderr).to.contain('may have committed that batch or rolled it back')
      expect(cut.stderr).to.contain(`${BATCH} of`)
      expect(cut.stderr).to.contain('the batch in flight may have been too (its COMMIT got no answer)')
      expect(cut.stderr).not.to.match(/rolled back by the server|rolled back whole/)
      // The server did what the proxy let it do: two batches deleted, or one.
      const left = await idsWhere(`status = 'DONE'`)
      expect(done.length - left.length).to.equal(committed ? 2 * BATCH : BATCH)
      // Both batches' rows are in the file, committed or not: no deleted row is missing from it.
      const firstArchive = archivedIds(file)
      expect(firstArchive).to.have.length(2 * BATCH)
      expect(firstArchive).to.deep.equal(done.slice(0, 2 * BATCH))

      const rerun = await clear(django.url)
      expect(rerun.code, rerun.stderr).to.equal(0)
      expect(await idsWhere(`status = 'DONE'`)).to.deep.equal([])
      const archive = archivedIds(file)
      // Every deleted row once; a batch that was rolled back is archived again by the re-run (its rows twice).
      expect([...new Set(archive)].sort()).to.deep.equal([...done].sort())
      expect(archive).to.have.length(committed ? done.length : done.length + BATCH)

      const restore = await runOps(['taskmanager:restore', '--database-url', django.url, '--from-file', file, '--force'])
      expect(restore.code, restore.stderr).to.equal(0)
      expect(await tableText()).to.deep.equal(original)
    })
  }
})
