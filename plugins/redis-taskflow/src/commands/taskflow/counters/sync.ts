import {Args, Flags} from '@oclif/core'
import {DestructiveCommand, UsageError} from 'ops-cli/base'

import {redisFlags, redisTarget} from '../../../connection.js'
import {CountersSyncOperation, CountersWording} from '../../../operations/counters-sync.js'
import {outputOf} from '../../../operations/taskflow-operation.js'

export default class CountersSync extends DestructiveCommand {
  static override summary = 'Detect and fix drift between the state counters and the task hashes.'

  static override description = `Detect and fix drift between the state counters and the task hashes (fix_counter_sync.py).

Scans every task:* hash (one read-only script call per SCAN COUNT 1000 step reads
the states of the keys it returned, about 3 ms of server time each), compares with
metrics:tasks:state:*, prints the State / Old / New / Change table, and applies the
differences with INCRBY in one MULTI/EXEC (on a cluster, one INCRBY per counter) —
never SET, so counter moves made by workers while ops runs are kept.

Exact while workers run: changed task keys are learnt from client tracking on a
connection of ops' own (CLIENT TRACKING BCAST PREFIX task:), which changes no server
setting and ends with the connection; the keys that changed are re-read with the
counters in one script, so states and counters are compared at one instant. The
script also sets and deletes a key of ops' own (~ops:census-fence:<uuid>:...) in the
same atomic step: its report tells the stream where the instant's moment ends. A
--dry-run writes nothing at all, not even that key: it measures the same way but
places the moment more coarsely, so under heavy traffic it may take more rounds or
say it is not exact. On a cluster each master has its own instant, and instants are
repeated until three agree; the output and --json say whether the figures are exact
or how far off they may be.`

  static override examples = [
    '<%= config.bin %> taskflow:counters:sync --dry-run',
    '<%= config.bin %> taskflow:counters:sync --force',
    '<%= config.bin %> taskflow:counters:sync --force --allow-inexact',
    '<%= config.bin %> taskflow:counters:sync redis://localhost:6379/1 --force',
    '<%= config.bin %> taskflow:counters:sync --force | grep "Fixed.*discrepancies" && echo "Counter sync issues detected and fixed"',
  ]

  static override flags = {
    ...redisFlags,
    'allow-inexact': Flags.boolean({
      description:
        'With --force, apply the changes even when the measure is not exact (the output says how far off each figure may be); ' +
        'without it --force refuses such a measure, exit 1.',
      default: false,
    }),
  }

  static override args = {
    url: Args.string({description: 'Redis URL, as fix_counter_sync.py took it (the same as --redis-url).', required: false}),
  }

  /** What the command is called in its messages; counters:init words it differently. */
  protected readonly wording: CountersWording = {analyzing: 'Analyzing Redis task state counters...', noun: 'counter discrepancies'}

  async run() {
    const {args, flags} = await this.parse(this.ctor as typeof CountersSync)
    if (args.url && flags['redis-url'] && args.url !== flags['redis-url'])
      throw new UsageError('Give the Redis URL once: as an argument or with --redis-url, not two different ones.')
    const target = redisTarget({...flags, 'redis-url': flags['redis-url'] ?? args.url})
    this.registerSecretsOf(target.resolved.url)
    return this.runDestructive(
      new CountersSyncOperation(target, outputOf(this), {
        wording: this.wording,
        quiet: Boolean(flags.json),
        dryRun: flags['dry-run'],
        allowInexact: flags['allow-inexact'],
      }),
      flags,
    )
  }
}
