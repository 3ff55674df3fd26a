/**
 * taskmanager:clear while the application keeps writing: two real writer
 * processes update the rows being cleared (one keeps them matching, one moves
 * some out of the filter) during the run, on both paths. Every row that still
 * matched is deleted, every row moved out is kept as the application left it,
 * every other row is byte-for-byte unchanged, and the run says so (exit 0); so
 * too as a role whose transactions default to another isolation level. Rows
 * the application moves into the filter after their batch passed did not match
 * the plan: they are reported and left (exit 0), not chased walk after walk.
 */
import {expect} from 'chai'
import {ChildProcess, spawn} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'
import pg from 'pg'

import {OPS_HOME, parseJsonOutput, runOps, waitForOutput} from '../../../test/helpers/cli.js'
import {TaskManagerTable} from '../src/task-manager-table.js'
import {insertTasks, rowTexts, taskRow, watch} from './helpers/django-fixture.js'
import {withAppRole, withDjangoDatabase} from './helpers/django-database.js'

const WRITER = join(dirname(fileURLToPath(import.meta.url)), 'helpers', 'live-writer.ts')

interface Writer {
  child: ChildProcess
  lines: string[]
}

async function startWriter(...args: string[]): Promise<Writer> {
  const child = spawn(process.execPath, ['--import', 'tsx', WRITER, ...args], {stdio: ['ignore', 'pipe', 'pipe']})
  const writer: Writer = {child, lines: []}
  let partial = ''
  child.stdout!.on('data', (chunk: Buffer) => {
    const text = partial + chunk.toString()
    const lines = text.split('\n')
    partial = lines.pop()!
    writer.lines.push(...lines)
  })
  await waitForOutput(child, 'ready', 30_000)
  return writer
}

async function stopWriter(writer: Writer): Promise<void> {
  if (writer.child.exitCode !== null) return
  const exited = new Promise((resolve) => writer.child.once('exit', resolve))
  writer.child.kill('SIGTERM')
  await exited
}

interface ClearJson {
  done: number
  planned: number
  data: {
    execution: {
      deleted: number
      skipped: number
      retries: number
      stillMatching: number
      newlyMatching: number
      stoppedBy: string
      batches: number
      passes: number
      takeovers: number
    }
  }
}

/** clear --status PENDING in small batches with a pause between them, so that the writers get many turns during the run. */
const clearPending = (url: string, flags: readonly string[], json = true) =>
  runOps(
    [
      'taskmanager:clear',
      '--database-url',
      url,
      '--status',
      'PENDING',
      ...flags,
      '--batch-size',
      '150',
      '--target-batch-ms',
      '0',
      '--sleep-ms',
      '15',
      '--force',
      ...(json ? ['--json'] : []),
    ],
    {timeoutMs: 150_000},
  )

