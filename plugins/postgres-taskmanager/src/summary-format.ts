import {count} from 'ops-cli/base'

import type {ModuleCount, StatusCount} from './task-manager-table.js'

const RULE = '-'.repeat(50)

/** clear_task_manager_queue's status and task-module summary blocks, line for line. */
export function summaryLines(statuses: StatusCount[], modules: ModuleCount[]): string[] {
  const total = statuses.reduce((sum, s) => sum + s.count, 0)
  return [
    'Current TaskManager status summary:',
    RULE,
    ...statuses.map((s) => `${s.status}: ${count(s.count)} records`),
    RULE,
    `Total: ${count(total)} records`,
    '',
    'Task Module Summary:',
    RULE,
    ...modules.map((m) => `${m.taskModule}: ${count(m.count)} records`),
  ]
}
