import type {Hook} from '@oclif/core'
import {register} from 'node:module'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'

/**
 * init — makes `import ... from 'ops-cli/base'` resolve to the running ops.
 *
 * `ops plugins install` puts this plugin in $OPS_DATA_DIR/node_modules, where
 * `ops-cli` is not (it is an optional peer: the host is not on the registry and
 * must never be fetched). Node would then fail to find it. This hook runs before
 * any command of the plugin is imported and, only when the host cannot be found
 * the normal way, registers a resolver that sends `ops-cli` and `ops-cli/*` to
 * the CLI that is running: one copy of the base, shared with the host.
 * A linked working copy or a test run finds its own `ops-cli` and skips this.
 * It must not import `ops-cli` itself.
 */
const host: Hook<'init'> = async function () {
  try {
    import.meta.resolve('ops-cli/base')
    return
  } catch {
    // Not reachable from here: installed from a tarball or the registry.
  }
  if (this.config.pjson.name !== 'ops-cli') return
  register('./host-resolver.js', {
    parentURL: import.meta.url,
    data: {hostPackageJson: pathToFileURL(join(this.config.root, 'package.json')).href},
  })
}

export default host
