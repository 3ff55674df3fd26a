// oclif writes commands in the order their files finish loading, which differs
// between machines; sort them so the committed manifest is reproducible and CI's
// staleness check compares content, not load order.
import {readFileSync, writeFileSync} from 'node:fs'

for (const path of process.argv.slice(2)) {
  const manifest = JSON.parse(readFileSync(path, 'utf8'))
  manifest.commands = Object.fromEntries(Object.entries(manifest.commands).sort(([a], [b]) => a.localeCompare(b)))
  writeFileSync(path, JSON.stringify(manifest, null, 2))
}
