/**
 * npm run bench:taskmanager -- [--rows 1000000] [--runs 3] [--batch-size N] [--methods baseline,raw,orm,conc2,sync]
 *   [--done-first]   (run 2, 4, ... take the methods in reverse order)
 *
 * Builds a TaskManager table of Django's shape (about 62% DONE, watcher link
 * rows on 1%; the DONE rows spread over the key, or with --done-first the oldest
 * 62% of the ids, as in a queue that keeps its finished tasks) once, as a template
 * database, and deletes every DONE row from a
 * fresh copy of it with:
 *   1. the baseline: one transaction, one DELETE for the link rows and one for the tasks;
 *   2. ops' raw-SQL path (taskmanager:clear --use-cursor), the real CLI;
 *   3. ops' TypeORM path (the real CLI, forced with the hidden --use-orm);
 *   4. ops' raw-SQL path with --concurrency 2;
 *   5. ops' raw-SQL path with --synchronous-commit (every batch waits for the disk, instead of one commit at the end).
 * Every ops figure is the whole CLI process, spawn to exit (start, connect,
 * plan, delete, report), as a user waits for it. The server runs with
 * production durability (fsync, synchronous_commit, full_page_writes on): a
 * PostgreSQL of its own from local binaries, or OPS_TEST_DATABASE_URL as it is
 * (its settings are printed). Prints rows/s, the ratio to the baseline, the
 * longest single transaction and the CLI's peak RSS. Every server it starts is stopped.
 */
import {execFileSync} from 'node:child_process'
import {cpus, totalmem} from 'node:os'
import {join} from 'node:path'
import {parseArgs} from 'node:util'

import pg from 'pg'

import {createDjangoSchema, generateTasks} from '../plugins/postgres-taskmanager/test/helpers/django-fixture.js'
import {collect, parseJsonOutput, spawnOps} from '../test/helpers/cli.js'
import {stopAll, which} from '../test/helpers/servers.js'
import {runAsServerUser, serverDirectory, startPostmaster} from '../test/helpers/standby.js'
import {warmUpdateCheck, watchRss} from './process-stats.js'

const {values} = parseArgs({
  options: {
    rows: {type: 'string', default: '1000000'},
    // Three paired runs by default: the targets line takes the median ratio, so one slow spell of the host is one run of three.
    runs: {type: 'string', default: '3'},
    'batch-size': {type: 'string'},
    // A subset for a quick A/B of one method against the baseline, e.g. --methods baseline,raw
    methods: {type: 'string', default: 'baseline,raw,orm,conc2,sync'},
    'done-first': {type: 'boolean', default: false},
  },
})
const METHODS = ['baseline', 'raw', 'orm', 'conc2', 'sync']
const unknown = values.methods.split(',').filter((m) => !METHODS.includes(m))
if (unknown.length) throw new Error(`--methods takes ${METHODS.join(', ')} (comma-separated), not ${unknown.join(', ')}`)
const ROWS = Number(values.rows)
const RUNS = Number(values.runs)
for (const [flag, n] of [
  ['rows', ROWS],
  ['runs', RUNS],
] as const)
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${flag} takes a whole number of at least 1, not ${values[flag]}`)
const TEMPLATE = 'ops_bench_tm_template'
const [BASELINE, RAW, CONC2] = ['baseline, 1 transaction', 'ops raw SQL (pg), 1 worker', 'ops raw SQL, --concurrency 2']

interface Measure {
  method: string
  deleted: number
  seconds: number
  longestTxnMs: number
  peakRssMb?: number
  batches?: number
}

/** A server with production durability: its own from local binaries, or the one of OPS_TEST_DATABASE_URL. */
async function durableServer(): Promise<{adminUrl: string; how: string}> {
  if (process.env.OPS_TEST_DATABASE_URL) return {adminUrl: process.env.OPS_TEST_DATABASE_URL, how: 'OPS_TEST_DATABASE_URL'}
  const initdb = which('initdb')
  if (!initdb) throw new Error('The bench needs PostgreSQL binaries (initdb, postgres) or OPS_TEST_DATABASE_URL.')
  const dir = serverDirectory('ops-bench-pg-')
  const data = join(dir, 'data')
  runAsServerUser(initdb, ['-D', data, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C'])
  // PostgreSQL's defaults, durability included; only the WAL budget is raised so no checkpoint is forced mid-run.
  const server = await startPostmaster(dir, data, {
    fsync: 'on',
    synchronous_commit: 'on',
    full_page_writes: 'on',
    max_wal_size: '4GB',
    checkpoint_timeout: '15min',
  })
  return {adminUrl: server.url('postgres'), how: 'local binaries'}
}

const dbUrl = (adminUrl: string, name: string) => Object.assign(new URL(adminUrl), {pathname: `/${name}`}).toString()

async function withClient<T>(url: string, work: (db: pg.Client) => Promise<T>): Promise<T> {
  const db = new pg.Client({connectionString: url})
  await db.connect()
  try {
    return await work(db)
  } finally {
    await db.end()
  }
}

async function buildTemplate(adminUrl: string): Promise<number> {
  const started = Date.now()
  await withClient(adminUrl, async (admin) => {
    await admin.query(`DROP DATABASE IF EXISTS ${TEMPLATE}`)
    await admin.query(`CREATE DATABASE ${TEMPLATE}`)
  })
  const done = await withClient(dbUrl(adminUrl, TEMPLATE), async (db) => {
    await createDjangoSchema(db)
    await generateTasks(db, ROWS, {doneFirst: values['done-first']})
    await db.query('VACUUM ANALYZE')
    const {rows} = await db.query(`SELECT count(*)::int AS n FROM task_manager_taskmanager WHERE status = 'DONE'`)
    return rows[0].n as number
  })
  process.stderr.write(
    `built ${ROWS.toLocaleString('en-US')} rows (${done.toLocaleString('en-US')} DONE) in ${((Date.now() - started) / 1000).toFixed(1)}s\n`,
  )
  return done
}

/**
 * A fresh copy of the template (a file copy: every method starts from the same pages), checkpointed, and the
 * machine's dirty pages written out: the copy's writeback would otherwise still be running into the timed
 * run, where it slows every fsync (one for the baseline, one per batch for ops).
 */
async function freshCopy(adminUrl: string, name: string): Promise<string> {
  await withClient(adminUrl, async (admin) => {
    await admin.query(`DROP DATABASE IF EXISTS ${name}`)
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${TEMPLATE} STRATEGY FILE_COPY`)
    await admin.query('CHECKPOINT')
  })
  execFileSync('sync')
  return dbUrl(adminUrl, name)
}

