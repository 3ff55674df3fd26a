/**
 * taskmanager:clear's deletion, driven in-process against a real PostgreSQL
 * holding Django's exact schema: both paths (raw SQL and TypeORM), every
 * filter, link rows, the archive, and rows that must stay byte-for-byte.
 */
import {expect} from 'chai'
import {readFileSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import pg from 'pg'

import {BatchStats, deleteInBatches, newStats, nextSize, splitIdRange} from '../src/batches.js'
import {ClearOperation} from '../src/clear-operation.js'
import type {TaskFilter} from '../src/filter.js'
import {KeyShare, KeyShares} from '../src/key-shares.js'
import {parseTableName} from '../src/table-name.js'
import {BatchOutcome, BatchRequest, TaskManagerTable} from '../src/task-manager-table.js'
import {dropDjangoSchema, insertTasks, MODULES, NAMES, rowTexts, STATUSES, taskRow, TaskRow, watch} from './helpers/django-fixture.js'
import {withDjangoDatabase} from './helpers/django-database.js'
import {clearDirect} from './helpers/direct.js'

/** The rows every test starts from: every status x module x name, some old, some linked to a watcher. */
function population(): TaskRow[] {
  const rows: TaskRow[] = []
  for (const status of STATUSES)
    for (const task_module of MODULES)
      for (const task_name of NAMES) {
        rows.push(taskRow({status, task_module, task_name, ageDays: 2}), taskRow({status, task_module, task_name, ageDays: 45}))
      }
  return rows
}

function matches(row: TaskRow, filter: TaskFilter, cutoffDays = 30): boolean {
  if (filter.status && filter.status !== 'ALL' && row.status !== filter.status) return false
  if (filter.taskModule !== undefined && row.task_module !== filter.taskModule) return false
  if (filter.taskName !== undefined && row.task_name !== filter.taskName) return false
  if (filter.olderThanMs !== undefined && Date.parse(row.created_at) > Date.now() - cutoffDays * 86_400_000) return false
  return true
}

interface Walked {
  request: BatchRequest
  outcome: BatchOutcome
}

/**
 * deleteInBatches over every DONE row of `ids` with `workers` workers, each on its own connection, fixed batches of 5;
 * each worker's batches as its deleter received and returned them (the deleting is the real table's). `beforeBatch`
 * runs before worker `worker`'s batch number `n` (from 1) and may stop the run, as Ctrl-C does.
 */
async function walkRecorded(
  url: string,
  ids: string[],
  workers: number,
  beforeBatch?: (worker: number, n: number, stop: () => void) => Promise<void>,
): Promise<{walked: Walked[][]; stats: BatchStats}> {
  const clients = Array.from({length: workers}, () => new pg.Client({connectionString: url}))
  await Promise.all(clients.map((c) => c.connect()))
  try {
    const tables = await Promise.all(clients.map((c) => TaskManagerTable.open(c, {name: 'task_manager_taskmanager'}, 'test')))
    const walked: Walked[][] = tables.map(() => [])
    const ctrlC = new AbortController()
    const deleters = tables.map((table, i) => ({
      async deleteBatch(request: BatchRequest) {
        await beforeBatch?.(i, walked[i].length + 1, () => ctrlC.abort())
        const outcome = await table.deleteBatch(request)
        walked[i].push({request, outcome})
        return outcome
      },
      ping: () => table.ping(),
    }))
    const stats = newStats(5, workers)
    const {snapshot} = await tables[0].countMatchingWithLinks({status: 'DONE'})
    const batches = deleteInBatches(
      {
        deleters,
        countLeft: (passedOver) => tables[0].countLeft({status: 'DONE'}, {min: ids[0], max: ids.at(-1)!}, snapshot, passedOver),
        walPosition: () => tables[0].walInsertPosition(),
        walFlushedTo: (position) => tables[0].walFlushedTo(position),
      },
      {
        filter: {status: 'DONE'},
        ranges: splitIdRange(ids[0], ids.at(-1)!, workers),
        batchSize: 5,
        targetMs: 0,
        maxBatchSize: 5,
        limits: {statementTimeoutMs: 30_000, lockTimeoutMs: 2000},
        sleepMs: 0,
      },
      ctrlC.signal,
      stats,
    )
    for await (const _ of batches);
    return {walked, stats}
  } finally {
    await Promise.all(clients.map((c) => c.end()))
  }
}

describe('taskmanager:clear deletes exactly the matching rows', function () {
  const django = withDjangoDatabase('ops_tm_clear')
  let rows: TaskRow[]
  let ids: string[]

  beforeEach(async () => {
    await django.reset()
    rows = population()
    ids = await insertTasks(django.db, rows)
    await watch(
      django.db,
      ids.filter((_, i) => i % 5 === 0),
    )
    // A second watcher on some of them: a task can have several link rows.
    await watch(
      django.db,
      ids.filter((_, i) => i % 10 === 0),
    )
  })

  const cases: {title: string; filter: TaskFilter}[] = [
    {title: 'SCHEDULED rows', filter: {status: 'SCHEDULED'}},
    {title: 'one task module', filter: {taskModule: 'breathecode.notify.tasks'}},
    {title: 'one task name', filter: {taskName: 'persist_single_lead'}},
    {title: 'SCHEDULED rows of one module', filter: {status: 'SCHEDULED', taskModule: 'breathecode.assignments.tasks'}},
    {title: 'ERROR rows of one task name', filter: {status: 'ERROR', taskName: 'process_file'}},
    {title: 'DONE rows older than 30 days', filter: {status: 'DONE', olderThanMs: 30 * 86_400_000}},
    {
      title: 'rows of one module and name older than 30 days',
      filter: {taskModule: 'breathecode.payments.tasks', taskName: 'renew_consumables', olderThanMs: 720 * 3_600_000},
    },
    {title: 'every row with --status ALL', filter: {status: 'ALL'}},
    {title: 'every row with no filter at all', filter: {}},
  ]

  for (const method of ['raw SQL', 'TypeORM'] as const) {
    for (const {title, filter} of cases) {
      it(`${method}: clears ${title}, their watcher links, and leaves every other row byte-for-byte unchanged`, async () => {
        const before = await rowTexts(django.db)
        const expected = ids.filter((_, i) => matches(rows[i], filter))
        expect(expected.length).to.be.greaterThan(0)
        const linksBefore = (await django.db.query('SELECT taskmanager_id::text AS id FROM task_manager_taskwatcher_tasks')).rows.map(
          (r) => r.id,
        )

        const run = await clearDirect(django.url, filter, {useCursor: method === 'raw SQL', batchSize: 7})
        expect(run.plan.method).to.equal(method === 'raw SQL' ? 'raw-sql' : 'typeorm')
        expect(run.plan.count).to.equal(expected.length)
        expect(run.done).to.equal(expected.length)

        const after = await rowTexts(django.db)
        const gone = new Set(expected)
        expect([...after.keys()]).to.deep.equal([...before.keys()].filter((id) => !gone.has(id)))
        for (const [id, text] of after) expect(text).to.equal(before.get(id))
        const linksAfter = (await django.db.query('SELECT taskmanager_id::text AS id FROM task_manager_taskwatcher_tasks')).rows.map(
          (r) => r.id,
        )
        expect(linksAfter.sort()).to.deep.equal(linksBefore.filter((id) => !gone.has(id)).sort())
        expect(run.plan.data.execution.links).to.equal(linksBefore.length - linksAfter.length)
        // The plan announced exactly the link rows that went.
        expect(run.plan.data.watcherLinks).to.equal(linksBefore.length - linksAfter.length)
      })
    }
  }

  it('treats SQL-injection strings as plain values: nothing matches, nothing is touched', async () => {
    const before = await rowTexts(django.db)
    const evil = [`x' OR '1'='1`, `'; DROP TABLE task_manager_taskmanager; --`, `breathecode.notify.tasks' --`, `$1`, `\\'`, `" OR TRUE --`]
    for (const value of evil) {
      for (const useCursor of [true, false]) {
        const a = await clearDirect(django.url, {taskModule: value}, {useCursor})
        const b = await clearDirect(django.url, {taskName: value, status: 'ALL'}, {useCursor})
        expect(a.plan.count + a.done + b.plan.count + b.done).to.equal(0)
      }
    }
    expect(await rowTexts(django.db)).to.deep.equal(before)
  })

  it('deletes a row whose module holds quotes and backslashes when asked for exactly that value', async () => {
    const odd = `breathecode.it's "odd" \\ tasks; --`
    const [id] = await insertTasks(django.db, [taskRow({task_module: odd, status: 'PENDING'})])
    const run = await clearDirect(django.url, {taskModule: odd}, {useCursor: true})
    expect(run.done).to.equal(1)
    expect((await django.db.query('SELECT count(*)::int AS n FROM task_manager_taskmanager WHERE id = $1', [id])).rows[0].n).to.equal(0)
  })

  for (const useCursor of [true, false]) {
    it(`${useCursor ? 'raw SQL' : 'TypeORM'}: --archive holds exactly the deleted rows, a JSON line each, in full precision`, async () => {
      const filter: TaskFilter = {status: 'PENDING'}
      const expected = (
        await django.db.query(`SELECT row_to_json(t)::text AS row FROM task_manager_taskmanager t WHERE status = 'PENDING' ORDER BY id`)
      ).rows.map((r) => r.row)
      const file = join(tmpdir(), `ops-archive-${process.pid}-${useCursor}.jsonl`)
      rmSync(file, {force: true})
      try {
        const run = await clearDirect(django.url, filter, {useCursor, archive: file, batchSize: 9})
        expect(run.done).to.equal(expected.length)
        const lines = readFileSync(file, 'utf8').trimEnd().split('\n')
        expect(lines).to.deep.equal(expected)
        // Microseconds survive (PostgreSQL prints them without trailing zeros, so look for a row that has all six).
        expect(lines.some((line) => /\.\d{6}\+00:00$/.test(JSON.parse(line).last_run))).to.equal(true)
      } finally {
        rmSync(file, {force: true})
      }
    })
  }

  it('stops between batches when aborted; a second run finishes with exactly the matching rows gone', async () => {
    const before = await rowTexts(django.db)
    const expected = new Set(ids.filter((_, i) => rows[i].status === 'DONE'))
    const first = await clearDirect(django.url, {status: 'DONE'}, {useCursor: true, batchSize: 5, abortAfterBatches: 2})
    expect(first.done).to.equal(10)
    const second = await clearDirect(django.url, {status: 'DONE'}, {useCursor: true, batchSize: 5})
    expect(second.plan.count).to.equal(expected.size - 10)
    const after = await rowTexts(django.db)
    expect([...after.keys()]).to.deep.equal([...before.keys()].filter((id) => !expected.has(id)))
  })

  it('walks only the ids the plan counted: rows inserted after it, or moved into the filter past its last id, are left', async () => {
    await django.reset()
    // As a queue that keeps its finished tasks: the old ids DONE, the recent ones PENDING.
    const ids = await insertTasks(
      django.db,
      Array.from({length: 20}, (_, i) => taskRow({status: i < 10 ? 'DONE' : 'PENDING'})),
    )
    const operation = new ClearOperation({
      url: django.url,
      table: 'task_manager_taskmanager',
      filter: {status: 'DONE'},
      useCursor: true,
      batchSize: 3,
      targetBatchMs: 0,
      limits: {statementTimeoutMs: 30_000, lockTimeoutMs: 2000},
      sleepMs: 0,
    })
    await operation.connect()
    try {
      const plan = await operation.plan()
      expect(plan.span).to.deep.equal({min: ids[0], max: ids[9]})
      const [late] = await insertTasks(django.db, [taskRow({status: 'DONE'})])
      await django.db.query(`UPDATE task_manager_taskmanager SET status = 'DONE' WHERE id = $1`, [ids[15]])
      for (const step of operation.steps(plan)) for await (const _ of step.run(new AbortController().signal));
      const left = (await django.db.query(`SELECT id::text FROM task_manager_taskmanager WHERE status = 'DONE' ORDER BY id`)).rows
      expect(left.map((r) => r.id)).to.deep.equal([ids[15], late])
      expect(plan.data.execution).to.include({deleted: 10, stillMatching: 0, newlyMatching: 0, stoppedBy: 'completed'})
    } finally {
      await operation.disconnect()
    }
  })

  it('raw SQL, 2 workers: the one whose half holds no matching row takes over half of the other, and no id is walked twice', async () => {
    await django.reset()
    // As in production: the old ids are DONE, the recent ones PENDING, so the first half holds all the work.
    const ids = await insertTasks(
      django.db,
      Array.from({length: 200}, (_, i) => taskRow({status: i < 100 ? 'DONE' : 'PENDING'})),
    )
    const pending = [...(await rowTexts(django.db)).entries()].slice(100)
    const {walked, stats} = await walkRecorded(django.url, ids, 2)
    expect(stats.deleted).to.equal(100)
    expect(stats.stillMatching).to.equal(0)
    expect([...(await rowTexts(django.db)).entries()]).to.deep.equal(pending)
    const half = BigInt(splitIdRange(ids[0], ids.at(-1)!, 2)[0].upTo)
    // The second worker deleted rows of the first half: it took them over.
    const tookOver = walked[1].filter(({request, outcome}) => BigInt(request.afterId) < half && outcome.deleted > 0)
    expect(tookOver.length).to.be.greaterThan(0)
    // Every batch's range (after, scannedTo] is disjoint from every other's.
    const ranges = walked
      .flat()
      .filter(({outcome}) => outcome.scannedTo !== undefined)
      .map(({request, outcome}) => [BigInt(request.afterId), BigInt(outcome.scannedTo!)] as const)
      .sort((a, b) => (a[0] < b[0] ? -1 : 1))
    for (let i = 1; i < ranges.length; i++) expect(ranges[i][0] >= ranges[i - 1][1], `${ranges[i - 1]} and ${ranges[i]}`).to.equal(true)
  })

  it('raw SQL, 3 workers stopped while two wait to take over: every worker ends, each batch whole', async () => {
    await django.reset()
    // Every matching row is in the first worker's third of the ids: the two others run out of work at once and ask it.
    const ids = await insertTasks(
      django.db,
      Array.from({length: 300}, (_, i) => taskRow({status: i < 100 ? 'DONE' : 'PENDING'})),
    )
    const walking = walkRecorded(django.url, ids, 3, async (worker, n, stop) => {
      if (worker !== 0 || n !== 1) return
      // The two others find nothing in their thirds and ask for part of this share meanwhile; Ctrl-C comes while
      // this first batch is in flight, and its end hands one of them a part that it must close unwalked.
      await new Promise((r) => setTimeout(r, 300))
      stop()
    })
    const hung = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('a worker never ended')), 15_000).unref())
    const {walked, stats} = await Promise.race([walking, hung])
    // The batch in flight finished; no batch started after the stop.
    expect(walked[0].length).to.equal(1)
    expect(walked[1].length + walked[2].length).to.equal(2)
    expect(stats.deleted).to.equal(5)
    expect(stats.takeovers).to.equal(0)
    const left = await django.db.query(`SELECT count(*)::int AS n FROM task_manager_taskmanager WHERE status = 'DONE'`)
    expect(left.rows[0].n).to.equal(95)
  })

  it('works on a schema-qualified table given with --table, quoting identifiers', async () => {
    const schema = 'Tenant "A"'
    await django.reset(schema)
    const table = `"Tenant ""A""".task_manager_taskmanager`
    const tenantIds = await insertTasks(
      django.db,
      [taskRow({status: 'ERROR'}), taskRow({status: 'DONE'}), taskRow({status: 'ERROR'})],
      `"Tenant ""A""".task_manager_taskmanager`,
    )
    await watch(django.db, [tenantIds[0]], schema)
    const publicBefore = await rowTexts(django.db)
    for (const useCursor of [true, false]) {
      await clearDirect(django.url, {status: 'ERROR'}, {useCursor, table})
    }
    const left = await django.db.query(`SELECT status FROM "Tenant ""A""".task_manager_taskmanager`)
    expect(left.rows.map((r) => r.status)).to.deep.equal(['DONE'])
    expect((await django.db.query(`SELECT count(*)::int AS n FROM "Tenant ""A""".task_manager_taskwatcher_tasks`)).rows[0].n).to.equal(0)
    expect(await rowTexts(django.db)).to.deep.equal(publicBefore)
    await dropDjangoSchema(django.db, schema)
  })

  it('reports any other foreign key that references the table before deleting anything', async () => {
    await django.db.query(`CREATE TABLE task_audit (id serial PRIMARY KEY, task_id bigint REFERENCES task_manager_taskmanager(id))`)
    await django.db.query(`INSERT INTO task_audit (task_id) VALUES ($1)`, [ids[1]])
    try {
      const before = await rowTexts(django.db)
      const run = await clearDirect(django.url, {status: 'ALL'}, {useCursor: true, abortAfterBatches: 0}).catch((e) => e)
      expect(run).to.be.instanceOf(Error)
      expect(String(run.message)).to.contain('task_audit_task_id_fkey')
      expect(await rowTexts(django.db)).to.deep.equal(before) // the only batch rolled back
      const {plan} = await clearDirect(django.url, {status: 'REVERSED', taskModule: 'nothing'}, {useCursor: true})
      expect(plan.warnings?.join('\n')).to.match(
        /public\.task_audit\(task_id\) references public\.task_manager_taskmanager .*task_audit_task_id_fkey, ON DELETE NO ACTION/,
      )
      expect(plan.data.foreignKeys.filter((fk) => fk.isWatcherLink)).to.have.length(1)
    } finally {
      await django.db.query('DROP TABLE task_audit')
    }
  })

  it('--archive: a batch keeps its JSON lines under the byte budget when big rows follow small ones, with SKIP LOCKED too', async () => {
    await django.reset()
    // Long tracebacks after short messages: a cap learnt from the first rows would let a batch of big ones through.
    const traceback = 'Traceback (most recent call last):\n'.repeat(3000)
    const ids = await insertTasks(django.db, [
      ...Array.from({length: 50}, () => taskRow({status: 'ERROR'})),
      ...Array.from({length: 50}, () => taskRow({status: 'ERROR', status_message: traceback})),
    ])
    const budget = 1_000_000
    const table = await TaskManagerTable.open(django.db, {name: 'task_manager_taskmanager'}, 'test')
    const archived: string[] = []
    let after = '0'
    for (let n = 0; n < 100; n++) {
      let lines: string[] = []
      const outcome = await table.deleteBatch({
        filter: {status: 'ERROR'},
        afterId: after,
        upToId: ids.at(-1)!,
        limit: 1000,
        limits: {statementTimeoutMs: 30_000, lockTimeoutMs: 2000},
        withRows: true,
        maxBytes: budget,
        skipLocked: n % 2 === 1,
        beforeCommit: async (rows) => void (lines = rows),
      })
      if (outcome.scannedTo === undefined) break
      after = outcome.scannedTo
      archived.push(...lines)
      const bytes = lines.map((line) => Buffer.byteLength(line) + 1)
      // Every line but the last fits the budget (a batch always takes its first row).
      expect(
        bytes.slice(0, -1).reduce((a, b) => a + b, 0),
        `batch ${n + 1}`,
      ).to.be.lessThan(budget)
      expect(outcome.deleted).to.equal(lines.length)
    }
    expect(archived.map((line) => String(JSON.parse(line).id))).to.deep.equal(ids)
    expect(Buffer.byteLength(archived.at(-1)!)).to.be.greaterThan(100_000)
    expect((await django.db.query(`SELECT count(*)::int AS n FROM task_manager_taskmanager`)).rows[0].n).to.equal(0)
  })

  it('a referencing table with no index on its column keeps batches short: its foreign-key checks are not JIT-compiled', async function () {
    if (!(await django.db.query('SELECT pg_jit_available() AS on')).rows[0].on) this.skip()
    await django.reset()
    const ids = await insertTasks(django.db, [...Array.from({length: 600}, () => taskRow({status: 'DONE'})), taskRow({status: 'PENDING'})])
    // No index on task_id, as in a table made by hand: every check of a deleted row scans it.
    await django.db.query(`CREATE TABLE task_note (id serial PRIMARY KEY, task_id bigint REFERENCES task_manager_taskmanager(id))`)
    await django.db.query(`INSERT INTO task_note (task_id) VALUES ($1)`, [ids.at(-1)])
    try {
      const started = Date.now()
      const {done} = await clearDirect(django.url, {status: 'DONE'}, {useCursor: true, batchSize: 300})
      expect(done).to.equal(600)
      // With enable_seqscan off, that scan's cost got each check JIT-compiled: 30 ms or more a row, 18 s here.
      expect(Date.now() - started).to.be.lessThan(5000)
    } finally {
      await django.db.query('DROP TABLE task_note')
    }
  })
})

