import {stopAll} from './servers.js'

/** Mocha root hooks: stop every throwaway server once the whole run is over. */
export const mochaHooks = {
  async afterAll(this: {timeout(ms: number): void}) {
    this.timeout(60_000)
    await stopAll()
  },
}