describe('taskmanager:clear under live traffic (real writer processes)', function () {
  this.timeout(180_000)
  const django = withDjangoDatabase('ops_tm_live')

  for (const [method, flags, isolation] of [
    ['raw SQL', ['--use-cursor']],
    ['TypeORM', ['--use-orm']],
    // The second half of the ids holds few matching rows (the last ids one in fifty, so the walk spans them all), so the
    // second worker takes over part of the first's.
    ['raw SQL, --concurrency 2 with the matching rows in the older ids', ['--use-cursor', '--concurrency', '2']],
    // A database or role may default to another isolation level; a batch's re-check of a row updated under it needs READ COMMITTED.
    ['raw SQL, as a role whose transactions default to SERIALIZABLE', ['--use-cursor'], 'serializable'],
    ['TypeORM, as a role whose transactions default to REPEATABLE READ', ['--use-orm'], 'repeatable read'],
  ] as const) {
    it(`${method}: deletes every PENDING row that is being updated, keeps rows moved out of the filter, touches nothing else`, async () => {
      await django.reset()
      const skewed = (flags as readonly string[]).includes('--concurrency')
      const rows = Array.from({length: 12_000}, (_, i) =>
        taskRow({status: i % 3 === 2 || (skewed && i >= 7000 && i % 50 !== 0) ? 'DONE' : 'PENDING'}),
      )
      const ids = await insertTasks(django.db, rows)
      await watch(
        django.db,
        ids.filter((_, i) => i % 10 === 0),
      )
      const pending = new Set(ids.filter((_, i) => rows[i].status === 'PENDING'))
      const before = await rowTexts(django.db)

      const touch = await startWriter('touch', django.url, 'PENDING')
      const move = await startWriter('move', django.url, 'PENDING', 'SCHEDULED')
      const clear = (url: string) => clearPending(url, flags)
      let result
      try {
        result = isolation
          ? await withAppRole(django.db, django.url, async (asRole, role) => {
              await django.db.query(`ALTER ROLE ${role} SET default_transaction_isolation = '${isolation}'`)
              return clear(asRole)
            })
          : await clear(django.url)
      } finally {
        await stopWriter(touch)
        await stopWriter(move)
      }
      expect(result.code, result.stderr).to.equal(0)
      const doc = parseJsonOutput<ClearJson>(result)

      const touched = Number(
        touch.lines
          .filter((l) => l.startsWith('touched'))
          .at(-1)
          ?.split(' ')[1] ?? 0,
      )
      const moved = move.lines.filter((l) => l.startsWith('moved ')).map((l) => l.slice('moved '.length))
      // The writers really did change matching rows during the run.
      expect(touched).to.be.greaterThan(200)
      expect(moved.length).to.be.greaterThan(20)

      const after = await rowTexts(django.db)
      // Every row that still matched was deleted: none is left, and the count says so.
      expect(
        (await django.db.query(`SELECT count(*)::int AS n FROM task_manager_taskmanager WHERE status = 'PENDING'`)).rows[0].n,
      ).to.equal(0)
      expect(doc.done).to.equal(pending.size - moved.length)
      expect(doc.data.execution.deleted).to.equal(doc.done)
      expect(doc.data.execution.stillMatching).to.equal(0)
      expect(doc.data.execution.stoppedBy).to.equal('completed')
      if (skewed) expect(doc.data.execution.takeovers).to.be.greaterThan(0)
      // Under its default level every row the writer updated meanwhile failed a batch (40001), retried smaller each time.
      if (isolation) expect(doc.data.execution.retries).to.be.at.most(2)
      // Rows moved out of the filter are kept, as the application left them.
      for (const id of moved) {
        expect(after.get(id), `moved row ${id}`).to.match(/,SCHEDULED,"moved by the application",/)
      }
      // Every row that never matched is byte-for-byte what it was.
      for (const [id, text] of before) if (!pending.has(id)) expect(after.get(id)).to.equal(text)
      expect([...after.keys()].sort()).to.deep.equal([...ids.filter((id) => !pending.has(id)), ...moved].sort())
      // Watcher links go with their rows only.
      const {rows: links} = await django.db.query('SELECT taskmanager_id::text AS id FROM task_manager_taskwatcher_tasks')
      expect(links.every((l) => after.has(l.id))).to.equal(true)
      expect(links.length).to.equal(ids.filter((id, i) => i % 10 === 0 && after.has(id)).length)
    })
  }

  // The raw-SQL run is read as --json, the TypeORM one as a person reads it.
  for (const [method, flags, json] of [
    ['raw SQL', ['--use-cursor'], true],
    ['TypeORM', ['--use-orm'], false],
  ] as const) {
    it(`${method}: rows moved into the filter during the run are not of the plan: reported and left, exit 0`, async () => {
      await django.reset()
      const rows = Array.from({length: 9000}, (_, i) => taskRow({status: (['PENDING', 'SCHEDULED', 'DONE'] as const)[i % 3]}))
      const ids = await insertTasks(django.db, rows)
      const planned = new Set(ids.filter((_, i) => rows[i].status === 'PENDING'))
      const before = await rowTexts(django.db)
      // Tasks the application hands back to the queue, SCHEDULED to PENDING, all the while: some in ids already walked.
      const moveIn = await startWriter('move', django.url, 'SCHEDULED', 'PENDING')
      const touch = await startWriter('touch', django.url, 'PENDING')
      let result
      try {
        result = await clearPending(django.url, flags, json)
      } finally {
        await stopWriter(moveIn)
        await stopWriter(touch)
      }
      expect(result.code, result.stderr).to.equal(0)
      const number = (text: string) => Number(text.replaceAll(',', ''))
      const said =
        /Successfully deleted ([\d,]+) TaskManager records(?: \([^)]*\))?\. ([\d,]+) other rows? came to match the filter during the run, after (?:its|their) batch had passed \(changed by another session\); (?:it was|they were) not of the plan and (?:is|are) left for the next run/.exec(
          result.stdout,
        )
      const outcome = json
        ? (({done, data: {execution}}: ClearJson) => ({
            done,
            stillMatching: execution.stillMatching,
            newlyMatching: execution.newlyMatching,
          }))(parseJsonOutput<ClearJson>(result))
        : {done: number(said?.[1] ?? 'NaN'), stillMatching: 0, newlyMatching: number(said?.[2] ?? 'NaN')}
      if (!json) expect(said, result.stdout + result.stderr).to.not.equal(null)
      const movedIn = new Set(moveIn.lines.filter((l) => l.startsWith('moved ')).map((l) => l.slice('moved '.length)))
      const {rows: left} = await django.db.query(`SELECT id::text AS id FROM task_manager_taskmanager WHERE status = 'PENDING'`)
      // Every row of the plan is gone, updated meanwhile or not; what matches now was moved in, and was counted so.
      expect(left.filter((r) => planned.has(r.id))).to.deep.equal([])
      expect(left.every((r) => movedIn.has(r.id))).to.equal(true)
      expect(outcome.stillMatching).to.equal(0)
      expect(outcome.newlyMatching).to.be.greaterThan(0).and.at.most(left.length)
      expect(outcome.done).to.equal(planned.size + [...movedIn].filter((id) => !left.some((r) => r.id === id)).length)
      // Nothing else changed: the DONE rows, and the SCHEDULED rows the application left alone.
      const after = await rowTexts(django.db)
      for (const [id, text] of before) if (!planned.has(id) && !movedIn.has(id)) expect(after.get(id), id).to.equal(text)
    })
  }

  it('what is left after a walk: rows of the plan (unchanged since, or passed over while locked), apart from the others', async () => {
    await django.reset()
    const ids = await insertTasks(
      django.db,
      Array.from({length: 8}, (_, i) => taskRow({status: i < 6 ? 'DONE' : 'PENDING'})),
    )
    const client = new pg.Client({connectionString: django.url})
    const other = new pg.Client({connectionString: django.url})
    await Promise.all([client.connect(), other.connect()])
    try {
      const table = await TaskManagerTable.open(client, {name: 'task_manager_taskmanager'}, 'test')
      // A transaction running while the plan counts (its id is among the snapshot's in progress) commits after it.
      await other.query('BEGIN')
      await other.query(`UPDATE task_manager_taskmanager SET attempts = attempts + 1 WHERE id = $1`, [ids[0]])
      const {matching, span, snapshot} = await table.countMatchingWithLinks({status: 'DONE'})
      expect(matching).to.equal(6)
      expect(span, 'the ids of the rows counted').to.deep.equal({min: ids[0], max: ids[5]})
      await other.query('COMMIT')
      const touch = (id: string) => django.db.query(`UPDATE task_manager_taskmanager SET attempts = attempts + 1 WHERE id = $1`, [id])
      await touch(ids[1]) // a row of the plan changed since, still matching (as if locked, then updated)
      await touch(ids[2]) // the same, and passed over by a batch
      await django.db.query(`UPDATE task_manager_taskmanager SET status = 'DONE' WHERE id = $1`, [ids[6]]) // moved in
      // ids[3..5] unchanged since the plan; ids[0..2] and ids[6] written since.
      const everyId = {min: ids[0], max: ids.at(-1)!}
      const left = await table.countLeft({status: 'DONE'}, everyId, snapshot, [ids[2]])
      expect(left).to.deep.equal({planned: 4, matching: 7})
      expect(await table.countLeft({status: 'DONE'}, everyId, snapshot, [])).to.deep.equal({planned: 3, matching: 7})
      // Over the plan's span (what a clear walks and counts), the row moved in past its last id is not read.
      expect(await table.countLeft({status: 'DONE'}, span, snapshot, [ids[2]])).to.deep.equal({planned: 4, matching: 6})
      // Autovacuum may freeze any of them mid-run: a frozen row keeps its xmin, so the answer is the same.
      await django.db.query('VACUUM (FREEZE) task_manager_taskmanager')
      const {rows: frozen} = await django.db.query(
        `SELECT bool_and(age(t.xmin) > age(c.relfrozenxid)) AS all FROM task_manager_taskmanager t, pg_class c
          WHERE c.oid = 'task_manager_taskmanager'::regclass`,
      )
      expect(frozen[0].all, 'every row older than relfrozenxid').to.equal(true)
      expect(await table.countLeft({status: 'DONE'}, everyId, snapshot, [ids[2]])).to.deep.equal({planned: 4, matching: 7})
    } finally {
      await other.query('ROLLBACK').catch(() => {})
      await Promise.all([client.end(), other.end()])
    }
  })

  for (const [method, flags] of [
    ['raw SQL', ['--use-cursor', '--lock-timeout', '200ms']],
    ['TypeORM', ['--use-orm']],
  ] as const) {
    it(`${method}: exits 1 telling to re-run when a matching row stays locked through every walk; a re-run finishes`, async () => {
      await django.reset()
      const ids = await insertTasks(
        django.db,
        Array.from({length: 50}, () => taskRow({status: 'ERROR'})),
      )
      const holder = new pg.Client({connectionString: django.url})
      await holder.connect()
      try {
        await holder.query('BEGIN')
        await holder.query('UPDATE task_manager_taskmanager SET attempts = attempts + 1 WHERE id = $1', [ids[7]])
        // raw SQL waits lock_timeout, then retries the batch passing over locked rows; TypeORM skips them at once (SKIP LOCKED).
        const result = await runOps([
          'taskmanager:clear',
          '--database-url',
          django.url,
          '--status',
          'ERROR',
          ...flags,
          '--batch-size',
          '10',
          '--force',
          '--json',
        ])
        expect(result.code, result.stdout + result.stderr).to.equal(1)
        const doc = JSON.parse(result.stdout) as {error: {message: string}; data: ClearJson['data']; done: number}
        expect(doc.error.message).to.match(
          /^1 row that matched the plan still matches the filter: another session held it locked \(or kept changing it\) while 3 walks went by\..*Run the same command again to finish\./s,
        )
        expect(doc.done).to.equal(49)
        expect(doc.data.execution.stillMatching).to.equal(1)
        expect(doc.data.execution.skipped).to.equal(3) // passed over once per walk
        // The audit log and the ops:result hooks are told the same: not done, incomplete.
        const audit = readFileSync(join(OPS_HOME, 'data', 'audit.log'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l))
        expect(audit.at(-1)).to.include({command: 'taskmanager:clear', outcome: 'incomplete', done: 49})
      } finally {
        await holder.query('ROLLBACK')
        await holder.end()
      }
      const again = await runOps(['taskmanager:clear', '--database-url', django.url, '--status', 'ERROR', '--force'])
      expect(again.code, again.stderr).to.equal(0)
      expect(again.stdout).to.contain('Successfully deleted 1 TaskManager records')
    })
  }
})
