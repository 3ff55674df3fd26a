import {installLine, missingPackages} from './requirements.js'
import {stopAll} from './servers.js'

// Said before the first test runs, so a failure for a missing package is never the first news of it.
const missing = missingPackages()
if (missing.length > 0) {
  process.stderr.write(
    `\nMissing on this machine: ${missing.join(', ')} (tests that need them fail saying so). Install: ${installLine(missing)}\n`,
  )
}

/** Mocha root hooks: stop every throwaway server once the whole run is over. */
export const mochaHooks = {
  async afterAll(this: {timeout(ms: number): void}) {
    this.timeout(60_000)
    await stopAll()
  },
}
