import {Flags} from '@oclif/core'

import {assertCanPrompt, confirm} from './confirm.js'
import {ExitCode, OpsError} from './errors.js'
import {count, duration} from './format.js'
import {OpsCommand} from './ops-command.js'
import {renderModeFor, runSteps, Step, StepResult} from './progress.js'

/** What a destructive command intends to do, known before anything is written. */
export interface Plan {
  /** The data store, in the user's words: "PostgreSQL", "Redis". */
  store: string
  /** Where: a masked URL, a table, a key pattern. */
  target: string
  /** What is affected, plural: "TaskManager records", "defective tasks". */
  noun: string
  /** How many of them match now. */
  count: number
  /** The filters in effect, for --json, hooks and the audit trail. */
  filters: Record<string, unknown>
  /** Lines printed under "Found N ..." (e.g. "Status: SCHEDULED"). */
  details?: string[]
  /** Printed in yellow before confirmation; also in --json. */
  warnings?: string[]
  /** Default delete / deleted. */
  verb?: {present: string; past: string}
  /** Overrides of the protocol's standard lines. */
  messages?: Partial<Record<'found' | 'nothing' | 'dryRun' | 'success', string>>
  /** Anything else the command wants in its --json document (e.g. a listing). */
  data?: unknown
}

/** A block printed by --show-summary, with its machine-readable form for --json. */
export interface Summary {
  lines: string[]
  data: unknown
}

/** What a plugin command supplies; the base renders and guards it. */
export interface DestructiveOperation<P extends Plan = Plan> {
  /** Open connections; throw `connectionError(...)` naming host and port on failure. */
  connect(): Promise<void>
  /** Count what matches. Must not write. */
  plan(): Promise<P>
  /** The batched work, run only after confirmation. */
  steps(plan: P): Step[]
  /** For --show-summary. */
  summary?(): Promise<Summary>
  /** Always called, also after errors and interruptions. */
  disconnect(): Promise<void>
}

export type Outcome = 'done' | 'dry-run' | 'nothing-to-do' | 'cancelled' | 'interrupted'

export interface DestructiveResult {
  outcome: Outcome
  store: string
  target: string
  noun: string
  filters: Record<string, unknown>
  planned: number
  done: number
  durationMs: number
  steps: StepResult[]
  warnings: string[]
  data?: unknown
  summary?: unknown
}

export interface DestructiveFlags {
  'dry-run': boolean
  force: boolean
  'show-summary': boolean
}

/**
 * The protocol of SPEC §2, implemented once: connect, plan, dry-run exit,
 * confirm, batched execute, report. Commands of every plugin extend this and
 * call `runDestructive` from `run()`.
 */
export abstract class DestructiveCommand extends OpsCommand {
  static override baseFlags = {
    ...OpsCommand.baseFlags,
    'dry-run': Flags.boolean({description: 'Show what would be done without writing anything.', default: false}),
    force: Flags.boolean({description: 'Skip the confirmation prompt (for scripts and cron).', default: false}),
    'show-summary': Flags.boolean({description: 'Print the status summary, even when nothing matches.', default: false}),
  }

  private interrupted = false

  protected async runDestructive<P extends Plan>(operation: DestructiveOperation<P>, flags: DestructiveFlags): Promise<DestructiveResult> {
    const started = Date.now()
    try {
      await operation.connect()
      const plan = await operation.plan()
      const verb = plan.verb ?? {present: 'delete', past: 'deleted'}
      const result: DestructiveResult = {
        outcome: 'done',
        store: plan.store,
        target: plan.target,
        noun: plan.noun,
        filters: plan.filters,
        planned: plan.count,
        done: 0,
        durationMs: 0,
        steps: [],
        warnings: plan.warnings ?? [],
        ...(plan.data === undefined ? {} : {data: plan.data}),
      }
      const finish = async (outcome: Outcome) => {
        result.outcome = outcome
        if (flags['show-summary'] && operation.summary) {
          const summary = await operation.summary()
          this.log('')
          this.logLines(summary.lines)
          result.summary = summary.data
        }
        result.durationMs = Date.now() - started
        return result
      }

      if (plan.count === 0) {
        this.log(plan.messages?.nothing ?? `No ${plan.noun} found with the specified criteria`)
        return await finish('nothing-to-do')
      }
      this.log(plan.messages?.found ?? `Found ${count(plan.count)} ${plan.noun} to ${verb.present}`)
      this.logLines(plan.details ?? [])
      for (const warning of plan.warnings ?? []) this.warn(warning)

      if (flags['dry-run']) {
        this.log(plan.messages?.dryRun ?? `DRY RUN MODE - No records will be ${verb.past}`)
        return await finish('dry-run')
      }

      if (!flags.force) {
        assertCanPrompt(`${verb.present} ${count(plan.count)} ${plan.noun}`)
        const question = `Are you sure you want to ${verb.present} ${count(plan.count)} ${plan.noun}?`
        const yes = await confirm(question, this.jsonEnabled() ? process.stderr : process.stdout)
        if (!yes) {
          this.log(`Operation cancelled: nothing was ${verb.past}.`)
          return await finish('cancelled')
        }
      }

      result.steps = await this.execute(operation.steps(plan), result)
      result.done = result.steps.reduce((sum, s) => sum + s.done, 0)
      if (this.interrupted) {
        this.logToStderr(`Interrupted: ${verb.past} ${count(result.done)} of ${count(plan.count)} ${plan.noun} in ${duration(Date.now() - started)}.`)
        this.logToStderr('The data is consistent; run the same command again to finish.')
        process.exitCode = ExitCode.Interrupted
        return await finish('interrupted')
      }
      this.log(plan.messages?.success ?? `Successfully ${verb.past} ${count(result.done)} ${plan.noun}`)
      this.log(`Done in ${duration(Date.now() - started)}.`)
      return await finish('done')
    } finally {
      await operation.disconnect()
    }
  }

  /**
   * Runs the steps with SIGINT/SIGTERM turned into an abort: the batch in flight
   * finishes (or rolls back), then the steps stop. A second signal exits at once;
   * the server rolls back the open transaction when the connection drops.
   */
  private async execute(steps: Step[], result: DestructiveResult): Promise<StepResult[]> {
    const controller = new AbortController()
    const onSignal = (signal: NodeJS.Signals) => {
      if (this.interrupted) {
        process.stderr.write(`\nSecond ${signal}: stopping now; the batch in flight is rolled back.\n`)
        process.exit(ExitCode.Interrupted)
      }
      this.interrupted = true
      process.stderr.write(`\n${signal} received: finishing the batch in flight, then stopping (again to stop at once).\n`)
      controller.abort()
    }
    process.on('SIGINT', onSignal)
    process.on('SIGTERM', onSignal)
    try {
      return await runSteps(steps, {mode: renderModeFor({json: this.jsonEnabled()}), signal: controller.signal})
    } catch (error) {
      const partial = (error as {results?: StepResult[]}).results ?? []
      const done = partial.reduce((sum, s) => sum + s.done, 0)
      const message = error instanceof Error ? error.message : String(error)
      throw new OpsError(`${message}\n${count(done)} of ${count(result.planned)} ${result.noun} were done before the failure; the batch that failed was rolled back. Run the same command again to finish.`, {cause: error})
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
  }
}
