import {UsageError} from 'ops-cli/base'

/** The statuses of celery-task-manager's TaskManager.status (a varchar(20) with Django choices, no CHECK). */
export const STATUSES = ['PENDING', 'DONE', 'CANCELLED', 'REVERSED', 'PAUSED', 'ABORTED', 'ERROR', 'SCHEDULED'] as const
export type Status = (typeof STATUSES)[number]
/** The seed's extra choice: ALL means no status filter at all (Django-compatible). */
export const STATUS_CHOICES = [...STATUSES, 'ALL'] as const
export type StatusChoice = (typeof STATUS_CHOICES)[number]

/** What `taskmanager:clear` matches, in the user's words. Undefined fields do not filter. */
export interface TaskFilter {
  status?: StatusChoice
  taskModule?: string
  taskName?: string
  /** As typed, e.g. "30d"; `createdBefore` is the cutoff computed once on the server. */
  olderThan?: string
  createdBefore?: Date
}

/** One `column op value` condition; every value is a bind parameter, never SQL text. */
export interface Predicate {
  column: 'status' | 'task_module' | 'task_name' | 'created_at'
  op: '=' | '<'
  value: string | Date
}

export function predicatesOf(filter: TaskFilter): Predicate[] {
  const predicates: Predicate[] = []
  if (filter.status && filter.status !== 'ALL') predicates.push({column: 'status', op: '=', value: filter.status})
  if (filter.taskModule !== undefined) predicates.push({column: 'task_module', op: '=', value: filter.taskModule})
  if (filter.taskName !== undefined) predicates.push({column: 'task_name', op: '=', value: filter.taskName})
  if (filter.olderThan !== undefined) {
    if (!filter.createdBefore) throw new Error('olderThan needs its cutoff resolved on the server first')
    predicates.push({column: 'created_at', op: '<', value: filter.createdBefore})
  }
  return predicates
}

/** `status = $1 AND task_module = $2`, numbering parameters from `first`; TRUE when nothing filters. */
export function whereClause(filter: TaskFilter, first = 1, alias?: string): {sql: string; params: (string | Date)[]} {
  const predicates = predicatesOf(filter)
  const prefix = alias ? `${alias}.` : ''
  const sql = predicates.map((p, i) => `${prefix}"${p.column}" ${p.op} $${first + i}`).join(' AND ')
  return {sql: sql || 'TRUE', params: predicates.map((p) => p.value)}
}

const UNITS: Record<string, {seconds: number; interval: string}> = {
  s: {seconds: 1, interval: 'seconds'},
  m: {seconds: 60, interval: 'minutes'},
  h: {seconds: 3600, interval: 'hours'},
  d: {seconds: 86_400, interval: 'days'},
  w: {seconds: 604_800, interval: 'weeks'},
}

/** "30d" -> "30 days" (a PostgreSQL interval); s, m, h, d, w are accepted. */
export function parseAge(text: string): string {
  const match = /^\s*(\d+)\s*([smhdw])\s*$/i.exec(text)
  if (!match) throw new UsageError(`Invalid age "${text}": use a number and a unit, e.g. 30d, 12h, 90m, 2w.`)
  return `${Number(match[1])} ${UNITS[match[2].toLowerCase()].interval}`
}

/** The lines the seed prints under "Found N TaskManager records to delete". */
export function describeFilter(filter: TaskFilter): string[] {
  const lines: string[] = []
  if (filter.taskModule !== undefined) lines.push(`Task Module: ${filter.taskModule}`)
  if (filter.taskName !== undefined) lines.push(`Task Name: ${filter.taskName}`)
  if (filter.status !== undefined) lines.push(`Status: ${filter.status}`)
  if (filter.olderThan !== undefined) {
    const cutoff = filter.createdBefore ? ` (created before ${filter.createdBefore.toISOString()})` : ''
    lines.push(`Older than: ${filter.olderThan}${cutoff}`)
  }
  return lines
}

/** For --json, hooks and the audit log. */
export function filterRecord(filter: TaskFilter): Record<string, unknown> {
  return {
    status: filter.status ?? null,
    taskModule: filter.taskModule ?? null,
    taskName: filter.taskName ?? null,
    olderThan: filter.olderThan ?? null,
    createdBefore: filter.createdBefore?.toISOString() ?? null,
  }
}
