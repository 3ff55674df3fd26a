import {describeDuration} from 'ops-cli/base'

import {quoteIdent} from './table-name.js'

/** The statuses of celery-task-manager's TaskManager.status (a varchar(20) with Django choices, no CHECK). */
export const STATUSES = ['PENDING', 'DONE', 'CANCELLED', 'REVERSED', 'PAUSED', 'ABORTED', 'ERROR', 'SCHEDULED'] as const
export type Status = (typeof STATUSES)[number]
/** clear_task_manager_queue's extra choice: ALL means no status filter at all (Django-compatible). */
export const STATUS_CHOICES = [...STATUSES, 'ALL'] as const
export type StatusChoice = (typeof STATUS_CHOICES)[number]

/** What `taskmanager:clear` matches, in the user's words. Undefined fields do not filter. */
export interface TaskFilter {
  status?: StatusChoice
  taskModule?: string
  taskName?: string
  /** An age in milliseconds (from --older-than); `createdBefore` is the cutoff computed once on the server. */
  olderThanMs?: number
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
  if (filter.olderThanMs !== undefined) {
    if (!filter.createdBefore) throw new Error('olderThanMs needs its cutoff resolved on the server first')
    predicates.push({column: 'created_at', op: '<', value: filter.createdBefore})
  }
  return predicates
}

/** `status = $1 AND task_module = $2`, numbering parameters from `first`; TRUE when nothing filters. */
export function whereClause(filter: TaskFilter, first = 1, alias?: string): {sql: string; params: (string | Date)[]} {
  const predicates = predicatesOf(filter)
  const prefix = alias ? `${alias}.` : ''
  const sql = predicates.map((p, i) => `${prefix}${quoteIdent(p.column)} ${p.op} $${first + i}`).join(' AND ')
  return {sql: sql || 'TRUE', params: predicates.map((p) => p.value)}
}

/** The lines clear_task_manager_queue prints under "Found N TaskManager records to delete". */
export function describeFilter(filter: TaskFilter): string[] {
  const lines: string[] = []
  if (filter.taskModule !== undefined) lines.push(`Task Module: ${filter.taskModule}`)
  if (filter.taskName !== undefined) lines.push(`Task Name: ${filter.taskName}`)
  if (filter.status !== undefined) lines.push(`Status: ${filter.status}`)
  if (filter.olderThanMs !== undefined) {
    const cutoff = filter.createdBefore ? ` (created before ${filter.createdBefore.toISOString()})` : ''
    lines.push(`Older than: ${describeDuration(filter.olderThanMs)}${cutoff}`)
  }
  return lines
}

/** For --json, hooks and the audit log. */
export function filterRecord(filter: TaskFilter): Record<string, unknown> {
  return {
    status: filter.status ?? null,
    taskModule: filter.taskModule ?? null,
    taskName: filter.taskName ?? null,
    olderThan: filter.olderThanMs === undefined ? null : describeDuration(filter.olderThanMs),
    createdBefore: filter.createdBefore?.toISOString() ?? null,
  }
}
