import {Flags} from '@oclif/core'
import {DestructiveCommand} from 'ops-cli/base'

import {redisFlags, redisTarget} from '../../connection.js'
import {ResetOperation} from '../../operations/reset.js'
import {outputOf} from '../../operations/taskflow-operation.js'

export default class Reset extends DestructiveCommand {
  static override summary = 'Remove the task-flow keys, and only those.'

  static override description = `Remove the task-flow keys, and only those (reset_redis.py).

As reset_redis.py: without --confirm it only inspects (what it would remove, per key
pattern, and the queue lengths) and exits 0; with --confirm it asks, then removes
(--force: no question, for scripts). A bare --confirm is reset_redis.py's switch;
--confirm NAME is, as in every ops command, the Redis host:port typed in advance to
confirm a production profile. reset_redis.py ran FLUSHALL, wiping every database on
the server; ops removes only task:*, dlq:task:*, tasks:*,
dlq:tasks, metrics:tasks:state:*, worker:heartbeat:* and celery-task-meta-* keys of
the selected database (one SCAN pass sorting keys by pattern, UNLINK in pipelines;
on a Redis Cluster, every master).
--all-keys empties the whole selected database (FLUSHDB ASYNC) and never touches
other database indexes; a Redis Cluster has only database 0, so there it runs
FLUSHDB ASYNC on every master and empties the whole cluster.`

  static override examples = [
    '<%= config.bin %> taskflow:reset',
    '<%= config.bin %> taskflow:reset --confirm',
    '<%= config.bin %> taskflow:reset --force --redis-url redis://localhost:6379/1',
    '<%= config.bin %> taskflow:reset --all-keys --dry-run',
  ]

  static override flags = {
    ...redisFlags,
    'all-keys': Flags.boolean({
      description: 'Empty the whole selected database (FLUSHDB ASYNC), not just the task-flow keys; on a cluster, every master.',
      default: false,
    }),
  }

  async run() {
    const {argv, confirmSwitch} = confirmSwitchOf(this.argv)
    const {flags} = await this.parse(Reset, argv)
    // reset_redis.py inspects unless given --confirm: so does this, as a dry run.
    const inspectOnly = !confirmSwitch && !flags.force && !flags['dry-run'] && flags.confirm === undefined
    const target = redisTarget(flags)
    this.registerSecretsOf(target.resolved.url)
    return this.runDestructive(
      new ResetOperation(target, outputOf(this), {allKeys: flags['all-keys'], inspectOnly}),
      inspectOnly ? {...flags, 'dry-run': true} : flags,
    )
  }
}

/**
 * `reset_redis.py --confirm` is a switch; the base's --confirm takes a
 * production resource name. A --confirm with no value after it (last, or
 * followed by another flag) is reset_redis.py's switch, and is taken out of argv.
 */
export function confirmSwitchOf(argv: string[]): {argv: string[]; confirmSwitch: boolean} {
  const at = argv.findIndex((arg, i) => arg === '--confirm' && (i === argv.length - 1 || argv[i + 1].startsWith('-')))
  if (at === -1) return {argv, confirmSwitch: false}
  return {argv: [...argv.slice(0, at), ...argv.slice(at + 1)], confirmSwitch: true}
}
