/**
 * npm run bench:taskmanager -- --rows 1000000 [--batch-size N]
 *
 * Builds a TaskManager table of the SPEC's shape (about 62% DONE, watcher link
 * rows on 1%) three times and deletes every DONE row with:
 *   1. the baseline: one transaction, one DELETE for the link rows and one for the tasks;
 *   2. ops' raw-SQL path (taskmanager:clear --use-cursor), the real CLI;
 *   3. ops' TypeORM path (the real CLI, forced with the hidden --use-orm).
 * Prints rows/s, the ratio to the baseline, the longest single transaction and
 * the CLI's peak RSS. Uses OPS_TEST_DATABASE_URL or a throwaway server, always stopped.
 */
import {readFileSync} from 'node:fs'
import {parseArgs} from 'node:util'
import pg from 'pg'

import {createDjangoSchema, dropDjangoSchema, generateTasks} from '../plugins/postgres-taskmanager/test/helpers/django-fixture.js'
import {collect, parseJsonOutput, spawnOps} from '../test/helpers/cli.js'
import {freshDatabase, stopAll} from '../test/helpers/servers.js'

const {values} = parseArgs({options: {rows: {type: 'string', default: '1000000'}, 'batch-size': {type: 'string'}}})
const ROWS = Number(values.rows)

interface Measure {
  method: string
  deleted: number
  seconds: number
  longestTxnMs: number
  peakRssMb?: number
  wallSeconds?: number
  batches?: number
}

async function build(db: pg.Client): Promise<number> {
  const started = Date.now()
  await dropDjangoSchema(db)
  await createDjangoSchema(db)
  await generateTasks(db, ROWS)
  await db.query('VACUUM ANALYZE')
  await db.query('CHECKPOINT')
  const {rows} = await db.query(`SELECT count(*)::int AS n FROM task_manager_taskmanager WHERE status = 'DONE'`)
  process.stderr.write(`  built ${ROWS.toLocaleString('en-US')} rows (${rows[0].n.toLocaleString('en-US')} DONE) in ${((Date.now() - started) / 1000).toFixed(1)}s\n`)
  return rows[0].n
}

async function baseline(db: pg.Client): Promise<Measure> {
  const started = performance.now()
  await db.query('BEGIN')
  await db.query(`DELETE FROM task_manager_taskwatcher_tasks WHERE taskmanager_id IN (SELECT id FROM task_manager_taskmanager WHERE status = 'DONE')`)
  const {rowCount} = await db.query(`DELETE FROM task_manager_taskmanager WHERE status = 'DONE'`)
  await db.query('COMMIT')
  const ms = performance.now() - started
  return {method: 'baseline (1 transaction)', deleted: rowCount ?? 0, seconds: ms / 1000, longestTxnMs: ms}
}

/** Peak resident set of a child, from /proc (VmHWM is the high-water mark). */
function watchRss(pid: number): {stop(): number} {
  let peak = 0
  const read = () => {
    try {
      const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      if (match) peak = Math.max(peak, Number(match[1]))
    } catch {
      // the process has exited
    }
  }
  const timer = setInterval(read, 25)
  return {
    stop() {
      clearInterval(timer)
      return peak / 1024
    },
  }
}

async function viaCli(url: string, method: string, extra: string[]): Promise<Measure> {
  const args = ['taskmanager:clear', '--database-url', url, '--status', 'DONE', '--force', '--json', ...extra]
  if (values['batch-size']) args.push('--batch-size', values['batch-size'])
  const started = performance.now()
  const child = spawnOps(args)
  child.stdin?.end()
  const rss = watchRss(child.pid!)
  const result = await collect(child, 3_600_000)
  const peak = rss.stop()
  const wall = (performance.now() - started) / 1000
  if (result.code !== 0) throw new Error(`${method} failed (${result.code}): ${result.stderr}`)
  const doc = parseJsonOutput<{done: number; steps: {durationMs: number}[]; data: {execution: {longestTransactionMs: number; batches: number}}}>(result)
  return {
    method,
    deleted: doc.done,
    seconds: doc.steps[0].durationMs / 1000,
    longestTxnMs: doc.data.execution.longestTransactionMs,
    peakRssMb: peak,
    wallSeconds: wall,
    batches: doc.data.execution.batches,
  }
}

function report(results: Measure[]): void {
  const base = results[0].deleted / results[0].seconds
  const rows = results.map((r) => {
    const rate = r.deleted / r.seconds
    return [
      r.method,
      r.deleted.toLocaleString('en-US'),
      r.seconds.toFixed(2),
      Math.round(rate).toLocaleString('en-US'),
      `${(rate / base).toFixed(2)}x`,
      `${Math.round(r.longestTxnMs).toLocaleString('en-US')} ms`,
      r.batches === undefined ? '1' : r.batches.toLocaleString('en-US'),
      r.peakRssMb === undefined ? '-' : `${r.peakRssMb.toFixed(0)} MB`,
      r.wallSeconds === undefined ? '-' : r.wallSeconds.toFixed(2),
    ]
  })
  const header = ['method', 'rows deleted', 'seconds', 'rows/s', 'vs baseline', 'longest txn', 'transactions', 'peak RSS (CLI)', 'CLI wall s']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ')
  console.log(`\nDeleting every DONE row of ${ROWS.toLocaleString('en-US')} TaskManager rows (link rows on 1%):\n`)
  console.log(line(header))
  console.log(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const r of rows) console.log(line(r))
  const raw = results[1]
  console.log(
    `\nTargets: raw SQL >= 0.80x baseline: ${(raw.deleted / raw.seconds / base).toFixed(2)}x; ` +
      `no transaction over 1 s: longest ${Math.round(raw.longestTxnMs)} ms (raw), ${Math.round(results[2].longestTxnMs)} ms (TypeORM); ` +
      `peak RSS < 200 MB: ${Math.max(...results.slice(1).map((r) => r.peakRssMb ?? 0)).toFixed(0)} MB`,
  )
}

try {
  const url = await freshDatabase('ops_bench_tm')
  const db = new pg.Client({connectionString: url})
  await db.connect()
  try {
    const results: Measure[] = []
    process.stderr.write('baseline:\n')
    await build(db)
    results.push(await baseline(db))
    process.stderr.write('ops raw SQL:\n')
    await build(db)
    results.push(await viaCli(url, 'ops raw SQL (pg)', ['--use-cursor']))
    process.stderr.write('ops TypeORM:\n')
    await build(db)
    results.push(await viaCli(url, 'ops TypeORM', ['--use-orm']))
    report(results)
  } finally {
    await db.end()
  }
} finally {
  await stopAll()
}
