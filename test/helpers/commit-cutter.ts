/**
 * A TCP proxy in front of a real PostgreSQL that breaks one connection the way
 * a network cut, a crash or a failover does at the worst moment for a batch:
 * while its COMMIT is in flight. It reads the frontend protocol from the client
 * (a startup packet, then messages of a type byte and a length) and counts the
 * COMMITs of transactions that ran a DELETE (or what `after` matches). At the chosen one it either
 *   - 'after-commit': lets the COMMIT reach the server, waits for the server's
 *     answer (the batch is committed) and closes both sides instead of passing it on;
 *   - 'before-commit': closes both sides before the COMMIT reaches the server
 *     (which then rolls the batch back).
 * The client sees the same broken connection either way.
 */
import {createServer, Socket} from 'node:net'

export type CutMoment = 'after-commit' | 'before-commit'

export interface CommitCutter {
  /** `url` with the proxy's port. */
  url: string
  /** Connections cut so far. */
  readonly cuts: number
  close(): Promise<void>
}

/** Protocol codes of the untyped packets that may precede the startup packet (SSL and GSS encryption requests). */
const ENCRYPTION_REQUESTS = new Set([80877103, 80877104])

export async function startCommitCutter(
  url: string,
  options: {commitNumber: number; moment: CutMoment; after?: RegExp},
): Promise<CommitCutter> {
  const target = new URL(url)
  const after = options.after ?? /\bDELETE\s+FROM\b/i
  let workCommits = 0
  let cuts = 0
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = new Socket()
    sockets.add(client).add(upstream)
    let pending = Buffer.alloc(0)
    let started = false
    let sawWork = false
    let armed = false
    const cut = () => {
      cuts++
      client.destroy()
      upstream.destroy()
    }
    client.on('data', (chunk) => {
      if (armed) return
      pending = Buffer.concat([pending, chunk])
      const forward: Buffer[] = []
      // Only whole messages are looked at and passed on; a partial one waits for the rest.
      for (;;) {
        if (!started) {
          if (pending.length < 8) break
          const length = pending.readInt32BE(0)
          if (pending.length < length) break
          const code = pending.readInt32BE(4)
          forward.push(pending.subarray(0, length))
          pending = pending.subarray(length)
          if (!ENCRYPTION_REQUESTS.has(code)) started = true
          continue
        }
        if (pending.length < 5) break
        const length = pending.readInt32BE(1) + 1
        if (pending.length < length) break
        const message = pending.subarray(0, length)
        pending = pending.subarray(length)
        const type = String.fromCharCode(message[0])
        const text = type === 'Q' || type === 'P' ? message.subarray(5).toString('utf8') : ''
        if (after.test(text)) sawWork = true
        if (/^(?:[^\0]*\0)?\s*COMMIT\b/i.test(text.replace(/^\0/, ''))) {
          const isCut = sawWork && ++workCommits === options.commitNumber
          sawWork = false
          if (isCut) {
            armed = true
            if (options.moment === 'before-commit') {
              if (forward.length) upstream.write(Buffer.concat(forward))
              cut()
              return
            }
            // The COMMIT and whatever came with it go on; the server's first answer after them is the COMMIT's.
            forward.push(message, pending)
            upstream.write(Buffer.concat(forward))
            upstream.once('data', cut)
            return
          }
        }
        forward.push(message)
      }
      if (forward.length) upstream.write(Buffer.concat(forward))
    })
    upstream.on('data', (chunk) => {
      if (!armed) client.write(chunk)
    })
    const end = () => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('close', end).on('error', end)
    upstream.on('close', end).on('error', end)
    upstream.connect(Number(target.port || 5432), target.hostname)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as {port: number}
  return {
    url: Object.assign(new URL(url), {hostname: '127.0.0.1', port: String(port)}).toString(),
    get cuts() {
      return cuts
    },
    async close() {
      for (const socket of sockets) socket.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
