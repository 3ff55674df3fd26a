import {Args} from '@oclif/core'
import {count, DestructiveCommand, Progress, UsageError} from 'ops-cli/base'

import {measureStates, StateMeasure} from '../../../census/instant.js'
import {connectRedis, RedisConnection, redisFlags, resolveRedisUrl} from '../../../connection.js'
import {applyChanges, changeTable, CounterChange, counterChanges, signed} from '../../../repair/counters.js'

export default class CountersSync extends DestructiveCommand {
  static override summary = 'Detect and fix drift between the state counters and the task hashes.'

  static override description = `Detect and fix drift between the state counters and the task hashes (the seed's fix_counter_sync).

Scans every task:* hash (one read-only script call per SCAN COUNT 1000 step reads
the states of the keys it returned, about 3 ms of server time each), compares with metrics:tasks:state:*, prints the State / Old / New / Change
table, and applies the differences with INCRBY in one MULTI/EXEC — never SET, so
counter moves made by workers while ops runs are kept.

Exact while workers run: changed task keys are learnt from client tracking on a
connection of ops' own (CLIENT TRACKING BCAST PREFIX task:), which changes no server
setting and ends with the connection; the keys that changed are re-read with the
counters in one script, so states and counters are compared at one instant. A
--dry-run measures the same way. On a cluster each master has its own instant; the
output and --json say whether they count as one, or how far off the figures may be.`

  static override examples = [
    '<%= config.bin %> taskflow:counters:sync --dry-run',
    '<%= config.bin %> taskflow:counters:sync --force',
    '<%= config.bin %> taskflow:counters:sync redis://localhost:6379/1 --force',
    '<%= config.bin %> taskflow:counters:sync --force | grep "Fixed.*discrepancies" && echo "Counter sync issues detected and fixed"',
  ]

  static override flags = {...redisFlags}

  static override args = {
    url: Args.string({description: 'Redis URL, as fix_counter_sync.py took it (the same as --redis-url).', required: false}),
  }

  /** What the command is called in its messages; counters:init words it differently. */
  protected readonly wording = {analyzing: 'Analyzing Redis task state counters...', noun: 'counter discrepancies'}

  async run() {
    const {args, flags} = await this.parse(this.ctor as typeof CountersSync)
    if (args.url && flags['redis-url'] && args.url !== flags['redis-url']) throw new UsageError('Give the Redis URL once: as an argument or with --redis-url, not two different ones.')
    const resolved = resolveRedisUrl(flags['redis-url'] ?? args.url)
    this.registerSecretsOf(resolved.url)
    let connection: RedisConnection | undefined
    let measure: StateMeasure | undefined
    let changes: CounterChange[] = []
    return this.runDestructive(
      {
        connect: async () => {
          connection = await connectRedis(resolved, flags.cluster)
        },
        plan: async () => {
          this.log(this.wording.analyzing)
          const started = Date.now()
          let shown = started
          const onProgress = (scanned: number) => {
            // The plan of a big keyspace takes seconds: a line every 2 s on stderr, none with --json.
            if (flags.json || Date.now() - shown < 2000) return
            shown = Date.now()
            this.logToStderr(`   ... ${count(scanned)} task keys read (${count(Math.round(scanned / ((shown - started) / 1000)))}/s)`)
          }
          measure = await measureStates(connection!, {onProgress})
          const {census} = measure
          changes = counterChanges(census, measure.counters)
          const off = changes.filter((c) => c.change !== 0)
          return {
            store: 'Redis',
            target: connection!.maskedUrl,
            noun: this.wording.noun,
            count: off.length,
            filters: {},
            verb: {present: 'fix', past: 'fixed'},
            details: [
              '',
              'Analysis Results:',
              `   Total tasks found: ${count(census.tasks)}`,
              ...(census.unknownState ? [`   Tasks without a valid state: ${count(census.unknownState)} (see taskflow:defective:delete)`] : []),
              `   ${measure.note}`,
              `   Server settings changed: none (changed keys are learnt from client tracking on ops' own connection, which ends with it)`,
              '',
              'Counter Values:',
              ...changeTable(changes).map((l) => `   ${l}`),
              '',
            ],
            messages: {
              nothing: `All counters match the ${count(census.tasks)} task states: nothing to fix.`,
              dryRun: 'DRY RUN MODE - No counters will be changed',
              success: `Fixed ${off.length} ${this.wording.noun}:\n${off.map((c) => `   - ${c.state}: ${signed(c.change)}`).join('\n')}`,
            },
            data: {tasks: census.tasks, unknownState: census.unknownState, exact: measure.exact, offBy: measure.offBy, note: measure.note, changedDuringScan: measure.changedDuringScan, serverSettingsChanged: measure.serverSettingsChanged, changes},
          }
        },
        steps: () => [
          {
            title: 'Applying counter changes with INCRBY',
            async *run(): AsyncGenerator<Progress> {
              yield {done: await applyChanges(connection!, changes)}
            },
          },
        ],
        disconnect: async () => connection?.close(),
      },
      flags,
    )
  }
}
