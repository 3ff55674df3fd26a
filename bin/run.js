#!/usr/bin/env node
// Off a terminal, print errors on one line each (no wrapping at 80 columns) so logs and greps see them whole.
if (!process.stderr.isTTY && !process.env.OCLIF_COLUMNS) process.env.OCLIF_COLUMNS = '10000'

// @oclif/core checks Node against its own engines (>=18) at import, loading semver for it (about 20 ms of every start);
// ops needs more, and says so here without semver.
const [major, minor] = process.versions.node.split('.').map(Number)
if (major < 20 || (major === 20 && minor < 19)) process.emitWarning(`ops needs Node >= 20.19; this is Node ${process.versions.node}.`)
process.env.OCLIF_DISABLE_ENGINE_WARNING ??= 'true'

// Node 21+ has navigator; pg probes for Cloudflare Workers with `new Response()` when it is missing, which on Node 20
// loads undici (about 40 ms of every start-up). Give Node 20 what Node 22 has.
globalThis.navigator ??= {userAgent: `Node.js/${major}`}

const {Config, flush, handle, run} = await import('@oclif/core')
const config = await Config.load(import.meta.url)

// Topics use ":" (ops taskmanager:clear), but users also type words, as in
// "ops plugins install X" or "ops taskflow counters sync": take the longest run
// of leading words that names a command.
let argv = process.argv.slice(2)
const words = argv.slice(0, 4).findIndex((a) => a.startsWith('-') || a.includes(':'))
for (let k = words === -1 ? Math.min(4, argv.length) : words; k >= 2; k--) {
  const id = argv.slice(0, k).join(':')
  if (config.findCommand(id)) {
    argv = [id, ...argv.slice(k)]
    break
  }
}

// An unknown command goes to @oclif/plugin-not-found, whose prompt (default yes) would run its guess with the
// same arguments: the base refuses to run a destructive command reached that way (guessedCommandRefusal in src/base/destructive.ts).
if (argv[0] && !argv[0].startsWith('-') && !config.findCommand(argv[0])) globalThis[Symbol.for('ops.unknownCommand')] = argv[0]

await run(argv, config)
  .then(() => flush())
  // @oclif/plugin-not-found exits 127 for an unknown command; ops' contract is exit 2 for every usage error.
  .catch((error) => handle(error?.oclif?.exit === 127 ? Object.assign(error, {oclif: {...error.oclif, exit: 2}}) : error))
