/**
 * The widgets table every widgets test builds (this plugin's, and the ops host's protocol,
 * plugin and profile tests): one schema, rows described in the test's own words.
 */
import type pg from 'pg'

export interface WidgetRow {
  /** What a test filters on, e.g. "keep" / "drop". */
  kind?: string
  name?: string
  payload?: string
  /** How old the row is; created_at is now() minus this many days. */
  ageDays?: number
}

/** Drops and creates `widgets`, then inserts `count` rows shaped by `row(i)` (i from 1), in id order. */
export async function createWidgets(db: pg.Client, count: number, row: (i: number) => WidgetRow = () => ({})): Promise<void> {
  await db.query('DROP TABLE IF EXISTS widgets')
  await db.query(`CREATE TABLE widgets (
    id bigserial PRIMARY KEY,
    kind text NOT NULL DEFAULT 'drop',
    name text,
    payload text,
    created_at timestamptz NOT NULL DEFAULT now()
  )`)
  const rows = Array.from({length: count}, (_, i) => {
    const {kind = 'drop', name = `w${i + 1}`, payload = null, ageDays = 0} = row(i + 1)
    return {i: i + 1, kind, name, payload, age_days: ageDays}
  })
  await db.query(
    `INSERT INTO widgets (kind, name, payload, created_at)
     SELECT r.kind, r.name, r.payload, now() - make_interval(secs => r.age_days * 86400)
       FROM jsonb_to_recordset($1::jsonb) AS r(i int, kind text, name text, payload text, age_days float8)
      ORDER BY r.i`,
    [JSON.stringify(rows)],
  )
}