async function baseline(url: string): Promise<Measure> {
  return withClient(url, async (db) => {
    const started = performance.now()
    await db.query('BEGIN')
    await db.query(
      `DELETE FROM task_manager_taskwatcher_tasks WHERE taskmanager_id IN (SELECT id FROM task_manager_taskmanager WHERE status = 'DONE')`,
    )
    const {rowCount} = await db.query(`DELETE FROM task_manager_taskmanager WHERE status = 'DONE'`)
    await db.query('COMMIT')
    const ms = performance.now() - started
    return {method: BASELINE, deleted: rowCount ?? 0, seconds: ms / 1000, longestTxnMs: ms}
  })
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
  const seconds = (performance.now() - started) / 1000
  if (result.code !== 0) throw new Error(`${method} failed (${result.code}): ${result.stderr}`)
  const doc = parseJsonOutput<{done: number; data: {execution: {longestTransactionMs: number; batches: number; stillMatching: number}}}>(
    result,
  )
  if (doc.data.execution.stillMatching !== 0) throw new Error(`${method} left ${doc.data.execution.stillMatching} DONE rows`)
  return {
    method,
    deleted: doc.done,
    seconds,
    longestTxnMs: doc.data.execution.longestTransactionMs,
    peakRssMb: peak,
    batches: doc.data.execution.batches,
  }
}

async function settingsOf(adminUrl: string): Promise<string> {
  return withClient(adminUrl, async (db) => {
    const {rows} = await db.query(
      `SELECT name, setting FROM pg_settings
        WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers', 'max_wal_size') ORDER BY name`,
    )
    const {rows: v} = await db.query('SHOW server_version')
    return `PostgreSQL ${v[0].server_version}: ${rows.map((r) => `${r.name}=${r.setting}`).join(', ')}`
  })
}

