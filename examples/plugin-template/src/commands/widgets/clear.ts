import {Flags} from '@oclif/core'
import {
  connectionError,
  describeDuration,
  DestructiveCommand,
  durationFlag,
  maskUrl,
  type Plan,
  type Progress,
  resolveUrl,
} from 'ops-cli/base'
import pg from 'pg'

import {type WidgetFilter, WidgetTable} from '../../widget-table.js'

/** The plan of this command: the shared fields plus the fixed filter the batches use. */
interface ClearPlan extends Plan {
  filter: WidgetFilter
}

/**
 * The whole command: flags, then an operation for the host's protocol. Dry-run,
 * --force, confirmation, --json, progress, signals, exit codes, hooks and the
 * audit log all come from DestructiveCommand.
 */
export default class WidgetsClear extends DestructiveCommand {
  static override summary = 'Delete rows of a table, optionally only those older than an age, in short batches.'
  static override description = [
    'Counts the matching rows, asks for confirmation (or takes --force), then deletes them in batches walked by primary key, ' +
      'each batch its own short transaction. Rows inserted after the count are never touched.',
    'Interrupt with Ctrl-C: the batch in flight finishes, and the same command finishes the job later.',
  ].join('\n\n')

  static override examples = [
    '<%= config.bin %> <%= command.id %> --database-url postgres://ops@db:5432/app --table widgets --older-than 30d --dry-run',
    '<%= config.bin %> <%= command.id %> --table app.widgets --older-than 7d --force --json',
  ]

  static override flags = {
    'database-url': Flags.string({description: "PostgreSQL URL [env: DATABASE_URL, or the profile's].", helpValue: 'URL'}),
    table: Flags.string({
      description: 'The table to clear: NAME or SCHEMA.NAME, with a numeric primary key "id".',
      required: true,
      helpValue: 'TABLE',
    }),
    'older-than': durationFlag({
      description: 'Only rows whose timestamp column is older than this age: 90m, 12h, 7d, 2w.',
      helpValue: 'AGE',
    }),
    'created-column': Flags.string({description: 'The timestamp column --older-than reads.', default: 'created_at', helpValue: 'COLUMN'}),
    'batch-size': Flags.integer({description: 'Rows per batch.', default: 1000, min: 1, max: 50_000}),
  }

  async run() {
    const {flags} = await this.parse(WidgetsClear)
    const {url} = resolveUrl({flag: flags['database-url'], env: 'DATABASE_URL', fallback: 'postgres://localhost:5432/postgres'})
    this.registerSecretsOf(url)
    const client = new pg.Client({connectionString: url})
    const table = new WidgetTable(client, flags.table, flags['created-column'])
    // Milliseconds; the cutoff is fixed once so the plan and the batches agree.
    const olderThanMs = flags['older-than']
    const createdBefore = olderThanMs === undefined ? undefined : new Date(Date.now() - olderThanMs)

    return this.runDestructive<ClearPlan>(
      {
        async connect() {
          try {
            await client.connect()
          } catch (error) {
            throw connectionError('PostgreSQL', url, 5432, error)
          }
        },
        async plan() {
          await table.assertExists()
          const {count, maxId} = await table.countMatching({createdBefore})
          return {
            store: 'PostgreSQL',
            target: maskUrl(url),
            noun: `rows of ${flags.table}`,
            count,
            filters: {table: flags.table, olderThanMs: olderThanMs ?? null, createdBefore: createdBefore?.toISOString() ?? null},
            details: [
              `Table: ${flags.table}`,
              createdBefore
                ? `Older than: ${describeDuration(olderThanMs!)} (${flags['created-column']} before ${createdBefore.toISOString()})`
                : 'Filter: none (every row)',
            ],
            filter: {createdBefore, upToId: maxId ?? '0'},
          }
        },
        steps: (plan) => [
          {
            title: `Deleting rows of ${flags.table}`,
            total: plan.count,
            async *run(signal): AsyncGenerator<Progress> {
              let done = 0
              let afterId: string | null = null
              let batches = 0
              while (!signal.aborted) {
                const started = performance.now()
                const batch = await table.deleteBatch(plan.filter, afterId, flags['batch-size'])
                if (batch.deleted === 0) break
                done += batch.deleted
                afterId = batch.lastId
                yield {done, batch: {number: ++batches, size: batch.deleted, ms: performance.now() - started}, note: `last id ${afterId}`}
              }
            },
          },
        ],
        async summary() {
          const s = await table.summary()
          const range = s.oldest && s.newest ? `, oldest ${s.oldest.toISOString()}, newest ${s.newest.toISOString()}` : ''
          return {lines: [`Rows left in ${flags.table}: ${s.rows}${range}`], data: s}
        },
        async disconnect() {
          await client.end().catch(() => {})
        },
      },
      flags,
    )
  }
}
