import {Flags} from '@oclif/core'

import {AuditLog} from './audit.js'
import {assertCanPrompt, confirm, confirmByName} from './confirm.js'
import {ExitCode, exitCodeOf, InFlightOutcomeUnknown, NoBatchInFlight, OpsError, UsageError} from './errors.js'
import {count, duration, wrap} from './format.js'
import type {PlanHookOptions} from './hooks.js'
import {OpsCommand} from './ops-command.js'
import {activeProfile} from './profiles.js'
import {renderModeFor, runSteps, Step, StepResult, waitingLine} from './progress.js'

/** Plan lines are wrapped at the terminal's width, and never wider than this (read in a log, too). */
const PLAN_WIDTH = 100

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
  /** Printed as warnings on stderr before confirmation; also in --json. */
  warnings?: string[]
  /**
   * Why this plan must not run unattended (e.g. a measure that is not
   * exact): --force or --confirm NAME then refuses with this message and exit
   * 1, nothing changed; at the prompt the user reads the warnings and decides.
   */
  forceRefusal?: string
  /** Default delete / deleted. */
  verb?: {present: string; past: string}
  /** Overrides of the protocol's standard lines. */
  messages?: Partial<Record<'found' | 'nothing' | 'dryRun' | 'success', string>>
  /** Anything else the command wants in its --json document (e.g. a listing). */
  data?: unknown
  /**
   * What a user must type to confirm on a production profile: the database
   * name, or host:port for Redis. Derived from `target` when omitted.
   */
  resourceName?: string
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
  /**
   * What a terminal shows while plan() runs, with its seconds, e.g. "Counting the matching rows of public.tasks"; for a
   * plan that prints nothing itself (the line is redrawn in place). Without it, nothing is shown.
   */
  planning?: string
  /**
   * Asked on SIGINT/SIGTERM while plan() runs: stop its work on the server (e.g. cancel the count in flight) so that
   * plan() ends soon; the run then ends as interrupted (exit 130), nothing changed. Without it, a signal during the
   * plan ends the process at once.
   */
  cancelPlan?(): Promise<void>
  /**
   * Asked once the run is confirmed (or forced), before the steps: the connections the plan used may have sat idle at
   * the prompt for minutes, and a server's idle_session_timeout, a DBA or a load balancer may have closed them
   * meanwhile. Check them and open again what was closed; the plan stays as it is.
   */
  resume?(): Promise<void>
  /** The batched work, run only after confirmation. */
  steps(plan: P): Step[]
  /**
   * Asked once the steps ran to their end: why the work is not complete (e.g.
   * rows that still match because they kept changing), if it is not. The run
   * then ends with outcome `incomplete`, that message and exit 1.
   */
  unfinished?(plan: P): string | undefined
  /** For --show-summary. */
  summary?(): Promise<Summary>
  /** Always called, also after errors and interruptions. */
  disconnect(): Promise<void>
}

export type Outcome = 'done' | 'dry-run' | 'nothing-to-do' | 'cancelled' | 'interrupted' | 'failed' | 'vetoed' | 'refused' | 'incomplete'

export interface DestructiveResult {
  outcome: Outcome
  store: string
  target: string
  noun: string
  filters: Record<string, unknown>
  planned: number
  done: number
  /** The work's own time: connect, plan and execute, without the time spent at the prompt. */
  durationMs: number
  /** The time the user took to answer the prompt (0 without one). */
  promptMs: number
  steps: StepResult[]
  /** The plan's detail lines, as printed under "Found N …" (how it deletes, what it waits for). */
  details: string[]
  warnings: string[]
  data?: unknown
  summary?: unknown
  error?: string
}

export interface DestructiveFlags {
  'dry-run': boolean
  force: boolean
  'show-summary': boolean
  confirm?: string
}