function report(runs: Measure[][], server: string): void {
  const header = ['method', 'rows deleted', 'seconds', 'rows/s', 'vs baseline', 'longest txn', 'transactions', 'peak RSS']
  const lines: string[][] = []
  for (const [i, results] of runs.entries()) {
    const baseline = results.find((m) => m.method === BASELINE)
    const base = baseline ? baseline.deleted / baseline.seconds : Number.NaN
    for (const r of results) {
      const rate = r.deleted / r.seconds
      lines.push([
        `${runs.length > 1 ? `run ${i + 1}: ` : ''}${r.method}`,
        r.deleted.toLocaleString('en-US'),
        r.seconds.toFixed(2),
        Math.round(rate).toLocaleString('en-US'),
        baseline ? `${(rate / base).toFixed(2)}x` : '-',
        `${Math.round(r.longestTxnMs).toLocaleString('en-US')} ms`,
        r.batches === undefined ? '1' : r.batches.toLocaleString('en-US'),
        r.peakRssMb === undefined ? '-' : `${r.peakRssMb.toFixed(0)} MB`,
      ])
    }
  }
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((r) => r[i].length)))
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`
  console.log(
    `\nDeleting every DONE row of ${ROWS.toLocaleString('en-US')} TaskManager rows (link rows on 1%` +
      `${values['done-first'] ? '; the DONE rows are the oldest ids' : ''}); ops timed as the whole CLI process.`,
  )
  console.log(
    `Machine: ${cpus().length} cores (${cpus()[0]?.model.trim()}), ${Math.round(totalmem() / 2 ** 30)} GiB, ` +
      `Node ${process.versions.node}; ${server}\n`,
  )
  console.log(line(header))
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`)
  for (const r of lines) console.log(line(r))
  /** A method's ratio to the baseline of its run, per run ("-" when --methods left it or the baseline out), and their median. */
  const ratios = (method: string) => {
    const each = runs.map((results) => {
      const [base, r] = [results.find((m) => m.method === BASELINE), results.find((m) => m.method === method)]
      return base && r ? r.deleted / r.seconds / (base.deleted / base.seconds) : undefined
    })
    const known = each.filter((x): x is number => x !== undefined).sort((a, b) => a - b)
    const median = known.length ? (known[(known.length - 1) >> 1] + known[known.length >> 1]) / 2 : undefined
    const listed = each.map((x) => (x === undefined ? '-' : `${x.toFixed(2)}x`)).join(' / ')
    return known.length > 1 && median !== undefined ? `${listed} (median ${median.toFixed(2)}x)` : listed
  }
  const all = runs.flat().filter((r) => r.peakRssMb !== undefined)
  console.log(
    `\nTargets: one worker >= 0.80x: ${ratios(RAW)}; --concurrency 2 >= 1.00x: ${ratios(CONC2)}; ` +
      `no transaction over 1 s: longest ${Math.round(Math.max(...all.map((r) => r.longestTxnMs)))} ms; ` +
      `peak RSS < 200 MB: ${Math.max(...all.map((r) => r.peakRssMb ?? 0)).toFixed(0)} MB`,
  )
}

try {
  const server = await durableServer()
  const settings = await settingsOf(server.adminUrl)
  process.stderr.write(`${settings} (${server.how})\n`)
  await buildTemplate(server.adminUrl)
  await warmUpdateCheck()
  const runs: Measure[][] = []
  for (let run = 1; run <= RUNS; run++) {
    const all: [string, (url: string) => Promise<Measure>][] = [
      ['baseline', baseline],
      ['raw', (url) => viaCli(url, RAW, ['--use-cursor'])],
      ['orm', (url) => viaCli(url, 'ops TypeORM, 1 worker', ['--use-orm'])],
      ['conc2', (url) => viaCli(url, CONC2, ['--use-cursor', '--concurrency', '2'])],
      ['sync', (url) => viaCli(url, 'ops raw SQL, 1 worker, --synchronous-commit', ['--use-cursor', '--synchronous-commit'])],
    ]
    const methods = all.filter(([name]) => values.methods.split(',').includes(name))
    // Odd runs in this order, even runs reversed (ABCD, DCBA), so a load that drifts over the run weighs on every method alike.
    const order = run % 2 === 1 ? methods : [...methods].reverse()
    const results: Measure[] = []
    for (const [name, measure] of order) {
      const url = await freshCopy(server.adminUrl, `ops_bench_tm_${name}`)
      process.stderr.write(`run ${run}: ${name}...\n`)
      results.push(await measure(url))
      await withClient(server.adminUrl, (admin) => admin.query(`DROP DATABASE ops_bench_tm_${name}`))
    }
    runs.push(methods.map(([, measure]) => results[order.findIndex(([, m]) => m === measure)]))
  }
  await withClient(server.adminUrl, (admin) => admin.query(`DROP DATABASE ${TEMPLATE}`))
  report(runs, settings)
} finally {
  await stopAll()
}
