#!/usr/bin/env node
// Off a terminal, print errors on one line each (no wrapping at 80 columns) so logs and greps see them whole.
if (!process.stderr.isTTY && !process.env.OCLIF_COLUMNS) process.env.OCLIF_COLUMNS = '10000'

const {execute} = await import('@oclif/core')
await execute({dir: import.meta.url})
