import {count, plural, wrap} from 'ops-cli/base'

import type {StuckGroup} from './task-manager-table.js'

export interface StuckReportInput {
  hours: number
  /** ISO-8601, computed by the server. */
  cutoff: string
  /** Every stuck group, biggest first. */
  groups: StuckGroup[]
  /** How many groups to show; the rest are summed up in one "+N more" line. */
  limit: number
  /** The screen's width: group lines wrap at it, sample lines are cut at it (whole rows are in --json). */
  width: number
}

const RULE = '-'.repeat(50)

/** "2026-12-03T05:12:33.123Z" -> "2026-12-03 05:12:33 UTC". */
const when = (iso: string) => `${iso.slice(0, 19).replace('T', ' ')} UTC`

/** One line per group, cut to `width` with an ellipsis. */
const fit = (line: string, width: number) => (line.length <= width ? line : `${line.slice(0, width - 1)}…`)

/**
 * What check_task_status diagnoses, readable on one screen: the biggest `limit` groups
 * (module.name, records per status, the oldest last_run) with their sample rows, then
 * one line for the groups left out and the total.
 */
export function stuckReport({hours, cutoff, groups, limit, width}: StuckReportInput): string[] {
  const age = `last_run older than ${plural(hours, 'hour')} (before ${when(cutoff)})`
  if (groups.length === 0) return [`No SCHEDULED or PENDING tasks with ${age}.`]
  const total = groups.reduce((sum, g) => sum + g.count, 0)
  const lines = [...wrap(`Tasks stuck in SCHEDULED or PENDING with ${age}:`, width, '  '), RULE]
  const shown = groups.slice(0, limit)
  for (const g of shown) {
    const statuses = Object.entries(g.byStatus)
      .map(([status, n]) => `${status} ${count(n)}`)
      .join(', ')
    lines.push(
      ...wrap(
        `${g.taskModule}.${g.taskName}: ${plural(g.count, 'record')} (${statuses}), oldest last_run ${when(g.oldestLastRun)}`,
        width,
        '    ',
      ),
    )
    for (const s of g.samples) {
      lines.push(
        fit(
          `  id ${s.id}  ${s.status}  last_run ${when(s.lastRun)}  attempts ${s.attempts}  ` +
            `task_id ${s.taskId}  arguments ${JSON.stringify(s.arguments)}`,
          width,
        ),
      )
    }
  }
  const rest = groups.slice(limit)
  if (rest.length > 0) {
    const restCount = rest.reduce((sum, g) => sum + g.count, 0)
    lines.push(
      `+${plural(rest.length, 'more task', 'more tasks')} (${plural(restCount, 'record')}): --limit ${groups.length} to see them all`,
    )
  }
  lines.push(RULE, `Total: ${plural(total, 'stuck record')} in ${plural(groups.length, 'task')} (module and name)`)
  return lines
}
