import {access, constants, open} from 'node:fs/promises'
import type {FileHandle} from 'node:fs/promises'
import {dirname, resolve} from 'node:path'

import {UsageError} from 'ops-cli/base'

/**
 * --archive FILE: every deleted row as one JSON line (row_to_json, full
 * precision), appended and fsync'ed before its batch commits. A batch that
 * rolls back is cut off the file again; a process killed between fsync and
 * COMMIT, or a COMMIT that got no answer (CommitOutcomeUnknown), leaves lines
 * for rows that may still be in the table, which a re-run archives again
 * (duplicates by id are possible, lost rows are not).
 */
export class Archive {
  private size = 0

  private constructor(
    readonly path: string,
    private readonly file: FileHandle,
  ) {}

  /** Checks, without creating anything, that FILE can be written (for the plan and --dry-run). */
  static async assertWritable(path: string): Promise<void> {
    const full = resolve(path)
    try {
      await access(full, constants.W_OK)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new UsageError(`Cannot write the archive ${full}: ${(error as Error).message}`)
      try {
        await access(dirname(full), constants.W_OK)
      } catch (inner) {
        throw new UsageError(`Cannot create the archive ${full}: ${(inner as Error).message}`)
      }
    }
  }

  static async open(path: string): Promise<Archive> {
    const file = await open(resolve(path), 'a', 0o600)
    const archive = new Archive(resolve(path), file)
    archive.size = (await file.stat()).size
    return archive
  }

  /** Appends and flushes to disk; returns only once the lines are durable. */
  async append(lines: string[]): Promise<void> {
    if (lines.length === 0) return
    const text = Buffer.from(lines.join('\n') + '\n')
    await this.file.write(text)
    await this.file.sync()
    this.size += text.length
  }

  /** The size once its last batch committed, to cut a rolled-back batch off the end. */
  mark(): number {
    return this.size
  }

  async truncate(size: number): Promise<void> {
    if (size === this.size) return
    await this.file.truncate(size)
    await this.file.sync()
    this.size = size
  }

  async close(): Promise<void> {
    await this.file.close()
  }
}
