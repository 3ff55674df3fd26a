import type {DestructiveOperation, Plan, ResolvedUrl, Step} from 'ops-cli/base'

import {connectRedis, RedisConnection} from '../connection.js'

/** Where an operation prints its own lines: the command's stdout, and stderr for progress. */
export interface OperationOutput {
  log(line: string): void
  progress(line: string): void
}

/** Which Redis: the resolved URL, and --cluster / --no-cluster when given. */
export interface RedisTarget {
  resolved: ResolvedUrl
  cluster?: boolean
}

/**
 * A taskflow command as an operation of the base protocol (connect, plan,
 * steps, disconnect): the base renders and guards it, the subclass plans and
 * supplies the steps through `redis`, the connection opened by connect().
 * `Options` is what the command passes on from its flags.
 */
export abstract class TaskFlowOperation<Options extends object = object, P extends Plan = Plan> implements DestructiveOperation<P> {
  private connection?: RedisConnection

  constructor(
    private readonly target: RedisTarget,
    protected readonly output: OperationOutput,
    protected readonly options: Options,
  ) {}

  async connect(): Promise<void> {
    this.connection = await connectRedis(this.target.resolved, this.target.cluster)
    this.connected()
  }

  /** Called once connected, e.g. to print a banner. */
  protected connected(): void {}

  protected get redis(): RedisConnection {
    if (!this.connection) throw new Error('not connected')
    return this.connection
  }

  abstract plan(): Promise<P>

  abstract steps(plan: P): Step[]

  async disconnect(): Promise<void> {
    await this.connection?.close()
  }
}

/** A command's own printing as an operation's output. */
export function outputOf(command: {log(line: string): void; logToStderr(line: string): void}): OperationOutput {
  return {log: (line) => command.log(line), progress: (line) => command.logToStderr(line)}
}
