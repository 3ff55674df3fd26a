/**
 * The real `ops` binary: clear production rows into an archive table, put them
 * back with taskmanager:restore, and survive kill -9 in the middle of either —
 * every row is always in exactly one of the two tables. Also the restore of a
 * --archive file that a killed clear left with repeated and half-written lines.
 */
import {expect} from 'chai'
import {appendFileSync, mkdtempSync, readFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {parseJsonOutput, runOps, runOpsKilledWhen} from '../../../test/helpers/cli.js'
import {placement} from './helpers/archive-round-trip.js'
import {generateTasks} from './helpers/django-fixture.js'
import {withDjangoDatabase} from './helpers/django-database.js'

const ARCHIVE = 'tm_archive'
/** oclif wraps error messages to the terminal width with " ›   " prefixes; undo that for matching. */
const flat = (text: string) => text.replace(/\s*\n\s*›\s*/g, ' ')

describe('ops taskmanager:clear --archive-table and taskmanager:restore (end to end)', function () {
  const django = withDjangoDatabase('ops_tm_restore')
  /** The whole table as PostgreSQL's row text, ordered by id, before anything ran. */
  let original: string[]
  let originalIds: string[]

  beforeEach(async () => {
    await django.db.query(`DROP TABLE IF EXISTS ${ARCHIVE}`)
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

  it('--dry-run says what it would create and move, and writes nothing, not even the archive table', async () => {
    const result = await runOps(ops('clear', '--status', 'DONE', '--archive-table', ARCHIVE, '--dry-run'))
    expect(result.code, result.stderr).to.equal(0)
    // Plan lines are wrapped at 100 columns with an indented continuation: read them whole.
    expect(result.stdout.replace(/\n\s+/g, ' ')).to.contain(
      `Archive table: public.${ARCHIVE} does not exist yet; it is created before the first batch (the TaskManager columns plus archived_at)`,
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

  it('refuses an existing table with other columns (exit 1) before anything is deleted', async () => {
    await django.db.query(`CREATE TABLE ${ARCHIVE} (id bigint PRIMARY KEY, payload jsonb)`)
    const result = await runOps(ops('clear', '--status', 'DONE', '--archive-table', ARCHIVE, '--force'))
    expect(result.code).to.equal(1)
    expect(flat(result.stderr)).to.contain(
      `public.${ARCHIVE} exists but is not an archive of public.task_manager_taskmanager (extra column payload jsonb`,
    )
    expect(await tableText()).to.deep.equal(original)
  })

  it('kill -9 in the middle of the clear, then of the restore: every row is in exactly one table each time, and re-runs finish', async () => {
    const done = await count('task_manager_taskmanager', `status = 'DONE'`)
    await slowClearKilledWhen(['--archive-table', ARCHIVE], async () => (await count(ARCHIVE)) >= 1000)
    const archived = await count(ARCHIVE)
    expect(archived).to.be.greaterThan(0).and.lessThan(done)
    expect(archived % 200).to.equal(0) // whole batches only
    await expectEveryRowOnce()
    const finish = await runOps(ops('clear', '--status', 'DONE', '--archive-table', ARCHIVE, '--force'))
    expect(finish.code, finish.stderr).to.equal(0)
    expect(await count(ARCHIVE)).to.equal(done)
    await expectEveryRowOnce()

    await runOpsKilledWhen(
      ops('restore', '--from-archive-table', ARCHIVE, '--force', '--batch-size', '100', '--sleep-ms', '40'),
      async () => (await count(ARCHIVE)) <= done - 1000,
    )
    const left = await count(ARCHIVE)
    expect(left).to.be.greaterThan(0).and.lessThan(done)
    expect((done - left) % 100).to.equal(0)
    await expectEveryRowOnce()
    const again = await runOps(ops('restore', '--from-archive-table', ARCHIVE, '--force'))
    expect(again.code, again.stderr).to.equal(0)
    expect(await tableText()).to.deep.equal(original)
    expect(await count(ARCHIVE)).to.equal(0)
  })

  it('restores from a file written by --archive after a kill -9, with repeated and half-written lines, each row once', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ops-restore-')), 'done.jsonl')
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
