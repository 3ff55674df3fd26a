import {UsageError} from 'ops-cli/base'
import pg from 'pg'

/** Django's table for celery-task-manager's TaskManager model (app label task_manager). */
export const DEFAULT_TABLE = 'task_manager_taskmanager'

/** A schema-qualified table name, unquoted; `qualified()` makes the SQL text of it. */
export interface TableName {
  schema: string
  name: string
}

/** `"my""schema"`: pg's own quoting, always double-quoted, embedded quotes doubled. */
export const quoteIdent = (identifier: string): string => pg.escapeIdentifier(identifier)

/** `"schema"."name"`, safe to splice into a statement. */
export function qualified(table: TableName): string {
  return `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`
}

/**
 * Parses `name`, `schema.name` or quoted parts (`"My Schema"."T.x"`) the way
 * PostgreSQL reads them: unquoted parts fold to lower case. The schema is
 * undefined when not given (resolved through search_path later).
 */
export function parseTableName(text: string): {schema?: string; name: string} {
  const parts: string[] = []
  let i = 0
  const input = text.trim()
  while (i <= input.length) {
    let part = ''
    if (input[i] === '"') {
      i++
      for (;;) {
        if (i >= input.length) throw new UsageError(`Invalid table name ${text}: unterminated quoted identifier.`)
        if (input[i] === '"') {
          if (input[i + 1] === '"') {
            part += '"'
            i += 2
            continue
          }
          i++
          break
        }
        part += input[i++]
      }
    } else {
      while (i < input.length && input[i] !== '.') part += input[i++]
      part = part.trim().toLowerCase()
    }
    if (!part) throw new UsageError(`Invalid table name "${text}": use table or schema.table.`)
    parts.push(part)
    if (i >= input.length) break
    if (input[i] !== '.') throw new UsageError(`Invalid table name ${text}: expected "." after a quoted identifier.`)
    i++
  }
  if (parts.length > 2) throw new UsageError(`Invalid table name "${text}": use table or schema.table.`)
  return parts.length === 2 ? {schema: parts[0], name: parts[1]} : {name: parts[0]}
}
