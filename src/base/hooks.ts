import type {DestructiveResult, Plan} from './destructive.js'

/**
 * Lifecycle hooks the host fires around every destructive command. A plugin
 * declares them in its package.json: "oclif": {"hooks": {"ops:plan": "./dist/hooks/x.js"}}.
 */
export type PlanHookOptions = {
  /** The command id, e.g. "taskmanager:clear". */
  command: string
  plan: Plan
  dryRun: boolean
  force: boolean
  profile?: {name: string; production: boolean}
}

export type ResultHookOptions = {
  command: string
  /** Undefined when the run failed before a plan existed (e.g. no connection). */
  plan?: Plan
  result: DestructiveResult
}
