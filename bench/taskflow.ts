/**
 * npm run bench:taskflow -- --tasks 1000000 --celery-meta 500000 [--runs N]
 *
 * Loads AsyncTaskFlow data (task hashes in a production-like state mix, their
 * queues, drifted counters; Celery result keys) into a throwaway Redis and, in
 * one run, measures the real `ops` CLI against the shell one-liners an operator
 * would otherwise type:
 *   1. counters: `redis-cli --scan --pattern 'task:*' | wc -l` (merely lists the
 *      keys) against `ops taskflow:counters:sync --force` (lists them, reads
 *      every state, fixes the drifted counters): over the task keys alone (the
 *      target's figure), then again with the Celery keys also in the database;
 *   2. celery-meta: `redis-cli --scan --pattern 'celery-task-meta-*' | xargs -n
 *      1000 redis-cli unlink` against `ops taskflow:celery-meta:clean --force`,
 *      with the same number of Celery keys (reloaded) next to the tasks.
 * Baseline and ops alternate (AB, then BA, over --runs rounds; targets use the
 * medians). Every run is checked: the pipeline and ops must remove every Celery
 * key and no other, the scan must list every task, and after each sync the
 * counters must equal the true state counts; a wrong result exits non-zero.
 * Times are wall clock from process start to exit (what the user waits, Node
 * start-up included for ops); the ops rows also show the command's own
 * connect-to-disconnect time from --json, every row the CPU time the Redis
 * server spent (INFO cpu). Peak RSS is the CLI's VmHWM. Uses OPS_TEST_REDIS_URL
 * (an empty database) or a throwaway redis-server, always stopped. */
import {spawn} from 'node:child_process'
import {parseArgs} from 'node:util'

import calculateSlot from 'cluster-key-slot'
import {Redis} from 'ioredis'

import {counterKey, TASK_STATES, TaskState} from '../plugins/redis-taskflow/src/keyspace.js'
import {collect, parseJsonOutput, spawnOps} from '../test/helpers/cli.js'
import {freshRedisCluster} from '../test/helpers/redis-cluster.js'
import {freshRedis, stopAll} from '../test/helpers/servers.js'
import {driftedCounters, loadCeleryMeta, loadTasks, loadTasksIntoCluster, writeCounters} from './taskflow-data.js'
import {warmUpdateCheck, watchRss} from './process-stats.js'

const {values} = parseArgs({
  options: {
    tasks: {type: 'string', default: '1000000'},
    'celery-meta': {type: 'string', default: '500000'},
    runs: {type: 'string', default: '1'},
    cluster: {type: 'boolean', default: false},
  },
})
const TASKS = Number(values.tasks)
const CELERY = Number(values['celery-meta'])
const RUNS = Number(values.runs)
if (![TASKS, CELERY, RUNS].every((n) => Number.isInteger(n) && n > 0))
  throw new Error('--tasks, --celery-meta and --runs take positive integers')

type Phase = 'counters' | 'counters+celery' | 'celery-meta'

interface Measure {
  phase: Phase
  method: string
  keys: number
  /** Wall clock, process start to exit. */
  seconds: number
  /** ops only: connect to disconnect, from --json (no Node start-up). */
  operationSeconds?: number
  peakRssMb?: number
  /** CPU time the Redis server used meanwhile (INFO cpu, user + sys). */
  redisCpuSeconds: number
}

const fmt = (n: number) => n.toLocaleString('en-US')
const log = (line: string) => process.stderr.write(`${line}\n`)

/** Runs a bash pipeline, timed from spawn to exit; fails on any non-zero status in it. */
async function shell(script: string, env: NodeJS.ProcessEnv): Promise<{seconds: number; stdout: string}> {
  const started = performance.now()
  const child = spawn('bash', ['-o', 'pipefail', '-c', script], {env, stdio: ['ignore', 'pipe', 'pipe']})
  const result = await collect(child, 3_600_000)
  const seconds = (performance.now() - started) / 1000
  if (result.code !== 0) throw new Error(`${script} failed (${result.code}): ${result.stderr}`)
  return {seconds, stdout: result.stdout}
}

