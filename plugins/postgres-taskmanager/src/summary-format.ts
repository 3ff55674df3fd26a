import type {ModuleCount, StatusCount, StuckGroup} from './task-manager-table.js'

const RULE = '-'.repeat(50)

/** The seed's status and task-module summary blocks, line for line. */
export function summaryLines(statuses: StatusCount[], modules: ModuleCount[]): string[] {
  const total = statuses.reduce((sum, s) => sum + s.count, 0)
  return [
    'Current TaskManager status summary:',
    RULE,
    ...statuses.map((s) => `${s.status}: ${s.count.toLocaleString('en-US')} records`),
    RULE,
    `Total: ${total.toLocaleString('en-US')} records`,
    '',
    'Task Module Summary:',
    RULE,
    ...modules.map((m) => `${m.taskModule}: ${m.count.toLocaleString('en-US')} records`),
  ]
}

/** check_task_status's diagnosis: stuck groups, biggest first, with sample rows. */
export function stuckLines(hours: number, cutoff: string, groups: StuckGroup[]): string[] {
  const total = groups.reduce((sum, g) => sum + g.count, 0)
  if (groups.length === 0) return [`No SCHEDULED or PENDING tasks with last_run older than ${hours} hours (before ${cutoff}).`]
  const lines = [`Tasks stuck in SCHEDULED or PENDING with last_run older than ${hours} hours (before ${cutoff}):`, RULE]
  for (const g of groups) {
    const statuses = Object.entries(g.byStatus)
      .map(([status, n]) => `${status} ${n.toLocaleString('en-US')}`)
      .join(', ')
    lines.push(`${g.taskModule}.${g.taskName}: ${g.count.toLocaleString('en-US')} records (${statuses}), oldest last_run ${g.oldestLastRun}`)
    for (const s of g.samples) {
      lines.push(`  id ${s.id}  task_id ${s.taskId}  ${s.status}  last_run ${s.lastRun}  attempts ${s.attempts}  arguments ${JSON.stringify(s.arguments)}`)
    }
  }
  lines.push(RULE, `Total: ${total.toLocaleString('en-US')} stuck records in ${groups.length.toLocaleString('en-US')} task(s)`)
  return lines
}
