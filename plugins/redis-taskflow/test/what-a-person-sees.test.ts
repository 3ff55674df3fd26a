/**
 * The taskflow plans as a person reads them in a terminal: fix_counter_sync.py's table
 * and delete_defective_tasks.py's listing line for line, indentation kept when a
 * narrow terminal wraps them, and stuck:fix and defective:delete readable on a screen.
 */
import {expect} from 'chai'

import {mistypedFlagLines, runOps, Screen} from '../../../test/helpers/cli.js'
import {isoNow, setCounters, withFreshRedis, writeHeartbeat, writeTask, writeTasks} from './fixtures.js'

/** delete_defective_tasks.py's own example: a COMPLETED task with no task_id and no created_at. */
const EXAMPLE_KEY = 'task:52334909-bf63-4a69-b326-edb40ef2916a'
const EXAMPLE_ENTRY = [
  `1. Redis Key: ${EXAMPLE_KEY}`,
  '   Task ID: missing',
  '   State: COMPLETED',
  '   Created: missing',
  '   Updated: 2025-07-20T19:16:09.875503',
  '   Completed: 2025-07-20T19:16:09.875503',
  '   Type: missing',
  '   Content: missing',
  '   Defective: task_id missing or empty; created_at missing or empty',
]

/** The lines of a screen from the first line equal to `first`, `n` of them. */
const linesFrom = (screen: string, first: string, n: number) => {
  const lines = screen.split('\n')
  const start = lines.indexOf(first)
  expect(start, `no line "${first}" on:\n${screen}`).to.be.at.least(0)
  return lines.slice(start, start + n)
}

/** Plan lines are at most 100 columns and none is a punctuation mark left alone. */
const expectTidy = (screen: string) => {
  for (const line of screen.split('\n')) {
    expect(line.length, `${line}\n--- on:\n${screen}`).to.be.at.most(100)
    expect(line.trim(), screen).not.to.match(/^[^\p{L}\p{N}\s]{1,2}$/u)
  }
}