interface OpsJson {
  outcome: string
  planned: number
  done: number
  durationMs: number
  data?: {tasks: number; unknownState: number; exact: boolean; note: string; changedDuringScan: number}
}

async function viaCli(args: string[]): Promise<{seconds: number; peakRssMb: number; doc: OpsJson}> {
  const started = performance.now()
  const child = spawnOps([...args, '--force', '--json'])
  child.stdin?.end()
  const rss = watchRss(child.pid!)
  const result = await collect(child, 3_600_000)
  const peakRssMb = rss.stop()
  const seconds = (performance.now() - started) / 1000
  if (result.code !== 0) throw new Error(`ops ${args[0]} failed (${result.code}): ${result.stderr}`)
  return {seconds, peakRssMb, doc: parseJsonOutput<OpsJson>(result)}
}

/** Wall time of `ops --version`: the CLI's start-up, part of every ops figure. */
async function viaCliVersion(): Promise<number> {
  const started = performance.now()
  const result = await collect(spawnOps(['--version']))
  if (result.code !== 0) throw new Error(`ops --version failed: ${result.stderr}`)
  return (performance.now() - started) / 1000
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`WRONG RESULT: ${what}`)
}

/** Keys matching `pattern`, counted server-side (SCAN COUNT 10000). */
async function countKeys(client: Redis, pattern: string): Promise<number> {
  let cursor = '0'
  let n = 0
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', pattern, 'COUNT', 10_000)
    cursor = next
    n += keys.length
  } while (cursor !== '0')
  return n
}

async function readCounters(client: Redis): Promise<Record<TaskState, number>> {
  const read = await client.mget(...TASK_STATES.map(counterKey))
  return Object.fromEntries(TASK_STATES.map((s, i) => [s, Number(read[i])])) as Record<TaskState, number>
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2
}

async function redisCpu(client: Redis): Promise<number> {
  const info = await client.info('cpu')
  const field = (name: string) => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN)
  return field('used_cpu_user') + field('used_cpu_sys')
}

const PHASE_TITLE: Record<Phase, string> = {
  counters: 'counters',
  'counters+celery': 'counters (+celery keys)',
  'celery-meta': 'celery-meta',
}

function report(results: Measure[], startupSeconds: number): void {
  const isBaseline = (r: Measure) => r.method.startsWith('redis-cli')
  const medianOf = (phase: Phase, baseline: boolean) =>
    median(results.filter((r) => r.phase === phase && isBaseline(r) === baseline).map((r) => r.seconds))
  const order: Phase[] = ['counters', 'counters+celery', 'celery-meta']
  const sorted = [...results].sort((x, y) => order.indexOf(x.phase) - order.indexOf(y.phase))
  const rows = sorted.map((r) => [
    PHASE_TITLE[r.phase],
    r.method,
    fmt(r.keys),
    r.seconds.toFixed(2),
    `${(r.seconds / medianOf(r.phase, true)).toFixed(2)}x`,
    r.operationSeconds === undefined ? '-' : r.operationSeconds.toFixed(2),
    r.redisCpuSeconds.toFixed(2),
    r.peakRssMb === undefined ? '-' : `${r.peakRssMb.toFixed(0)} MB`,
  ])
  const header = ['phase', 'method', 'keys', 'seconds', 'vs baseline', 'ops operation s', 'Redis CPU s', 'peak RSS (CLI)']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join('  ')
  console.log(`\n${fmt(TASKS)} tasks, ${fmt(CELERY)} celery-task-meta-* keys, ${RUNS} round(s); wall seconds, process start to exit:\n`)
  console.log(line(header))
  console.log(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const r of rows) console.log(line(r))
  console.log(
    `\nops start-up alone (ops --version): ${startupSeconds.toFixed(2)} s, included in the ops wall times. ` +
      `"ops operation s" is connect to disconnect from --json; "Redis CPU s" is what the server spent meanwhile.`,
  )

  const ratio = (phase: Phase) => medianOf(phase, false) / medianOf(phase, true)
  const peak = Math.max(...results.map((r) => r.peakRssMb ?? 0))
  const verdict = (ok: boolean) => (ok ? 'met' : 'NOT met')
  console.log(
    `\nTargets${RUNS > 1 ? ' (medians)' : ''}: ` +
      `celery-meta clean <= 0.40x the pipeline: ${ratio('celery-meta').toFixed(2)}x, ${verdict(ratio('celery-meta') <= 0.4)}; ` +
      `counters:sync <= 1.00x the bare scan over ${fmt(TASKS)} task keys alone: ` +
      `${ratio('counters').toFixed(2)}x, ${verdict(ratio('counters') <= 1)} ` +
      `(${ratio('counters+celery').toFixed(2)}x with the ${fmt(CELERY)} Celery keys also in the database); ` +
      `peak RSS < 200 MB: ${peak.toFixed(0)} MB, ${verdict(peak < 200)}.`,
  )
  const cpuPerMillion = (phase: Phase, baseline: boolean) =>
    median(results.filter((r) => r.phase === phase && isBaseline(r) === baseline).map((r) => r.redisCpuSeconds)) / (TASKS / 1_000_000)
  console.log(
    `Redis server CPU per million tasks (counters, task keys alone): counters:sync ${cpuPerMillion('counters', false).toFixed(2)} s, ` +
      `bare scan ${cpuPerMillion('counters', true).toFixed(2)} s.`,
  )
}

