import {open} from 'node:fs/promises'
import type {FileHandle} from 'node:fs/promises'
import {resolve} from 'node:path'

import {UsageError} from 'ops-cli/base'

/** Where one row's line is in the file. */
interface Span {
  offset: number
  length: number
}

const NEWLINE = 0x0a
const CHUNK = 1 << 20
/** row_to_json writes the columns in table order, and id is the first column of the Django table. */
const ROW_START = '{"id":'

/**
 * Reads the JSON lines `taskmanager:clear --archive FILE` writes. An id may
 * appear more than once: a clear killed between its fsync and its COMMIT left
 * lines for rows still in the table (a re-run appends them again if they still
 * match), and a row restored then cleared again is appended again. Only the last
 * line of an id, the newest copy written, is kept; when that row is in the table
 * (never deleted, or back), restore skips it. Only each id's position is held in
 * memory; the lines are read again batch by batch.
 */
export class ArchiveFile {
  /** Damaged lines skipped or repaired, for the plan's warnings. */
  readonly warnings: string[] = []
  /** Non-empty lines read, damaged ones included (for line numbers). */
  lines = 0
  /** Whole rows read, repeated ids included. */
  rows = 0

  private constructor(
    readonly path: string,
    private readonly file: FileHandle,
    private readonly spans: Map<string, Span>,
  ) {}

  static async open(path: string): Promise<ArchiveFile> {
    const full = resolve(path)
    let file: FileHandle
    try {
      file = await open(full, 'r')
    } catch (error) {
      throw new UsageError(`Cannot read the archive file ${full}: ${(error as Error).message}`)
    }
    const archive = new ArchiveFile(full, file, new Map())
    try {
      await archive.index()
    } catch (error) {
      await file.close()
      throw error
    }
    return archive
  }

  /** Distinct ids in the file, in ascending numeric order. */
  ids(): string[] {
    return [...this.spans.keys()].sort((a, b) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0))
  }

  get size(): number {
    return this.spans.size
  }

  /**
   * How many of `ids`, from `from` on, make one batch: at most `rows`, and no more than `bytes` of lines (one at least):
   * a batch's lines go to the server as one JSON text, which must stay far below V8's limit on a string.
   */
  fitting(ids: string[], from: number, rows: number, bytes: number): number {
    let n = 0
    let size = 0
    while (from + n < ids.length && n < rows) {
      size += this.spans.get(ids[from + n])?.length ?? 0
      if (n > 0 && size > bytes) break
      n++
    }
    return n
  }

  /** The last line of each of these ids, as JSON text. */
  async read(ids: string[]): Promise<string[]> {
    const lines: string[] = []
    for (const id of ids) {
      const span = this.spans.get(id)
      if (!span) continue
      const buffer = Buffer.alloc(span.length)
      await this.file.read(buffer, 0, span.length, span.offset)
      lines.push(buffer.toString('utf8'))
    }
    return lines
  }

  async close(): Promise<void> {
    await this.file.close()
  }

  private async index(): Promise<void> {
    let position = 0
    let pending = Buffer.alloc(0)
    let pendingAt = 0
    const buffer = Buffer.alloc(CHUNK)
    for (;;) {
      const {bytesRead} = await this.file.read(buffer, 0, CHUNK, position)
      if (bytesRead === 0) break
      let data = Buffer.concat([pending, buffer.subarray(0, bytesRead)])
      let dataAt = pendingAt
      position += bytesRead
      let newline: number
      while ((newline = data.indexOf(NEWLINE)) !== -1) {
        this.take(data.subarray(0, newline), dataAt, false)
        data = data.subarray(newline + 1)
        dataAt += newline + 1
      }
      pending = Buffer.from(data)
      pendingAt = dataAt
    }
    if (pending.length > 0) this.take(pending, pendingAt, true)
  }

  /** Indexes one line; a row a killed writer left half-written is skipped, and a whole row appended after it kept. */
  private take(bytes: Buffer, offset: number, last: boolean): void {
    const text = bytes.toString('utf8')
    if (text.trim() === '') return
    this.lines++
    const lineNo = this.lines
    const id = idOf(text)
    if (id !== undefined) {
      this.rows++
      this.spans.set(id, {offset, length: bytes.length})
      return
    }
    // A write cut short by a kill, then a re-run's append: the line ends with a whole row.
    const start = text.lastIndexOf(ROW_START)
    const tail = start > 0 ? idOf(text.slice(start)) : undefined
    if (tail !== undefined) {
      this.rows++
      const skip = Buffer.byteLength(text.slice(0, start))
      this.spans.set(tail, {offset: offset + skip, length: bytes.length - skip})
      this.warnings.push(`${this.path} line ${lineNo}: a partly written row before row id ${tail} was skipped (its batch never committed).`)
      return
    }
    // The lines are fsync'ed before their batch commits: a row cut short never committed, it is still in the table.
    if (last || text.startsWith(ROW_START)) {
      this.warnings.push(`${this.path} line ${lineNo}: an incomplete row was skipped (its batch never committed).`)
      return
    }
    throw new UsageError(`${this.path} line ${lineNo} is not a row written by taskmanager:clear --archive (a JSON object with an id).`)
  }
}

/** The row's id as written (digits, not a JS number: a bigint may exceed 2^53), when the line is one whole JSON row. */
function idOf(text: string): string | undefined {
  const match = /^\{"id":(\d+)[,}]/.exec(text)
  if (!match) return undefined
  try {
    JSON.parse(text)
    return match[1]
  } catch {
    return undefined
  }
}