describe('small pieces of taskmanager:clear', () => {
  it('parses table names as PostgreSQL does', () => {
    expect(parseTableName('task_manager_taskmanager')).to.deep.equal({name: 'task_manager_taskmanager'})
    expect(parseTableName('Public.Task_Manager_TaskManager')).to.deep.equal({schema: 'public', name: 'task_manager_taskmanager'})
    expect(parseTableName('"My ""S"".x"."T"')).to.deep.equal({schema: 'My "S".x', name: 'T'})
    expect(() => parseTableName('a.b.c')).to.throw(/schema\.table/)
    expect(() => parseTableName('"a')).to.throw(/unterminated/)
  })

  it('a worker asking for a share gets its far half once the batch in flight ends, and nothing once it is too small', async () => {
    const share = new KeyShare('0', '100')
    share.advance('10')
    const asked = share.ask()
    const second = share.ask()
    share.advance('20')
    expect(await asked).to.include({after: '60', upTo: '100'})
    expect(share.upTo).to.equal('60')
    // The second worker that asked is answered after the owner's next batch.
    share.advance('22')
    expect(await second).to.include({after: '41', upTo: '60'})
    expect(share.upTo).to.equal('41')
    // A batch of 11 ids leaves 8: halves of 4 ids would each be less than a batch.
    const late = share.ask()
    share.advance('33')
    expect(await late).to.equal(undefined)
    expect(share.open).to.equal(false)
    const walked = new KeyShare('0', '100')
    const pending = walked.ask()
    walked.close()
    expect(await pending).to.equal(undefined)
    // The busiest share is asked, and works with ids beyond 2^53.
    const shares = new KeyShares([
      {after: '0', upTo: '100'},
      {after: '9007199254740993', upTo: '9007199254741993'},
    ])
    shares.at(0).close()
    const far = shares.takeOver()
    shares.at(1).advance('9007199254741003')
    expect(await far).to.include({after: '9007199254741498', upTo: '9007199254741993'})
  })

  it('adapts the batch size toward the target duration, at most 2x a step', () => {
    expect(nextSize(5000, 100, 250, 50_000)).to.equal(10_000)
    expect(nextSize(5000, 1000, 250, 50_000)).to.equal(2500)
    expect(nextSize(5000, 250, 250, 50_000)).to.equal(5000)
    expect(nextSize(40_000, 10, 250, 50_000)).to.equal(50_000)
  })
})