/**
 * --cluster: counters:sync on a throwaway 3-master cluster against a bare scan
 * of all three masters one after the other (what ops does too), same checks.
 */
async function clusterBench(): Promise<void> {
  const cluster = await freshRedisCluster()
  const seed = new Redis(cluster.nodes[0].port, cluster.nodes[0].host)
  const slots = (await seed.cluster('SLOTS')) as unknown as [number, number, [string, number]][]
  seed.disconnect()
  const ports = [...new Set(slots.map(([, , [, port]]) => port))]
  const masters = ports.map((port) => ({
    url: `redis://127.0.0.1:${port}`,
    owns: (slot: number) => slots.some(([from, to, [, p]]) => p === port && slot >= from && slot <= to),
  }))
  const clients = ports.map((port) => new Redis(port, '127.0.0.1'))
  const cpu = async () => (await Promise.all(clients.map(redisCpu))).reduce((a, b) => a + b, 0)
  try {
    log(`loading ${fmt(TASKS)} tasks into a 3-master cluster:`)
    const started = Date.now()
    const {states} = await loadTasksIntoCluster(masters, TASKS)
    log(`  loaded in ${((Date.now() - started) / 1000).toFixed(1)}s`)
    const rows: string[] = []
    const scans: number[] = []
    const syncs: number[] = []
    for (let round = 0; round < RUNS; round++) {
      for (const which of round % 2 === 0 ? ['scan', 'ops'] : ['ops', 'scan']) {
        const before = await cpu()
        if (which === 'scan') {
          const script = ports.map((port) => `redis-cli -h 127.0.0.1 -p ${port} --scan --pattern 'task:*'`).join('; ')
          const {seconds, stdout} = await shell(`(${script}) | wc -l`, process.env)
          check(Number(stdout.trim()) === TASKS, `the scans listed ${stdout.trim()} task keys, not ${TASKS}`)
          scans.push(seconds)
          rows.push(`bare scan of the 3 masters   ${seconds.toFixed(2)} s   Redis CPU ${((await cpu()) - before).toFixed(2)} s`)
        } else {
          await Promise.all(
            TASK_STATES.map((state, i) =>
              clients[masters.findIndex((m) => m.owns(calculateSlot(counterKey(state))))].set(
                counterKey(state),
                states[state] + (i % 2 ? -3 : 17),
              ),
            ),
          )
          const {seconds, peakRssMb, doc} = await viaCli(['taskflow:counters:sync', '--redis-url', cluster.url])
          check(doc.outcome === 'done' && doc.data?.tasks === TASKS, `counters:sync ${doc.outcome}, counted ${doc.data?.tasks}`)
          for (const state of TASK_STATES) {
            const value = Number(await clients[masters.findIndex((m) => m.owns(calculateSlot(counterKey(state))))].get(counterKey(state)))
            check(value === states[state], `after counters:sync ${counterKey(state)} = ${value}, true count ${states[state]}`)
          }
          syncs.push(seconds)
          rows.push(
            `ops taskflow:counters:sync   ${seconds.toFixed(2)} s   Redis CPU ${((await cpu()) - before).toFixed(2)} s   ` +
              `peak RSS ${peakRssMb.toFixed(0)} MB   exact: ${doc.data?.exact}`,
          )
        }
        log(`  ${rows.at(-1)}`)
      }
    }
    const ratio = median(syncs) / median(scans)
    console.log(`\n${fmt(TASKS)} tasks on a 3-master cluster, ${RUNS} round(s); wall seconds, process start to exit:\n${rows.join('\n')}`)
    console.log(
      `\nTarget: cluster counters:sync <= 1.00x a bare scan of all three masters: ${ratio.toFixed(2)}x, ${ratio <= 1 ? 'met' : 'NOT met'}.`,
    )
  } finally {
    for (const client of clients) client.disconnect()
  }
}

