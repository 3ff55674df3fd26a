import type {Redis} from 'ioredis'

import {FieldRow, HashScanner, NOT_A_HASH, ROW_GONE} from './hash-scan.js'
import {SCAN_COUNT} from './scan.js'

/** What a task key held when it was read: its state field, `NO_STATE` for a hash without one, `GONE` for a deleted key. */
export type StateReading = string | typeof NO_STATE | typeof GONE
export const NO_STATE = null
export const GONE = undefined

/** Keys returned by one SCAN step, with what each one held. */
export interface StateBatch {
  keys: string[]
  readings: StateReading[]
}

const readingOf = (row: FieldRow): StateReading => (row === ROW_GONE ? GONE : row === NOT_A_HASH ? NO_STATE : (row[0] ?? NO_STATE))

/**
 * Reads the state of task keys through one node (HashScanner: read-only
 * scripts where the server allows them, pipelined HMGET where not). A task:*
 * key that is not a hash reads as having no state.
 */
export class StateReader {
  private readonly scanner: HashScanner

  constructor(node: Redis) {
    this.scanner = new HashScanner(node, ['state'])
  }

  async read(keys: string[]): Promise<StateReading[]> {
    return (await this.scanner.read(keys)).map(readingOf)
  }

  /** Every key of this node matching `pattern`, batch by batch, with its state read in the SCAN step itself. */
  async *scan(pattern: string, count = SCAN_COUNT): AsyncGenerator<StateBatch> {
    for await (const {keys, rows} of this.scanner.scan(pattern, count)) yield {keys, readings: rows.map(readingOf)}
  }
}