/** The name to type on a production profile: a URL's database, or host:port for Redis. */
export function resourceNameOf(plan: Plan): string {
  if (plan.resourceName) return plan.resourceName
  try {
    const url = new URL(plan.target)
    if (url.protocol.startsWith('redis')) return `${url.hostname}:${url.port || 6379}`
    return decodeURIComponent(url.pathname.replace(/^\//, '')) || url.hostname
  } catch {
    return plan.target
  }
}

/**
 * The safety protocol (docs/protocol.md), implemented once: connect, plan, hooks, dry-run
 * exit, confirm, batched execute, report, audit. Commands of every plugin
 * extend this and call `runDestructive` from `run()`.
 */
export abstract class DestructiveCommand extends OpsCommand {
  static override baseFlags = {
    ...OpsCommand.baseFlags,
    'dry-run': Flags.boolean({description: 'Show what would be done without writing anything.', default: false}),
    force: Flags.boolean({
      description: 'Skip the confirmation prompt (for scripts and cron). Not enough on a production profile.',
      default: false,
    }),
    'show-summary': Flags.boolean({description: 'Print the status summary, even when nothing matches.', default: false}),
    confirm: Flags.string({
      description: 'On a production profile: the database (or Redis host:port) name, typed in advance for automation.',
      helpValue: 'NAME',
    }),
  }

  private interrupted = false
  /** The last run's result, also when it ended in an error (for a subclass's error JSON). */
  protected lastResult?: DestructiveResult
  /** Time spent waiting for the user's answer, kept out of the work's duration. */
  private promptMs = 0

  protected async runDestructive<P extends Plan>(operation: DestructiveOperation<P>, flags: DestructiveFlags): Promise<DestructiveResult> {
    const started = Date.now()
    let plan: P | undefined
    let result: DestructiveResult | undefined
    try {
      const guessed = this.guessedCommandRefusal()
      if (guessed) {
        result = {...this.newResult(undefined), outcome: 'refused'}
        throw guessed
      }
      await operation.connect()
      const planning = await this.planInterruptibly(operation)
      if ('interrupted' in planning) {
        result = {...this.newResult(undefined), outcome: 'interrupted'}
        this.logToStderr(`Interrupted (${planning.interrupted}) while planning: nothing was changed.`)
        process.exitCode = ExitCode.Interrupted
        return result
      }
      plan = planning.plan
      result = this.newResult(plan)
      const outcome = await this.guardAndExecute(operation, plan, result, flags, () => Date.now() - started - this.promptMs)
      result.outcome = outcome
      if (flags['show-summary'] && operation.summary) {
        const summary = await operation.summary()
        this.log('')
        this.logLines(summary.lines)
        result.summary = summary.data
      }
      if (outcome === 'interrupted') process.exitCode = ExitCode.Interrupted
      return result
    } catch (error) {
      result ??= this.newResult(plan)
      if (!['vetoed', 'refused', 'incomplete'].includes(result.outcome)) result.outcome = 'failed'
      result.error = this.mask(error instanceof Error ? error.message : String(error))
      throw error
    } finally {
      await operation.disconnect()
      if (result) {
        result.durationMs = Date.now() - started - this.promptMs
        result.promptMs = this.promptMs
        this.lastResult = result
        await this.afterRun(plan, result, flags)
      }
    }
  }

  /**
   * plan(), with a terminal saying what it waits for (the count can read a whole table or wait on a lock), and
   * SIGINT/SIGTERM handed to the operation's cancelPlan(): a plan that ends after a signal, by its error or not, is
   * an interruption. A second signal exits at once.
   */
  private async planInterruptibly<P extends Plan>(operation: DestructiveOperation<P>): Promise<{plan: P} | {interrupted: NodeJS.Signals}> {
    const planned = operation.planning ? waitingLine(operation.planning, renderModeFor({json: this.jsonEnabled()})) : () => {}
    let interrupted: NodeJS.Signals | undefined
    const onSignal = (signal: NodeJS.Signals) => {
      if (interrupted) process.exit(ExitCode.Interrupted)
      interrupted = signal
      void operation.cancelPlan?.().catch(() => {})
    }
    if (operation.cancelPlan) {
      process.on('SIGINT', onSignal)
      process.on('SIGTERM', onSignal)
    }
    try {
      const plan = await operation.plan()
      return interrupted ? {interrupted} : {plan}
    } catch (error) {
      if (interrupted) return {interrupted}
      throw error
    } finally {
      planned()
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
  }

  /** "ops taskmanager:claer --force" must never become a clear because a "Did you mean" prompt defaulted to yes. */
  private guessedCommandRefusal(): UsageError | undefined {
    const typed = (globalThis as Record<symbol, unknown>)[Symbol.for('ops.unknownCommand')]
    if (typeof typed !== 'string') return undefined
    return new UsageError(
      `"${typed}" is not an ${this.config.bin} command, and ${this.id} changes data: ` +
        `${this.config.bin} does not run a destructive command it guessed. Type \`${this.config.bin} ${this.id}\` yourself.`,
    )
  }

  private newResult(plan: Plan | undefined): DestructiveResult {
    return {
      outcome: 'done',
      store: plan?.store ?? '',
      target: plan?.target ?? '',
      noun: plan?.noun ?? '',
      filters: plan?.filters ?? {},
      planned: plan?.count ?? 0,
      done: 0,
      durationMs: 0,
      promptMs: 0,
      steps: [],
      details: plan?.details ?? [],
      warnings: plan?.warnings ?? [],
      ...(plan?.data === undefined ? {} : {data: plan.data}),
    }
  }

  private async guardAndExecute<P extends Plan>(
    operation: DestructiveOperation<P>,
    plan: P,
    result: DestructiveResult,
    flags: DestructiveFlags,
    workMs: () => number,
  ): Promise<Outcome> {
    const verb = plan.verb ?? {present: 'delete', past: 'deleted'}
    if (plan.count === 0) {
      this.log(plan.messages?.nothing ?? `No ${plan.noun} found with the specified criteria`)
      return 'nothing-to-do'
    }
    this.logPlanLines([plan.messages?.found ?? `Found ${count(plan.count)} ${plan.noun} to ${verb.present}`, ...(plan.details ?? [])])
    for (const warning of plan.warnings ?? []) this.warn(warning)

    await this.firePlanHook(plan, flags, result)

    if (flags['dry-run']) {
      this.log(plan.messages?.dryRun ?? `DRY RUN MODE - No records will be ${verb.past}`)
      return 'dry-run'
    }
    // Unattended: --force, or a --confirm NAME given up front (which is how a script passes a production profile's check).
    if (plan.forceRefusal && (flags.force || flags.confirm !== undefined)) {
      result.outcome = 'refused'
      throw new Error(plan.forceRefusal)
    }
    if (!(await this.confirmed(plan, flags, verb.present, result))) {
      this.log(`Operation cancelled: nothing was ${verb.past}.`)
      return 'cancelled'
    }

    await operation.resume?.()
    result.steps = await this.execute(operation.steps(plan), result, verb.past)
    result.done = result.steps.reduce((sum, s) => sum + s.done, 0)
    if (this.interrupted) {
      this.logToStderr(`Interrupted: ${verb.past} ${count(result.done)} of ${count(plan.count)} ${plan.noun} in ${duration(workMs())}.`)
      this.logToStderr('The data is consistent; run the same command again to finish.')
      return 'interrupted'
    }
    const unfinished = operation.unfinished?.(plan)
    if (unfinished) {
      this.log(
        plan.messages?.success ?? `${verb.past[0].toUpperCase()}${verb.past.slice(1)} ${count(result.done)} ${plan.noun}, not all of them.`,
      )
      this.log(`Done in ${duration(workMs())}.`)
      result.outcome = 'incomplete'
      throw new OpsError(unfinished)
    }
    this.log(plan.messages?.success ?? `Successfully ${verb.past} ${count(result.done)} ${plan.noun}`)
    this.log(`Done in ${duration(workMs())}.`)
    return 'done'
  }

  /**
   * Plan lines fit the terminal, at most PLAN_WIDTH columns: a long line is broken at a
   * space, its continuation indented under it, never left to the terminal to cut anywhere.
   */
  private logPlanLines(lines: string[]): void {
    const width = Math.min(PLAN_WIDTH, process.stdout.columns || PLAN_WIDTH)
    for (const line of lines) {
      const indent = `${/^\s*/.exec(line)![0]}  `
      this.logLines(wrap(line, width, indent))
    }
  }

  /**
   * Plain profiles: --force or "yes" at the prompt. Production profiles: the
   * resource name, typed at the prompt or passed as --confirm (as Heroku's pg:reset).
   */
  private async confirmed(plan: Plan, flags: DestructiveFlags, verb: string, result: DestructiveResult): Promise<boolean> {
    try {
      return await this.askOrRefuse(plan, flags, verb)
    } catch (error) {
      // Nobody could answer (no TTY) or the typed name was wrong: refused, not failed.
      if (error instanceof UsageError) result.outcome = 'refused'
      throw error
    }
  }

  /** Waits for the user's answer, counting the wait as prompt time, not work. */
  private async ask(prompt: Promise<boolean>): Promise<boolean> {
    const asked = Date.now()
    try {
      return await prompt
    } finally {
      this.promptMs += Date.now() - asked
    }
  }

  private async askOrRefuse(plan: Plan, flags: DestructiveFlags, verb: string): Promise<boolean> {
    const profile = activeProfile()
    const what = `${verb} ${count(plan.count)} ${plan.noun}`
    const output = this.jsonEnabled() ? process.stderr : process.stdout
    if (profile?.production) {
      const name = resourceNameOf(plan)
      if (flags.confirm !== undefined) {
        if (flags.confirm === name) return true
        throw new UsageError(
          `--confirm "${flags.confirm}" does not match "${name}", the target of production profile "${profile.name}". Nothing was changed.`,
        )
      }
      assertCanPrompt(`${what} on production profile "${profile.name}"`, process.stdin, [`Re-run with --confirm ${name}`])
      output.write(`WARNING: Destructive action on production profile "${profile.name}" (${plan.target}).\n`)
      return this.ask(confirmByName(`To proceed, type "${name}" or re-run this command with --confirm ${name}`, name, output))
    }
    if (flags.force) return true
    assertCanPrompt(what)
    return this.ask(confirm(`Are you sure you want to ${what}?`, output))
  }

  private async firePlanHook(plan: Plan, flags: DestructiveFlags, result: DestructiveResult): Promise<void> {
    const profile = activeProfile()
    const options: PlanHookOptions = {
      command: this.id ?? this.constructor.name,
      plan,
      dryRun: flags['dry-run'],
      force: flags.force,
      ...(profile ? {profile: {name: profile.name, production: profile.production}} : {}),
    }
    try {
      await this.config.runHook('ops:plan', options, undefined, false)
    } catch (error) {
      result.outcome = 'vetoed'
      const reason = error instanceof Error ? error.message : String(error)
      throw new OpsError(`Vetoed by a plugin hook: ${reason}\nNothing was changed.`, {
        exit: exitCodeOf(error) === ExitCode.Usage ? ExitCode.Usage : ExitCode.Failure,
      })
    }
  }

  /** ops:result hooks (failures are warnings) and the audit log line. */
  private async afterRun(plan: Plan | undefined, result: DestructiveResult, flags: DestructiveFlags): Promise<void> {
    const command = this.id ?? this.constructor.name
    const hooks = await this.config.runHook('ops:result', {command, plan, result})
    for (const failure of hooks.failures) this.warn(`ops:result hook of ${failure.plugin.name} failed: ${failure.error.message}`)
    if (flags['dry-run'] && result.outcome !== 'failed') return
    try {
      new AuditLog(this.config.dataDir).append({
        command,
        connection: result.target || null,
        profile: activeProfile()?.name ?? null,
        filters: result.filters,
        planned: plan ? result.planned : null,
        done: result.done,
        durationMs: result.durationMs,
        outcome: result.outcome === 'dry-run' ? 'failed' : result.outcome,
        ...(result.promptMs > 0 ? {promptMs: result.promptMs} : {}),
        ...(result.error ? {error: result.error} : {}),
      })
    } catch (error) {
      this.warn(`Could not write the audit log: ${(error as Error).message}`)
    }
  }

  /**
   * Runs the steps with SIGINT/SIGTERM turned into an abort: the batch in flight
   * finishes (or rolls back), then the steps stop. A second signal exits at once;
   * the server rolls back the open transaction when the connection drops.
   */
  private async execute(steps: Step[], result: DestructiveResult, past: string): Promise<StepResult[]> {
    const controller = new AbortController()
    const onSignal = (signal: NodeJS.Signals) => {
      if (this.interrupted) {
        // Exiting closes the connection: the server rolls the open transaction back, unless its COMMIT had already gone out.
        process.stderr.write(
          `\nSecond ${signal}: stopping now; the server rolls back the batch in flight ` +
            '(one whose COMMIT was already sent may have committed).\n',
        )
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
      // Every committed batch is final and a batch in flight rolls back whole: what was done is exactly what committed,
      // unless the batch's COMMIT got no answer (InFlightOutcomeUnknown). A failure once every planned one is done (say,
      // in a final check) rolled nothing of them back.
      const unknown = error instanceof InFlightOutcomeUnknown
      const between = error instanceof NoBatchInFlight
      const inFlight = unknown
        ? 'the batch in flight may have been too (its COMMIT got no answer)'
        : between
          ? 'no batch was in flight'
          : 'the batch in flight was rolled back whole'
      const nothingDone = unknown
        ? 'but perhaps the batch in flight: its COMMIT got no answer'
        : between
          ? 'no batch was in flight'
          : 'a batch in flight was rolled back whole'
      const what =
        done === 0
          ? `Nothing was ${past} before the failure (${nothingDone}). Run the same command again once its cause is fixed.`
          : done >= result.planned
            ? `All ${count(done)} ${result.noun} planned were ${past} before the failure. ` +
              'Run the same command again to make sure none is left.'
            : `${count(done)} of ${count(result.planned)} ${result.noun} were ${past} before the failure; ` +
              `${inFlight}. Run the same command again to finish.`
      throw new OpsError(`${message}\n${what}`, {cause: error, code: unknown ? InFlightOutcomeUnknown.CODE : undefined})
    } finally {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    }
  }
}
