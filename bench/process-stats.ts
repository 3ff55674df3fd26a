/** What a benchmarked child process cost, read from /proc while it runs (Linux). */
import {readFileSync} from 'node:fs'

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
