/**
 * A batch's COMMIT whose answer never came: the connection broke while it was
 * in flight (a network cut, a crash or failover of the server), so the server
 * may have committed the batch or not. An error the server reports itself, a
 * FATAL included, means it rolled the batch back.
 */
export class CommitOutcomeUnknown extends Error {
  constructor(cause: Error) {
    super(`The connection was lost while a batch's COMMIT was in flight (${cause.message})`, {cause})
    this.name = 'CommitOutcomeUnknown'
  }
}

/** Runs `commit`; a failure with no server severity (the connection broke, not the server refusing) becomes CommitOutcomeUnknown. */
export async function commitOrUnknown(commit: () => Promise<unknown>): Promise<void> {
  try {
    await commit()
  } catch (error) {
    // pg's DatabaseError carries the server's severity; TypeORM's QueryFailedError copies it from the driver's error.
    if ((error as {severity?: string}).severity === undefined) throw new CommitOutcomeUnknown(error as Error)
    throw error
  }
}
