import type {Config, Hook} from '@oclif/core'
import {readFile, stat} from 'node:fs/promises'
import {join} from 'node:path'

/**
 * init — runs @oclif/plugin-warn-if-update-available's hook only when it has
 * something to do: its version cache is missing or stale (it then asks the
 * registry in the background), or the cache names a newer ops (it then warns,
 * at most once per `frequency`). Loading it costs every command about 50 ms
 * (it reads the npm configuration for the registry and its token on each
 * start), for nothing on the days when the cache is fresh and names no newer
 * ops: then, as that hook itself would, this one returns at once.
 */
const hook: Hook<'init'> = async function (options) {
  if (await upToDate(this.config)) return
  // Pinned (package.json): its hook's file is not among its package exports, so it is loaded by path.
  const entry = import.meta.resolve('@oclif/plugin-warn-if-update-available')
  const {default: checkUpdate} = (await import(new URL('hooks/init/check-update.js', entry).href)) as {default: Hook<'init'>}
  await checkUpdate.call(this, options)
}

/** What of the CLI's config the check reads. */
export type UpdateCheckConfig = Pick<Config, 'cacheDir' | 'pjson' | 'scopedEnvVar' | 'scopedEnvVarTrue' | 'version'>

/** The plugin's hook would neither refresh its cache nor warn: the cache is fresh and names no other version. */
export async function upToDate(config: UpdateCheckConfig): Promise<boolean> {
  if (config.scopedEnvVarTrue('FORCE_VERSION_CACHE_UPDATE')) return false
  if (config.scopedEnvVarTrue('SKIP_NEW_VERSION_CHECK')) return true
  const versionFile = join(config.cacheDir, 'version')
  const {timeoutInDays = 60} = (config.pjson.oclif['warn-if-update-available'] ?? {}) as {timeoutInDays?: number}
  try {
    const {mtime} = await stat(versionFile)
    if (mtime.getTime() + timeoutInDays * 86_400_000 < Date.now()) return false
    const tags = JSON.parse(await readFile(versionFile, 'utf8')) as Record<string, unknown>
    const latest = tags[config.scopedEnvVar('NEW_VERSION_CHECK_TAG') ?? 'latest']
    // Any other version, newer or not, is left to the plugin to compare.
    return latest === undefined || (typeof latest === 'string' && latest.split('-', 1)[0] === config.version.split('-', 1)[0])
  } catch {
    return false
  }
}

export default hook
