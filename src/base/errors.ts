import {Errors} from '@oclif/core'

/** The exit codes of every ops command, as the README's table lists them. */
export const ExitCode = {
  Done: 0,
  Failure: 1,
  Usage: 2,
  Interrupted: 130,
} as const
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode]

/**
 * An error meant for the user: its message is printed as is (secrets masked),
 * and the process exits with `exit`.
 */
export class OpsError extends Errors.CLIError {
  constructor(message: string, options: {exit?: ExitCode; suggestions?: string[]; cause?: unknown; code?: string} = {}) {
    super(message, {exit: options.exit ?? ExitCode.Failure, suggestions: options.suggestions, code: options.code})
    // Kept off `cause`: oclif would print a redundant "Caused by" block under the message.
    if (options.cause !== undefined) Object.defineProperty(this, 'origin', {value: options.cause, enumerable: false})
  }
}

/**
 * A runtime failure after which nobody can say whether the batch in flight was applied: its COMMIT was sent and
 * no answer came (the connection broke). The protocol's report says so instead of "rolled back whole".
 */
export class InFlightOutcomeUnknown extends OpsError {
  /** The `code` of its report in `--json` (`error.code`), for a script to tell it from a batch rolled back. */
  static readonly CODE = 'BATCH_IN_FLIGHT_OUTCOME_UNKNOWN'
}

/**
 * A runtime failure between batches (a connection lost while idle, a check after the last batch): no batch was in
 * flight. The protocol's report says so instead of "rolled back whole".
 */
export class NoBatchInFlight extends OpsError {}

/** Bad input: exit 2. */
export class UsageError extends OpsError {
  constructor(message: string, suggestions?: string[]) {
    super(message, {exit: ExitCode.Usage, suggestions})
  }
}

/** The exit code an error should end the process with. */
export function exitCodeOf(error: unknown): number {
  const oclif = (error as {oclif?: {exit?: number}})?.oclif
  if (typeof oclif?.exit === 'number') return oclif.exit
  return ExitCode.Failure
}
