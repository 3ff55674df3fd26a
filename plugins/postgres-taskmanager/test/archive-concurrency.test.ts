/**
 * --archive-table with --concurrency: every worker's batch statement archives
 * its own rows, so N workers over disjoint id ranges still leave each row in
 * exactly one table, and a restore gives the table back byte for byte.
 */
import {expect} from 'chai'
import {parseJsonOutput, runOps} from '../../../test/helpers/cli.js'
import {withDjangoDatabase} from './helpers/django-database.js'
import {generateTasks} from './helpers/django-fixture.js'

const ARCHIVE = 'tm_archive_workers'

describe('taskmanager:clear --archive-table --concurrency 2, then taskmanager:restore', function () {
  const django = withDjangoDatabase('ops_tm_archive_workers')

  const tableText = async () =>
    (await django.db.query('SELECT t::text AS row FROM task_manager_taskmanager t ORDER BY id')).rows.map((r) => r.row as string)
  const countOf = async (sql: string) => (await django.db.query(sql)).rows[0].n as number

  for (const path of [['--use-cursor'], ['--use-orm']]) {
    const method = path[0] === '--use-cursor' ? 'raw SQL' : 'TypeORM'
    it(`${method}: two workers archive exactly the rows they delete; restore gives the table back`, async () => {
      await django.db.query(`DROP TABLE IF EXISTS ${ARCHIVE}`)
      await django.reset()
      await generateTasks(django.db, 12_000)
      const original = await tableText()
      const done = await countOf(`SELECT count(*)::int AS n FROM task_manager_taskmanager WHERE status = 'DONE'`)
      const doneText = (await django.db.query(`SELECT t::text AS row FROM task_manager_taskmanager t WHERE status = 'DONE' ORDER BY id`))
        .rows

      const cleared = await runOps([
        'taskmanager:clear',
        '--database-url',
        django.url,
        '--status',
        'DONE',
        '--archive-table',
        ARCHIVE,
        '--concurrency',
        '2',
        '--batch-size',
        '500',
        '--target-batch-ms',
        '0',
        ...path,
        '--force',
        '--json',
      ])
      expect(cleared.code, cleared.stderr).to.equal(0)
      const doc = parseJsonOutput<{done: number; data: {execution: {workers: number}}}>(cleared)
      expect(doc.done).to.equal(done)
      expect(doc.data.execution.workers).to.equal(2)
      expect(await countOf(`SELECT count(*)::int AS n FROM task_manager_taskmanager WHERE status = 'DONE'`)).to.equal(0)
      // The archive holds every deleted row once, with the values it had (archived_at aside).
      const columns = (
        await django.db.query(`SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) AS c FROM pg_attribute
        WHERE attrelid = 'task_manager_taskmanager'::regclass AND attnum > 0 AND NOT attisdropped`)
      ).rows[0].c as string
      const archived = (await django.db.query(`SELECT (ROW(${columns}))::text AS row FROM ${ARCHIVE} ORDER BY id`)).rows
      expect(archived.map((r) => r.row)).to.deep.equal(doneText.map((r) => r.row))

      const restored = await runOps(['taskmanager:restore', '--database-url', django.url, '--from-archive-table', ARCHIVE, '--force'])
      expect(restored.code, restored.stderr).to.equal(0)
      expect(await tableText()).to.deep.equal(original)
      expect(await countOf(`SELECT count(*)::int AS n FROM ${ARCHIVE}`)).to.equal(0)
    })
  }
})
