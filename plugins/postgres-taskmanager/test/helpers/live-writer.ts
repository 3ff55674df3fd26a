/**
 * The application, as a separate process: while taskmanager:clear runs, it
 * keeps updating TaskManager rows in short transactions, as Celery workers do.
 *
 *   touch URL STATUS   bump attempts/last_run/updated_at of random rows of STATUS (they still match)
 *   move  URL FROM TO  set random FROM rows to TO (they stop matching); prints each moved id
 *
 * Prints "ready" once connected, "touched N" / "moved ID" lines as it goes,
 * and stops at SIGTERM after its transaction in flight.
 */
import pg from 'pg'

const [mode, url, from, to] = process.argv.slice(2)
const db = new pg.Client({connectionString: url, application_name: `live-writer ${mode}`})
await db.connect()
const {rows} = await db.query(`SELECT min(id)::int AS lo, max(id)::int AS hi FROM task_manager_taskmanager`)
const {lo, hi} = rows[0] as {lo: number; hi: number}
let stopping = false
process.on('SIGTERM', () => (stopping = true))
const pick = (n: number) => Array.from({length: n}, () => lo + Math.floor(Math.random() * (hi - lo + 1)))
console.log('ready')
let touched = 0
while (!stopping) {
  await db.query('BEGIN')
  if (mode === 'touch') {
    const result = await db.query(
      `UPDATE task_manager_taskmanager SET attempts = attempts + 1, last_run = clock_timestamp(), updated_at = clock_timestamp()
        WHERE id = ANY($1::bigint[]) AND status = $2`,
      [pick(25), from],
    )
    touched += result.rowCount ?? 0
    // Hold the row locks a moment, as a worker's transaction does.
    await db.query('SELECT pg_sleep(0.002)')
    await db.query('COMMIT')
    if (result.rowCount) console.log(`touched ${touched}`)
  } else {
    const result = await db.query(
      `UPDATE task_manager_taskmanager SET status = $3, status_message = 'moved by the application', updated_at = clock_timestamp()
        WHERE id = ANY($1::bigint[]) AND status = $2 RETURNING id::text`,
      [pick(3), from, to],
    )
    await db.query('COMMIT')
    for (const row of result.rows) console.log(`moved ${row.id}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}
await db.end()