describe("taskflow:* on a person's screen", function () {
  const server = withFreshRedis()
  const env = () => ({env: {REDIS_URL: server.url}})

  it('answers a mistyped flag on a taskflow command with the nearest flag and one line pointing at --help', async () => {
    const result = await runOps(['taskflow:inspect', '--jsn'], env())
    expect(result.code).to.equal(2)
    expect(result.stderr.trimEnd().split('\n')).to.deep.equal(mistypedFlagLines('--jsn', '--json', 'taskflow:inspect'))
    expect(result.stdout).to.equal('')
  })

  describe("counters:sync's table", () => {
    before(async () => {
      await server.redis.flushdb()
      await writeTasks(server.redis, 30, (i) => ({state: ['COMPLETED', 'PENDING', 'ACTIVE'][i % 3]}))
      await setCounters(server.redis, {COMPLETED: 9, PENDING: 10, ACTIVE: 1001})
    })

    const TABLE = [
      'Counter Values:',
      '   State     Old  New Change',
      '   --------- ---- --- ------',
      '   PENDING   10   10  0',
      '   ACTIVE    1001 10  -991',
      '   COMPLETED 9    10  +1',
      '   FAILED    0    0   0',
      '   SCHEDULED 0    0   0',
      '   DLQ       0    0   0',
    ]

    it('prints fix_counter_sync.py\'s "Counter Values" table line for line, within 100 columns on a 120-column terminal', async () => {
      const {code, screen} = await Screen.start(['taskflow:counters:sync', '--dry-run'], env()).then((s) => s.exit())
      expect(code, screen).to.equal(0)
      expect(linesFrom(screen, 'Analysis Results:', 2)).to.deep.equal(['Analysis Results:', '   Total tasks found: 30'])
      expect(linesFrom(screen, 'Counter Values:', TABLE.length)).to.deep.equal(TABLE)
      expectTidy(screen)
    })

    it('keeps the table and its indentation on a 60-column terminal; a wrapped line continues deeper than it starts', async () => {
      const {code, screen} = await Screen.start(['taskflow:counters:sync', '--dry-run'], {...env(), width: 60}).then((s) => s.exit())
      expect(code, screen).to.equal(0)
      expect(linesFrom(screen, 'Counter Values:', TABLE.length)).to.deep.equal(TABLE)
      const lines = screen.split('\n')
      const exact = lines.findIndex((l) => l.startsWith('   Exact: '))
      expect(exact, screen).to.be.at.least(0)
      expect(lines[exact + 1], screen).to.match(/^ {5}\S/)
      expect(lines.every((l) => l.length <= 60)).to.equal(true)
    })
  })

  describe("defective:delete's listing", () => {
    before(async () => {
      await server.redis.flushdb()
      await writeTasks(server.redis, 5)
      await server.redis.hset(EXAMPLE_KEY, {
        state: 'COMPLETED',
        updated_at: '2025-07-20T19:16:09.875503',
        completed_at: '2025-07-20T19:16:09.875503',
      })
    })

    it("prints an entry in delete_defective_tasks.py's layout, line for line", async () => {
      const {code, screen} = await Screen.start(['taskflow:defective:delete', '--dry-run'], env()).then((s) => s.exit())
      expect(code, screen).to.equal(0)
      expect(screen.split('\n')).to.include('Found 1 defective tasks')
      expect(linesFrom(screen, EXAMPLE_ENTRY[0], EXAMPLE_ENTRY.length)).to.deep.equal(EXAMPLE_ENTRY)
      expectTidy(screen)
    })

    it('keeps the entry indented on a 60-column terminal, its reasons continued under it', async () => {
      const {code, screen} = await Screen.start(['taskflow:defective:delete', '--dry-run'], {...env(), width: 60}).then((s) => s.exit())
      expect(code, screen).to.equal(0)
      expect(linesFrom(screen, EXAMPLE_ENTRY[0], 8)).to.deep.equal(EXAMPLE_ENTRY.slice(0, 8))
      expect(linesFrom(screen, '   Defective: task_id missing or empty; created_at missing', 2)).to.deep.equal([
        '   Defective: task_id missing or empty; created_at missing',
        '     or empty',
      ])
    })

    it('lists 3 tasks by default, then one "+N more" line saying how to list them all', async () => {
      await writeTasks(server.redis, 40, {task_id: null})
      const {code, screen} = await Screen.start(['taskflow:defective:delete', '--dry-run'], env()).then((s) => s.exit())
      expect(code, screen).to.equal(0)
      const lines = screen.split('\n')
      expect(lines).to.include('Found 41 defective tasks')
      expect(lines.filter((l) => /^\d+\. Redis Key: task:/.test(l))).to.have.length(3)
      expect(lines).to.include('+38 more defective tasks: --limit 41 to list them all')
      expect(lines.length, screen).to.be.at.most(70)
      const all = await runOps(['taskflow:defective:delete', '--dry-run', '--limit', '41'], env())
      expect(all.stdout.split('\n').filter((l) => /^\d+\. Redis Key: task:/.test(l))).to.have.length(41)
      expect(all.stdout).not.to.contain('more defective tasks')
    })
  })

  describe("stuck:fix's plan", () => {
    before(async () => {
      await server.redis.flushdb()
      await writeHeartbeat(server.redis, 'worker-1')
      await writeTasks(server.redis, 30, {state: 'PENDING'}, {count: true, queue: 'none'})
      await writeTasks(server.redis, 12, {state: 'ACTIVE', started_at: isoNow(-2 * 3_600_000)}, {count: true})
      await writeTasks(server.redis, 10, {state: 'PENDING'}, {count: true})
    })

    it('fits one 120x35 screen: 5 ids of each kind and a "+N more" line each', async () => {
      const {code, screen} = await Screen.start(['taskflow:stuck:fix', '--dry-run'], env()).then((s) => s.exit())
      expect(code, screen).to.equal(0)
      const lines = screen.split('\n')
      expect(lines.length, screen).to.be.at.most(35)
      expect(lines[0]).to.equal('Found 42 stuck tasks to fix')
      expect(lines[1]).to.equal('Scanned 52 tasks')
      expect(lines[2]).to.equal('PENDING tasks in no queue (re-queue on tasks:pending:primary): 30')
      expect(
        lines.slice(3, 8).every((l) => /^ {3}[0-9a-f-]{36}$/.test(l)),
        screen,
      ).to.equal(true)
      expect(lines[8]).to.equal('   +25 more: --limit 30 to list them all')
      expect(lines[9]).to.equal('ACTIVE tasks stuck (mark FAILED, push to tasks:pending:retry): 12')
      expect(
        lines.slice(10, 15).every((l) => /^ {3}[0-9a-f-]{36}: /.test(l)),
        screen,
      ).to.equal(true)
      expect(lines[15]).to.equal('   +7 more: --limit 30 to list them all')
      expectTidy(screen)
    })

    it('--limit lists every id; one stuck task is "1 stuck task"', async () => {
      const all = await runOps(['taskflow:stuck:fix', '--dry-run', '--limit', '30'], env())
      expect(all.code, all.stderr).to.equal(0)
      expect(all.stdout.split('\n').filter((l) => /^ {3}[0-9a-f-]{36}/.test(l))).to.have.length(42)
      expect(all.stdout).not.to.contain('more:')
      await server.redis.flushdb()
      await writeTask(server.redis, {state: 'PENDING'}, {count: true, queue: 'none'})
      const one = await runOps(['taskflow:stuck:fix', '--dry-run'], env())
      expect(one.stdout.split('\n').slice(0, 2)).to.deep.equal(['Found 1 stuck task to fix', 'Scanned 1 task'])
    })
  })
})
