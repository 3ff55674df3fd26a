import type {Hooks} from '@oclif/core/hooks'
import type {PlanHookOptions, ResultHookOptions} from 'ops-cli/base'

/**
 * The custom events the ops host fires around every destructive command, for
 * `Hook<'ops:plan', OpsHooks>`: typed options without augmenting @oclif/core.
 */
export interface OpsHooks extends Hooks {
  'ops:plan': {options: PlanHookOptions; return: void}
  'ops:result': {options: ResultHookOptions; return: void}
}
