import type {Redis} from 'ioredis'

import {FieldRow, HashScanner, NOT_A_HASH, ROW_GONE} from './hash-scan.js'
import {isBadName, SCAN_COUNT} from './scan.js'

/**
 * What a task key held when it was read: its state field, `NO_STATE` for a
 * hash without one, `NOT_HASH` for a key of another type, `BAD_NAME` for a key
 * whose name is not UTF-8 (ops cannot name it back to the server), `GONE` for
 * a key deleted or expired before it was read.
 */
export type StateReading = string | typeof NO_STATE | typeof NOT_HASH | typeof BAD_NAME | typeof GONE
export const NO_STATE = null
export const GONE = undefined
export const NOT_HASH = Object.freeze({reading: 'not a hash'})
export const BAD_NAME = Object.freeze({reading: 'name not UTF-8'})

export {isBadName} from './scan.js'

/** Keys returned by one SCAN step, with what each one held. */
export interface StateBatch {
  keys: string[]
  readings: StateReading[]
}

const readingOf = (row: FieldRow): StateReading => (row === ROW_GONE ? GONE : row === NOT_A_HASH ? NOT_HASH : (row[0] ?? NO_STATE))

/**
 * Reads the state of task keys through one node (HashScanner: read-only
 * scripts where the server allows them, pipelined HMGET where not).
 */
export class StateReader {
  private readonly scanner: HashScanner

  constructor(node: Redis) {
    this.scanner = new HashScanner(node, ['state'])
  }

  async read(keys: string[]): Promise<StateReading[]> {
    return (await this.scanner.read(keys)).map((row, i) => (isBadName(keys[i]) ? BAD_NAME : readingOf(row)))
  }

  /** Every key of this node matching `pattern`, batch by batch, with its state read in the SCAN step itself. */
  async *scan(pattern: string, count = SCAN_COUNT): AsyncGenerator<StateBatch> {
    for await (const {keys, rows} of this.scanner.scan(pattern, count))
      yield {keys, readings: rows.map((row, i) => (isBadName(keys[i]) ? BAD_NAME : readingOf(row)))}
  }
}
