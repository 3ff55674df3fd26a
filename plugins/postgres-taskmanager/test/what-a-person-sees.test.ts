/**
 * The taskmanager commands as a person meets them in a terminal: a stuck-task report
 * that fits one screen, a plan that says what it waits for, status values in any case,
 * a mistyped flag answered in two lines, and a login without a user name explained.
 */
import {expect} from 'chai'
import pg from 'pg'

import {flat, mistypedFlagLines, parseJsonOutput, runOps, Screen} from '../../../test/helpers/cli.js'
import {insertTasks, taskRow} from './helpers/django-fixture.js'
import {withDjangoDatabase} from './helpers/django-database.js'

const LONG_NAME = 'async_learnpack_webhook_and_notify_the_student_and_the_teacher'

describe("taskmanager:* on a person's screen", function () {
  const django = withDjangoDatabase('ops_tm_screen')
  const hoursAgo = (h: number) => new Date(Date.now() - h * 3_600_000).toISOString()

  before(async () => {
    await django.reset()
    // 25 stuck groups of 3 rows with long arguments, one group of a single row, and rows that are not stuck.
    const rows = []
    for (let g = 0; g < 25; g++) {
      for (let i = 0; i < 3; i++)
        rows.push(
          taskRow({
            status: i ? 'PENDING' : 'SCHEDULED',
            task_module: `breathecode.module_${g}.tasks`,
            task_name: `task_${g}`,
            last_run: hoursAgo(2 + g),
            arguments: {args: ['x'.repeat(300)]},
          }),
        )
    }
    rows.push(taskRow({status: 'PENDING', task_module: 'breathecode.lonely.tasks', task_name: 'once', last_run: hoursAgo(1.5)}))
    rows.push(taskRow({status: 'PENDING', task_module: 'breathecode.fresh.tasks', task_name: 'recent', last_run: hoursAgo(0.2)}))
    rows.push(taskRow({status: 'DONE', task_module: 'breathecode.old.tasks', task_name: 'finished', last_run: hoursAgo(100)}))
    // Created long ago, run just now (not stuck): what a realistic clear filter matches.
    for (let i = 0; i < 2; i++)
      rows.push(
        taskRow({
          status: 'SCHEDULED',
          task_module: 'breathecode.assignments.tasks',
          task_name: LONG_NAME,
          ageDays: 40,
          last_run: hoursAgo(0.1),
        }),
      )
    await insertTasks(django.db, rows)
  })

  it('taskmanager:stuck --hours 1 fits one 120x35 screen: the biggest groups, one "+N more" line, singular and plural right', async () => {
    const screen = await Screen.start(['taskmanager:stuck', '--database-url', django.url, '--hours', '1'])
    const {code, screen: text} = await screen.exit()
    expect(code, text).to.equal(0)
    const lines = text.split('\n')
    expect(lines.length, text).to.be.at.most(35)
    expect(
      lines.every((l) => l.length <= 120),
      text,
    ).to.equal(true)
    expect(lines[0]).to.match(
      /^Tasks stuck in SCHEDULED or PENDING with last_run older than 1 hour \(before \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\):$/,
    )
    // Biggest first, then by name.
    expect(lines[2], text).to.match(/^breathecode\.module_0\.tasks\.task_0: 3 records \(.*\), oldest last_run /)
    expect(lines.filter((l) => /^breathecode\./.test(l))).to.have.length(10)
    // One sample row per group, cut at the screen's edge.
    expect(lines.filter((l) => /^ {2}id \d+ /.test(l))).to.have.length(10)
    expect(text).to.contain('…')
    expect(text).to.match(/^\+16 more tasks \(46 records\): --limit 26 to see them all$/m)
    expect(text).to.match(/^Total: 76 stuck records in 26 tasks \(module and name\)$/m)
    expect(text).not.to.contain('recent')
  })

  it('--limit and --samples show more; a group of one row says "1 record"', async () => {
    const all = await runOps(['taskmanager:stuck', '--database-url', django.url, '--hours', '1', '--limit', '30', '--samples', '0'])
    expect(all.code, all.stderr).to.equal(0)
    expect(all.stdout.split('\n').filter((l) => /^breathecode\./.test(l))).to.have.length(26)
    expect(all.stdout).to.match(/^breathecode\.lonely\.tasks\.once: 1 record \(PENDING 1\)/m)
    expect(all.stdout).not.to.contain('more tasks')
    expect(all.stdout).not.to.match(/^ {2}id /m)
    const json = parseJsonOutput<{total: number; groupCount: number; groups: {samples: {arguments: {args: string[]}}[]}[]}>(
      await runOps(['taskmanager:stuck', '--database-url', django.url, '--hours', '1', '--samples', '2', '--json']),
    )
    expect(json).to.include({total: 76, groupCount: 26})
    expect(json.groups).to.have.length(10)
    expect(json.groups[0].samples).to.have.length(2)
    expect(json.groups[0].samples[0].arguments.args[0]).to.have.length(300)
  })

  it('taskmanager:clear --dry-run with a long filter keeps every plan line within 100 columns on a 120-column terminal', async () => {
    const args = [
      'taskmanager:clear',
      '--database-url',
      django.url,
      '--status',
      'SCHEDULED',
      '--task-module',
      'breathecode.assignments.tasks',
    ]
    const more = ['--task-name', LONG_NAME, '--older-than', '30d']
    const tuning = ['--concurrency', '2', '--max-replica-lag', '10s', '--dry-run']
    const {code, screen: text} = await Screen.start([...args, ...more, ...tuning]).then((s) => s.exit())
    expect(code, text).to.equal(0)
    expect(text).to.match(/^Found 2 TaskManager records to delete$/m)
    const lines = text.split('\n')
    for (const line of lines) {
      expect(line.length, `${line}\n--- on:\n${text}`).to.be.at.most(100)
      expect(line.trim(), text).not.to.match(/^[^\p{L}\p{N}\s]{1,2}$/u)
    }
    // The filter is all there, whatever the line breaks.
    const joined = lines.map((l) => l.trim()).join(' ')
    for (const part of ['breathecode.assignments.tasks', LONG_NAME]) expect(joined, text).to.contain(part)
  })

  it('taskmanager:clear says what it waits for while a migration locks the table, then shows the plan in its place', async () => {
    const migration = new pg.Client({connectionString: django.url})
    await migration.connect()
    try {
      await migration.query('BEGIN')
      await migration.query('LOCK TABLE task_manager_taskmanager IN ACCESS EXCLUSIVE MODE')
      const screen = await Screen.start(['taskmanager:clear', '--database-url', django.url, '--status', 'DONE', '--dry-run'])
      const waiting = await screen.waitFor(/^❯ Counting the matching rows of public\.task_manager_taskmanager · [1-9]s$/m)
      expect(waiting).not.to.contain('Found')
      await migration.query('COMMIT')
      const {code, screen: text} = await screen.exit()
      expect(code, text).to.equal(0)
      expect(text.split('\n')[0]).to.equal('Found 1 TaskManager records to delete')
      expect(text).not.to.contain('Counting')
    } finally {
      await migration.end()
    }
  })

  it('accepts a status in any case and shows it upper-case', async () => {
    const result = await runOps(['taskmanager:clear', '--database-url', django.url, '--status', 'done', '--dry-run'])
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).to.contain('Found 1 TaskManager records to delete')
    expect(result.stdout).to.match(/^Status: DONE$/m)
    const json = parseJsonOutput<{filters: {status: string}}>(
      await runOps(['taskmanager:clear', '--database-url', django.url, '--status', 'Scheduled', '--dry-run', '--json']),
    )
    expect(json.filters.status).to.equal('SCHEDULED')
    const bad = await runOps(['taskmanager:clear', '--database-url', django.url, '--status', 'finished', '--dry-run'])
    expect(bad.code).to.equal(2)
    expect(flat(bad.stderr)).to.contain(
      'Expected --status=finished to be one of: PENDING, DONE, CANCELLED, REVERSED, PAUSED, ABORTED, ERROR, SCHEDULED, ALL',
    )
  })

  it('answers a mistyped flag with the nearest flag and one line pointing at --help, not the whole help', async () => {
    const result = await runOps(['taskmanager:clear', '--database-url', django.url, '--stauts', 'DONE', '--dry-run'])
    expect(result.code).to.equal(2)
    expect(result.stderr.trimEnd().split('\n')).to.deep.equal(mistypedFlagLines('--stauts', '--status', 'taskmanager:clear'))
    expect(result.stdout).to.equal('')
  })

  it('with no user in the URL, names the PGUSER it tried and how to name another', async () => {
    const endpoint = new URL(django.url)
    const result = await runOps(['taskmanager:summary', '--database-url', `postgres://${endpoint.host}/postgres`], {
      env: {USER: 'someone_else', PGUSER: 'ops_no_such_role', LOGNAME: undefined},
    })
    expect(result.code).to.equal(1)
    const text = flat(result.stderr)
    expect(text).to.contain('Tried user "ops_no_such_role" (from PGUSER).')
    expect(text).not.to.contain('someone_else')
    expect(text).to.contain('--database-url postgres://USER@host:5432/db')
  })

  it('taskmanager:restore takes a lower-case --status too and shows it upper-case', async () => {
    const archive = 'ops_screen_archive'
    const cleared = await runOps([
      'taskmanager:clear',
      '--database-url',
      django.url,
      '--status',
      'DONE',
      '--archive-table',
      archive,
      '--force',
    ])
    expect(cleared.code, cleared.stderr).to.equal(0)
    const restore = ['taskmanager:restore', '--database-url', django.url, '--from-archive-table', archive, '--status', 'done']
    const dry = await runOps([...restore, '--dry-run'])
    expect(dry.code, dry.stderr).to.equal(0)
    expect(dry.stdout).to.match(/^Status: DONE$/m)
    expect(dry.stdout).to.match(/^Found 1 /m)
    const json = parseJsonOutput<{filters: {status: string}}>(await runOps([...restore, '--dry-run', '--json']))
    expect(json.filters.status).to.equal('DONE')
    const put = await runOps([...restore, '--force'])
    expect(put.code, put.stderr).to.equal(0)
    const back = await django.db.query(`SELECT count(*)::int AS n FROM task_manager_taskmanager WHERE status = 'DONE'`)
    expect(back.rows[0].n).to.equal(1)
  })

  it('with the default URL and no $USER, says that no user was tried and how to name one', async () => {
    const endpoint = new URL(django.url)
    const result = await runOps(['taskmanager:summary', '--database-url', `postgres://${endpoint.host}/postgres`], {
      env: {USER: undefined, PGUSER: undefined, LOGNAME: undefined},
    })
    expect(result.code).to.equal(1)
    const text = flat(result.stderr)
    expect(text).to.contain('no PostgreSQL user name specified in startup packet')
    expect(text).to.contain('No user name was tried: the URL names none and neither PGUSER nor USER is set.')
    expect(text).to.contain('--database-url postgres://USER@host:5432/db')
    expect(text).to.contain('PGUSER')
  })
})
