import {count, type PlanHookOptions} from 'ops-cli/base'

/** Filter keys that say where a command works, not which rows it picks. */
const SCOPE_KEYS = new Set(['table', 'database', 'target'])

/** Filter values that pick everything: no filter, --status ALL, a `*` pattern. */
function matchesEverything(value: unknown): boolean {
  if (value === null || value === undefined || value === false || value === '') return true
  if (typeof value === 'string') return value.toUpperCase() === 'ALL' || value === '*'
  if (Array.isArray(value)) return value.length === 0
  return false
}

/**
 * True when no filter of the plan narrows what it matches, e.g.
 * `taskmanager:clear --status ALL` or `widgets:clear` without --older-than.
 */
export function isUnbounded(filters: Record<string, unknown>): boolean {
  return Object.entries(filters).every(([key, value]) => SCOPE_KEYS.has(key) || matchesEverything(value))
}

/**
 * The team's policy, applied to every destructive command of every plugin:
 * on a production profile nothing unbounded, and never more rows than
 * OPS_WIDGETS_MAX_ROWS when it is set. Undefined means the plan may run.
 */
export function vetoReason(options: PlanHookOptions, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const {plan, profile} = options
  if (profile?.production && isUnbounded(plan.filters)) {
    return (
      `acme policy: ${options.command} would ${plan.verb?.present ?? 'delete'} every one of the ${plan.noun} ` +
      `on production profile "${profile.name}"; add a filter (e.g. --older-than or --status).`
    )
  }
  const max = env.OPS_WIDGETS_MAX_ROWS
  if (max !== undefined && max !== '') {
    const limit = Number(max)
    if (!Number.isInteger(limit) || limit < 0) return `acme policy: OPS_WIDGETS_MAX_ROWS must be a whole number, not "${max}".`
    if (plan.count > limit) {
      return `acme policy: ${options.command} plans ${count(plan.count)} ${plan.noun}, more than OPS_WIDGETS_MAX_ROWS=${count(limit)}.`
    }
  }
  return undefined
}