if (values.cluster) {
  try {
    await clusterBench()
  } finally {
    await stopAll()
  }
  process.exit(0)
}

try {
  const server = await freshRedis()
  const url = server.url
  const {hostname, port, pathname, username, password} = new URL(url)
  const db = pathname.slice(1) || '0'
  const cli = `redis-cli -h ${hostname} -p ${port || '6379'} -n ${db}${username ? ` --user '${decodeURIComponent(username)}'` : ''}`
  const env: NodeJS.ProcessEnv = {...process.env, ...(password ? {REDISCLI_AUTH: decodeURIComponent(password)} : {})}
  const client = new Redis(url)
  try {
    const results: Measure[] = []
    const timed = async <T>(what: string, work: () => Promise<T>): Promise<T> => {
      const started = Date.now()
      const out = await work()
      log(`  ${what} in ${((Date.now() - started) / 1000).toFixed(1)}s`)
      return out
    }
    await warmUpdateCheck()
    const startup = await viaCliVersion()
    log(`loading ${fmt(TASKS)} tasks:`)
    const {states} = await timed(`loaded ${fmt(TASKS)} tasks`, () => loadTasks(url, TASKS))
    const tasksOnly = await client.dbsize()

    /** Measures the work and the server CPU it cost; returns what to record and log. */
    const run = async (phase: Phase, work: () => Promise<Omit<Measure, 'phase' | 'redisCpuSeconds'> & {note?: string}>): Promise<void> => {
      const before = await redisCpu(client)
      const {note, ...row} = await work()
      const measured = {...row, phase, redisCpuSeconds: (await redisCpu(client)) - before}
      results.push(measured)
      const extra =
        measured.operationSeconds === undefined
          ? ''
          : ` (operation ${measured.operationSeconds.toFixed(2)}s${note ? `, ${note}` : ''}), peak RSS ${measured.peakRssMb!.toFixed(0)} MB`
      log(`  ${measured.method}: ${measured.seconds.toFixed(2)}s${extra}, Redis CPU ${measured.redisCpuSeconds.toFixed(2)}s`)
    }

    const countersBaseline = (phase: Phase) => async () => {
      const expected = await client.dbsize()
      await run(phase, async () => {
        const {seconds, stdout} = await shell(`${cli} --scan --pattern 'task:*' | wc -l`, env)
        check(Number(stdout.trim()) === TASKS, `the scan listed ${stdout.trim()} task keys, not ${TASKS}`)
        return {method: "redis-cli --scan --pattern 'task:*' | wc -l", keys: TASKS, seconds}
      })
      check((await client.dbsize()) === expected, 'the scan changed the number of keys')
    }
    const countersOps = (phase: Phase) => async () => {
      const expected = await client.dbsize()
      await writeCounters(url, driftedCounters(states)) // drifted again: every sync has work to do
      await run(phase, async () => {
        const {seconds, peakRssMb, doc} = await viaCli(['taskflow:counters:sync', '--redis-url', url])
        check(doc.outcome === 'done', `counters:sync outcome ${doc.outcome}`)
        check(doc.data?.tasks === TASKS, `counters:sync counted ${doc.data?.tasks} tasks, not ${TASKS}`)
        const note = `exact: ${doc.data?.exact}`
        return {
          method: 'ops taskflow:counters:sync --force',
          keys: TASKS,
          seconds,
          operationSeconds: doc.durationMs / 1000,
          peakRssMb,
          note,
        }
      })
      const counters = await readCounters(client)
      for (const s of TASK_STATES)
        check(counters[s] === states[s], `after counters:sync ${counterKey(s)} = ${counters[s]}, true count ${states[s]}`)
      check((await client.dbsize()) === expected, 'counters:sync changed the number of keys')
    }
    /** Baseline and ops alternately: A B in even rounds, B A in odd ones. */
    const pair = (round: number, a: () => Promise<void>, b: () => Promise<void>) => (round % 2 === 0 ? [a, b] : [b, a])

    const reload = () => timed(`loaded ${fmt(CELERY)} celery-task-meta-* keys`, () => loadCeleryMeta(url, CELERY))
    const checkCleaned = async (who: string) => {
      const size = await client.dbsize()
      check(size === tasksOnly, `after ${who} the database holds ${size} keys, not ${tasksOnly}`)
      check((await countKeys(client, 'celery-task-meta-*')) === 0, `${who} left celery-task-meta-* keys`)
      check((await countKeys(client, 'task:*')) === TASKS, `${who} touched task keys`)
    }
    const celeryBaseline = async () => {
      await run('celery-meta', async () => {
        const {seconds, stdout} = await shell(`${cli} --scan --pattern 'celery-task-meta-*' | xargs -n 1000 ${cli} unlink`, env)
        const unlinked = stdout
          .split('\n')
          .filter(Boolean)
          .reduce((sum, n) => sum + Number(n), 0)
        check(unlinked === CELERY, `the pipeline unlinked ${unlinked} keys, not ${CELERY}`)
        return {method: "redis-cli --scan --pattern 'celery-task-meta-*' | xargs -n 1000 redis-cli unlink", keys: CELERY, seconds}
      })
      await checkCleaned('the redis-cli pipeline')
    }
    const celeryOps = async () => {
      await run('celery-meta', async () => {
        const {seconds, peakRssMb, doc} = await viaCli(['taskflow:celery-meta:clean', '--redis-url', url])
        check(doc.outcome === 'done' && doc.done === CELERY, `celery-meta:clean ${doc.outcome}, removed ${doc.done} of ${CELERY}`)
        return {method: 'ops taskflow:celery-meta:clean --force', keys: CELERY, seconds, operationSeconds: doc.durationMs / 1000, peakRssMb}
      })
      await checkCleaned('celery-meta:clean')
    }

    log(`counters, ${fmt(TASKS)} task keys alone:`)
    for (let round = 0; round < RUNS; round++)
      for (const step of pair(round, countersBaseline('counters'), countersOps('counters'))) await step()
    check((await countKeys(client, 'task:*')) === TASKS, 'task keys changed during the counters phase')

    for (let round = 0; round < RUNS; round++) {
      log(`round ${round + 1} with ${fmt(CELERY)} Celery keys next to the tasks:`)
      await reload()
      check((await client.dbsize()) === tasksOnly + CELERY, 'the Celery keys did not load')
      for (const step of pair(round, countersBaseline('counters+celery'), countersOps('counters+celery'))) await step()
      const [first, second] = pair(round, celeryBaseline, celeryOps)
      await first()
      await reload()
      await second()
    }
    report(results, startup)
  } finally {
    await client.quit()
  }
} finally {
  await stopAll()
}
