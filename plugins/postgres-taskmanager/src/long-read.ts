import type pg from 'pg'

/**
 * Runs `work` in one read-only transaction whose statements have no statement_timeout: plans, counts and reports read
 * the whole table (it has no index but the primary key), which on a big one outlasts a role's usual limit
 * (`ALTER ROLE app SET statement_timeout = '30s'`), and a clear must not fail its plan, or its final count after every
 * batch is done, on that. SET LOCAL, never a session SET: behind a pooler in transaction mode (PgBouncer) a session's
 * setting stays on the pooled server connection, and the application's next transaction there would run without its
 * timeout. READ ONLY: nothing a plan does can write, a dry run's included. READ COMMITTED whatever the default: a
 * SERIALIZABLE read of the whole table would take a predicate lock on it, and the application's own serializable
 * transactions that write to it could then fail.
 */
export async function readWithoutTimeout<T>(client: pg.Client, work: () => Promise<T>): Promise<T> {
  await client.query('BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY; SET LOCAL statement_timeout = 0')
  try {
    const result = await work()
    await client.query('COMMIT')
    return result
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {})
    throw error
  }
}
