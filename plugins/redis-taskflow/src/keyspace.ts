/**
 * AsyncTaskFlow's Redis layout, in one place (the full list of fields: docs/asynctaskflow-keys.md). All values are strings.
 *
 * - `task:{uuid4}` hash: task_id, content, task_type, state, retry_count, ...,
 *   created_at / updated_at / completed_at as naive ISO-8601 (utcnow().isoformat()).
 * - queues: two lists of ids, a sorted set scored by retry time (Unix seconds), a DLQ list.
 * - `metrics:tasks:state:{state}` counters, lower-case, moved by the application
 *   with DECRBY/INCRBY inside MULTI/EXEC together with the task's state change.
 */
export const TASK_STATES = ['PENDING', 'ACTIVE', 'COMPLETED', 'FAILED', 'SCHEDULED', 'DLQ'] as const
export type TaskState = (typeof TASK_STATES)[number]

export const TASK_KEY_PREFIX = 'task:'
/** Matches `task:{id}` only: `tasks:pending:primary` has an `s` where the colon must be. */
export const TASK_KEY_PATTERN = 'task:*'
export const DLQ_TASK_KEY_PREFIX = 'dlq:task:'
export const DLQ_TASK_KEY_PATTERN = 'dlq:task:*'
export const CELERY_META_PATTERN = 'celery-task-meta-*'
export const HEARTBEAT_KEY_PATTERN = 'worker:heartbeat:*'
export const COUNTER_KEY_PREFIX = 'metrics:tasks:state:'
export const COUNTER_KEY_PATTERN = `${COUNTER_KEY_PREFIX}*`
export const QUEUE_UPDATES_CHANNEL = 'queue-updates'

export const Queue = {
  primary: 'tasks:pending:primary',
  retry: 'tasks:pending:retry',
  scheduled: 'tasks:scheduled',
  dlq: 'dlq:tasks',
} as const

/** List queues hold ids with LPUSH/RPOP; the scheduled queue is a sorted set. */
export const LIST_QUEUES = [Queue.primary, Queue.retry, Queue.dlq] as const

export const taskKey = (id: string): string => `${TASK_KEY_PREFIX}${id}`
export const dlqTaskKey = (id: string): string => `${DLQ_TASK_KEY_PREFIX}${id}`
export const heartbeatKey = (workerId: string): string => `worker:heartbeat:${workerId}`
export const counterKey = (state: TaskState): string => `${COUNTER_KEY_PREFIX}${state.toLowerCase()}`
export const idOfTaskKey = (key: string): string => key.slice(TASK_KEY_PREFIX.length)

export function isTaskState(value: string | null | undefined): value is TaskState {
  return value !== null && value !== undefined && (TASK_STATES as readonly string[]).includes(value)
}

/**
 * Every key pattern that belongs to the task flow; `taskflow:reset` removes these
 * and nothing else unless the user asks for the whole database.
 */
export const TASK_FLOW_PATTERNS = [
  TASK_KEY_PATTERN,
  DLQ_TASK_KEY_PATTERN,
  CELERY_META_PATTERN,
  HEARTBEAT_KEY_PATTERN,
  COUNTER_KEY_PATTERN,
  'tasks:*',
  Queue.dlq,
] as const
