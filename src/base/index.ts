/**
 * The public API of ops for plugins: extend `DestructiveCommand` (or
 * `OpsCommand` for read-only commands) and supply an operation.
 */
export {assertCanPrompt, confirm, confirmByName} from './confirm.js'
export {connectionError, endpointOf, maskSecrets, maskUrl, resolveUrl, secretsOf} from './connection.js'
export type {ResolvedUrl, SettingSource} from './connection.js'
export {DestructiveCommand} from './destructive.js'
export type {DestructiveFlags, DestructiveOperation, DestructiveResult, Outcome, Plan, Summary} from './destructive.js'
export {ExitCode, exitCodeOf, InFlightOutcomeUnknown, NoBatchInFlight, OpsError, UsageError} from './errors.js'
export {describeDuration, durationFlag, parseDuration} from './duration.js'
export {choiceFlag, nearestFlag} from './flags.js'
export {count, duration, plural, table, wrap} from './format.js'
export {OpsCommand} from './ops-command.js'
export {describeBatch, RateMeter, renderModeFor, runSteps} from './progress.js'
export type {Progress, RenderMode, Step, StepResult} from './progress.js'
export {AuditLog} from './audit.js'
export type {AuditEntry} from './audit.js'
export {resourceNameOf} from './destructive.js'
export type {PlanHookOptions, ResultHookOptions} from './hooks.js'
export {activeProfile, ProfileStore} from './profiles.js'
export type {Profile} from './profiles.js'
