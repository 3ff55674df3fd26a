/**
 * What a benchmarked child process cost, read from /proc while it runs (Linux), and the warm-up that keeps the update
 * check's first background request out of the timed runs.
 */
import {existsSync, readdirSync, readFileSync} from 'node:fs'
import {join} from 'node:path'

import {collect, OPS_HOME, spawnOps} from '../test/helpers/cli.js'

/** Peak resident set of a child, in MB: VmHWM is the kernel's high-water mark, sampled until the process exits. */
export function watchRss(pid: number): {stop(): number} {
  let peak = 0
  const read = () => {
    try {
      const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      if (match) peak = Math.max(peak, Number(match[1]))
    } catch {
      // the process has exited
    }
  }
  const timer = setInterval(read, 25)
  return {
    stop() {
      clearInterval(timer)
      return peak / 1024
    },
  }
}

/**
 * Runs `ops --version` once, untimed, and waits (up to 15 s) until the update check it starts is over: the first run of
 * ops with an empty cache directory asks the registry from a background process (get-version, 5 s timeout), which
 * would share the machine with the first timed run. A user's ops has its cache from an earlier run and asks again at
 * most once a day.
 */
export async function warmUpdateCheck(): Promise<void> {
  const result = await collect(spawnOps(['--version']))
  if (result.code !== 0) throw new Error(`ops --version failed: ${result.stderr}`)
  const versionFile = join(OPS_HOME, 'cache', 'version')
  const deadline = Date.now() + 15_000
  while ((!existsSync(versionFile) || askingRegistry()) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100))
}

/** Whether warn-if-update-available's background registry request (lib/get-version) still runs. */
function askingRegistry(): boolean {
  return readdirSync('/proc').some((pid) => {
    try {
      return /^\d+$/.test(pid) && readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('plugin-warn-if-update-available/lib/get-version')
    } catch {
      return false // gone meanwhile
    }
  })
}
