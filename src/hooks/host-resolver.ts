/**
 * Module resolution hooks (node:module `register`), loaded by ./plugin-host.ts:
 * a specifier `ops-cli` or `ops-cli/...` that cannot be resolved from the
 * importing file is resolved from the running host's package instead (a
 * package may import itself by name, so its own "exports" apply).
 */
interface ResolveContext {
  parentURL?: string
  conditions: string[]
  importAttributes: Record<string, string>
}
type NextResolve = (specifier: string, context?: Partial<ResolveContext>) => Promise<{url: string}>

let hostPackageJson: string | undefined

export async function initialize(data: {hostPackageJson: string}): Promise<void> {
  hostPackageJson = data.hostPackageJson
}

export async function resolve(specifier: string, context: ResolveContext, next: NextResolve): Promise<{url: string}> {
  if (!hostPackageJson || !(specifier === 'ops-cli' || specifier.startsWith('ops-cli/'))) return next(specifier, context)
  try {
    return await next(specifier, context)
  } catch (error) {
    if ((error as {code?: string}).code !== 'ERR_MODULE_NOT_FOUND') throw error
    return next(specifier, {...context, parentURL: hostPackageJson})
  }
}
