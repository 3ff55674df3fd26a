/**
 * widgets:clear through the real `ops`, with this working copy linked
 * (`ops plugins:link`), against a real PostgreSQL table.
 */
import {expect} from 'chai'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import pg from 'pg'

import {buildPlugin, freshDatabase, oneLine, Ops, PLUGIN_ROOT} from './support.js'
import {createWidgets} from './widgets-table.js'

describe('widgets:clear (linked into ops)', function () {
  const ops = new Ops()
  let url: string
  let drop: () => Promise<void>
  let db: pg.Client

  before(async function () {
    buildPlugin()
    const link = await ops.run(['plugins:link', PLUGIN_ROOT, '--no-install'])
    expect(link.code, link.stderr).to.equal(0)
    ;({url, drop} = await freshDatabase('ops_widgets'))
    db = new pg.Client({connectionString: url})
    await db.connect()
  })
  after(async () => {
    await db?.end()
    await drop?.()
    ops.dispose()
  })

  // 120 old rows (10 days) and 30 recent ones (1 hour), interleaved by id.
  beforeEach(async () => {
    await createWidgets(db, 150, (i) => ({ageDays: i % 5 === 0 ? 1 / 24 : 10}))
  })

  const rows = async () => (await db.query('SELECT id::int, name, created_at FROM widgets ORDER BY id')).rows
  const clear = (...args: string[]) => ['widgets:clear', '--database-url', url, '--table', 'widgets', ...args]

  it('shows the plan and writes nothing with --dry-run', async () => {
    const before = await rows()
    const result = await ops.run(clear('--older-than', '7d', '--dry-run'))
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).to.contain('Found 120 rows of widgets to delete')
    expect(result.stdout).to.match(/^Older than: 1 week \(created_at before \d{4}-/m)
    expect(result.stdout).to.contain('DRY RUN MODE - No records will be deleted')
    expect(await rows()).to.deep.equal(before)
  })

  it('refuses without --force when there is no TTY (exit 2), deleting nothing', async () => {
    const before = await rows()
    const result = await ops.run(clear('--older-than', '7d'))
    expect(result.code).to.equal(2)
    expect(result.stderr).to.contain('--force')
    expect(await rows()).to.deep.equal(before)
  })

  it('deletes exactly the old rows in small keyset batches and keeps the recent ones untouched', async () => {
    const recent = (await rows()).filter((r) => r.id % 5 === 0)
    const result = await ops.run(clear('--older-than', '7d', '--force', '--batch-size', '7', '--show-summary'))
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).to.contain('Successfully deleted 120 rows of widgets')
    expect(result.stdout).to.contain('Rows left in widgets: 30')
    expect(await rows()).to.deep.equal(recent)
  })

  it('prints one JSON document with --json', async () => {
    const result = await ops.run(clear('--older-than', '7d', '--force', '--json'))
    expect(result.code, result.stderr).to.equal(0)
    const doc = JSON.parse(result.stdout)
    expect(doc).to.include({outcome: 'done', planned: 120, done: 120, noun: 'rows of widgets'})
    expect(doc.filters).to.include({table: 'widgets', olderThanMs: 7 * 86_400_000})
  })

  it('rejects an age without a unit as bad usage (exit 2), before connecting', async () => {
    const result = await ops.run(clear('--older-than', '7', '--dry-run'))
    expect(result.code).to.equal(2)
    expect(oneLine(result.stderr)).to.contain('Invalid --older-than "7": use a number and a unit')
  })

  it('rejects a table name that is not an identifier (exit 2) and names a missing table', async () => {
    const injected = await ops.run(['widgets:clear', '--database-url', url, '--table', 'widgets; DROP TABLE widgets', '--force'])
    expect(injected.code).to.equal(2)
    expect(injected.stderr).to.contain('Invalid table name')
    const missing = await ops.run(['widgets:clear', '--database-url', url, '--table', 'gadgets', '--force'])
    expect(missing.code).to.equal(2)
    expect(oneLine(missing.stderr)).to.contain('Table gadgets does not exist')
    expect(await rows()).to.have.length(150)
  })

  describe('hooks', () => {
    const notifyFile = () => join(ops.home, `notify-${Date.now()}.jsonl`)
    const lines = (file: string) =>
      readFileSync(file, 'utf8')
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l))

    it('ops:plan vetoes a plan over OPS_WIDGETS_MAX_ROWS: exit 1, the reason printed, nothing deleted; ops:result records it', async () => {
      const before = await rows()
      const file = notifyFile()
      const result = await ops.run(clear('--older-than', '7d', '--force'), {OPS_WIDGETS_MAX_ROWS: '100', OPS_WIDGETS_NOTIFY_FILE: file})
      expect(result.code).to.equal(1)
      expect(oneLine(result.stderr)).to.contain(
        'Vetoed by a plugin hook: acme policy: widgets:clear plans 120 rows of widgets, more than OPS_WIDGETS_MAX_ROWS=100',
      )
      expect(await rows()).to.deep.equal(before)
      expect(lines(file)).to.deep.equal([{command: 'widgets:clear', outcome: 'vetoed', planned: 120, done: 0}])
    })

    it('ops:plan only warns on a dry-run', async () => {
      const result = await ops.run(clear('--older-than', '7d', '--dry-run'), {OPS_WIDGETS_MAX_ROWS: '100'})
      expect(result.code, result.stderr).to.equal(0)
      expect(oneLine(result.stderr)).to.contain('A real run would be refused: acme policy')
      expect(result.stdout).to.contain('DRY RUN MODE')
    })

    it('ops:result appends one line per run with the outcome and counts', async () => {
      const file = notifyFile()
      await ops.run(clear('--older-than', '7d', '--dry-run'), {OPS_WIDGETS_NOTIFY_FILE: file})
      await ops.run(clear('--older-than', '7d', '--force'), {OPS_WIDGETS_NOTIFY_FILE: file, OPS_WIDGETS_MAX_ROWS: '120'})
      expect(lines(file)).to.deep.equal([
        {command: 'widgets:clear', outcome: 'dry-run', planned: 120, done: 0},
        {command: 'widgets:clear', outcome: 'done', planned: 120, done: 120},
      ])
    })

    it('ops:plan refuses an unbounded run on a production profile, and allows a bounded one', async () => {
      const set = await ops.run(['profiles:set', 'prod', '--database-url', url, '--production'])
      expect(set.code, set.stderr).to.equal(0)
      const database = new URL(url).pathname.slice(1)
      const unbounded = await ops.run(['widgets:clear', '--table', 'widgets', '--profile', 'prod', '--confirm', database])
      expect(unbounded.code).to.equal(1)
      expect(oneLine(unbounded.stderr)).to.contain('every one of the rows of widgets on production profile "prod"')
      expect(await rows()).to.have.length(150)
      const bounded = await ops.run([
        'widgets:clear',
        '--table',
        'widgets',
        '--older-than',
        '7d',
        '--profile',
        'prod',
        '--confirm',
        database,
      ])
      expect(bounded.code, bounded.stderr).to.equal(0)
      expect(await rows()).to.have.length(30)
    })
  })
})
