/**
 * The real `ops` binary against a real PostgreSQL with Django's schema: the
 * output of clear_task_manager_queue, dry-run writing nothing, usage errors, interruptions
 * (SIGINT, SIGKILL, a dropped connection) followed by a re-run, and clear errors.
 */
import {expect} from 'chai'

import {
  collect,
  flat,
  parseJsonOutput,
  runOps,
  runOpsInTty,
  runOpsKilledWhen,
  scratchFile,
  spawnOps,
  waitForOutput,
  waitUntil,
} from '../../../test/helpers/cli.js'
import {generateTasks, insertTasks, rowTexts, taskRow, watch} from './helpers/django-fixture.js'
import {duringMigrationLock, terminateBackends, withAppRole, withDjangoDatabase} from './helpers/django-database.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('ops taskmanager:* (end to end)', function () {
  const django = withDjangoDatabase('ops_tm_cli')

  const seedExample = async () => {
    await django.reset()
    // clear_task_manager_queue's example: 6 SCHEDULED rows of breathecode.assignments.tasks.
    await insertTasks(
      django.db,
      Array.from({length: 6}, () => taskRow({status: 'SCHEDULED', task_module: 'breathecode.assignments.tasks'})),
    )
  }
  const deletedTuples = async () => {
    await django.db.query('SELECT pg_stat_force_next_flush()')
    await django.db.query('SELECT pg_stat_clear_snapshot()')
    const {rows} = await django.db.query(`SELECT n_tup_del::int AS n FROM pg_stat_user_tables WHERE relname = 'task_manager_taskmanager'`)
    return rows[0].n as number
  }
  const clear = (...args: string[]) => ['taskmanager:clear', '--database-url', django.url, ...args]
  const count = async (where = 'TRUE') =>
    (await django.db.query(`SELECT count(*)::int AS n FROM task_manager_taskmanager WHERE ${where}`)).rows[0].n as number

  it('a typo with --force is never run as its guess: Enter at "Did you mean taskmanager:clear?" deletes nothing (exit 2)', async () => {
    await seedExample()
    const before = await rowTexts(django.db)
    const result = await runOpsInTty(['taskmanager:claer', '--database-url', django.url, '--force'], '', {prompt: /Did you mean/})
    expect(flat(result.stdout)).to.contain(
      '"taskmanager:claer" is not an ops command, and taskmanager:clear changes data: ops does not run a destructive command it guessed',
    )
    expect(result.code, result.stdout).to.equal(2)
    expect(await rowTexts(django.db)).to.deep.equal(before)
  })

  it("prints clear_task_manager_queue's lines for a dry run and writes nothing (n_tup_del unchanged)", async () => {
    await seedExample()
    const before = await rowTexts(django.db)
    const deleted = await deletedTuples()
    const result = await runOps(clear('--status', 'SCHEDULED', '--task-module', 'breathecode.assignments.tasks', '--dry-run'))
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).to.contain(
      'Found 6 TaskManager records to delete\nTask Module: breathecode.assignments.tasks\n' +
        'Status: SCHEDULED\nUsing TypeORM in batches of 5,000',
    )
    expect(result.stdout).to.contain('DRY RUN MODE - No records will be deleted')
    await sleep(700) // let the CLI's backend report its statistics
    expect(await deletedTuples()).to.equal(deleted)
    expect(await rowTexts(django.db)).to.deep.equal(before)
  })

  it('prints "No TaskManager records found" and the summary blocks in clear_task_manager_queue\'s format', async () => {
    await seedExample()
    const result = await runOps(clear('--status', 'ERROR', '--show-summary', '--force'))
    expect(result.code, result.stderr).to.equal(0)
    expect(result.stdout).to.contain(`No TaskManager records found with the specified criteria

Current TaskManager status summary:
--------------------------------------------------
SCHEDULED: 6 records
--------------------------------------------------
Total: 6 records

Task Module Summary:
--------------------------------------------------
breathecode.assignments.tasks: 6 records
`)
  })

  it('rejects an unknown --status with exit 2 and lists the valid ones', async () => {
    const result = await runOps(clear('--status', 'FINISHED', '--force'))
    expect(result.code).to.equal(2)
    expect(flat(result.stderr)).to.contain('PENDING, DONE, CANCELLED, REVERSED, PAUSED, ABORTED, ERROR, SCHEDULED, ALL')
  })

  it('rejects a malformed --older-than with exit 2', async () => {
    const result = await runOps(clear('--older-than', 'a month', '--force'))
    expect(result.code).to.equal(2)
    expect(flat(result.stderr)).to.contain('Invalid --older-than "a month"')
  })

  for (const cursor of [false, true]) {
    it(`deletes with --force through ${cursor ? 'raw SQL (--use-cursor)' : 'TypeORM'} with link rows, reading DATABASE_URL`, async () => {
      await seedExample()
      const ids = await insertTasks(django.db, [
        taskRow({status: 'DONE'}),
        taskRow({status: 'SCHEDULED', task_module: 'breathecode.notify.tasks'}),
      ])
      const watched = (
        await django.db.query(`SELECT id::text FROM task_manager_taskmanager WHERE task_module = 'breathecode.assignments.tasks' LIMIT 2`)
      ).rows.map((r) => r.id)
      await watch(django.db, [...watched, ids[0]])
      const keep = [...(await rowTexts(django.db)).entries()].filter(([id]) => ids.includes(id))
      const args = [
        'taskmanager:clear',
        '--status',
        'SCHEDULED',
        '--task-module',
        'breathecode.assignments.tasks',
        '--force',
        ...(cursor ? ['--use-cursor'] : []),
      ]
      const result = await runOps(args, {env: {DATABASE_URL: django.url}})
      expect(result.code, result.stderr).to.equal(0)
      expect(result.stdout).to.contain(
        cursor
          ? 'Using raw SQL (pg) in batches of 5,000 (--use-cursor'
          : 'Using TypeORM in batches of 5,000 (fewer than 50,000 matching rows',
      )
      expect(result.stdout).to.contain('Watcher links: 2 rows of public.task_manager_taskwatcher_tasks')
      expect(result.stdout).to.contain('Successfully deleted 6 TaskManager records')
      expect([...(await rowTexts(django.db)).entries()]).to.deep.equal(keep)
      expect(
        (await django.db.query('SELECT taskmanager_id::text AS id FROM task_manager_taskwatcher_tasks')).rows.map((r) => r.id),
      ).to.deep.equal([ids[0]])
    })
  }

  it('prints one JSON document with --json, including what the batches did', async () => {
    await seedExample()
    const result = await runOps(clear('--force', '--json', '--use-cursor'))
    expect(result.code, result.stderr).to.equal(0)
    const doc = parseJsonOutput<{outcome: string; done: number; data: {method: string; execution: {batches: number; deleted: number}}}>(
      result,
    )
    expect(doc).to.include({outcome: 'done', done: 6})
    expect(doc.data.method).to.equal('raw-sql')
    expect(doc.data.execution.deleted).to.equal(6)
  })

  describe('interrupted runs', () => {
    const matching = `status = 'DONE'`
    let keep: [string, string][]
    let total: number

    beforeEach(async () => {
      await django.reset()
      await generateTasks(django.db, 20_000)
      total = await count(matching)
      const done = new Set((await django.db.query(`SELECT id::text FROM task_manager_taskmanager WHERE ${matching}`)).rows.map((r) => r.id))
      keep = [...(await rowTexts(django.db)).entries()].filter(([id]) => !done.has(id))
    })

    /** Runs `args` and sends SIGINT (Ctrl-C) once the progress line ("n / total") is printed. */
    const interruptedAfterProgress = async (args: string[]) => {
      const child = spawnOps(args)
      child.stdin?.end()
      const done = collect(child)
      await waitForOutput(child, /[\d,]+ \/ [\d,]+/)
      child.kill('SIGINT')
      return done
    }
    const slow = () =>
      clear('--status', 'DONE', '--force', '--use-cursor', '--batch-size', '200', '--target-batch-ms', '0', '--sleep-ms', '40')
    const finishAndCheck = async () => {
      const rerun = await runOps(clear('--status', 'DONE', '--force'))
      expect(rerun.code, rerun.stderr).to.equal(0)
      expect(await count(matching)).to.equal(0)
      expect([...(await rowTexts(django.db)).entries()]).to.deep.equal(keep)
      expect(await count()).to.equal(keep.length)
      const orphans = await django.db.query(
        `SELECT count(*)::int AS n FROM task_manager_taskwatcher_tasks l
           LEFT JOIN task_manager_taskmanager t ON t.id = l.taskmanager_id WHERE t.id IS NULL`,
      )
      expect(orphans.rows[0].n).to.equal(0)
    }

    it('SIGINT mid-run: the batch in flight commits, exit 130, and a re-run finishes with exactly the matching rows gone', async () => {
      const result = await interruptedAfterProgress(slow())
      expect(result.code, result.stderr).to.equal(130)
      const reported = Number(/Interrupted: deleted ([\d,]+) of ([\d,]+) TaskManager records/.exec(result.stderr)![1].replace(/,/g, ''))
      expect(reported % 200).to.equal(0)
      expect(reported).to.be.greaterThan(0).and.lessThan(total)
      expect(await count(matching)).to.equal(total - reported)
      await finishAndCheck()
    })

    it("SIGINT while the plan waits on a migration's lock: its query is cancelled on the server, exit 130, nothing changed", async () => {
      const before = await rowTexts(django.db)
      const opsBackends = async (waiting = false) =>
        (
          await django.db.query(
            `SELECT count(*)::int AS n FROM pg_stat_activity
              WHERE application_name = 'ops taskmanager:clear' AND datname = current_database()
                AND (wait_event_type = 'Lock' OR NOT $1)`,
            [waiting],
          )
        ).rows[0].n as number
      await duringMigrationLock(django.url, async (untilGone) => {
        for (const json of [false, true]) {
          const child = spawnOps(clear('--status', 'DONE', '--force', ...(json ? ['--json'] : [])))
          child.stdin?.end()
          const done = collect(child)
          await waitUntil(async () => (await opsBackends(true)) === 1, 'ops waiting on the lock', done)
          child.kill('SIGINT')
          const result = await done
          expect(result.code, result.stderr).to.equal(130)
          if (json) expect(parseJsonOutput<{outcome: string}>(result).outcome).to.equal('interrupted')
          else expect(result.stderr).to.contain('Interrupted (SIGINT) while planning: nothing was changed.')
          // Cancelled while the lock is still held: no backend of ops waits for it, to count after it, once ops has exited.
          expect(await untilGone(opsBackends)).to.equal(0)
        }
      })
      expect(await rowTexts(django.db)).to.deep.equal(before)
    })

    it('a connection closed while the prompt waited (idle_session_timeout) is opened again once confirmed: clear and restore', async () => {
      // What a server's idle_session_timeout or a DBA does to a session idle at the prompt: ends it.
      const closeWhileAsking = (application: string) => async () => {
        await terminateBackends(django.db, application)
        await waitUntilGone(application)
      }
      const waitUntilGone = async (application: string) => {
        for (let i = 0; i < 100; i++) {
          const {rows} = await django.db.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [application])
          if (rows[0].n === 0) return
          await sleep(50)
        }
        throw new Error(`${application} is still connected`)
      }
      for (const path of [['--use-cursor'], []]) {
        await seedExample()
        const ids = await insertTasks(
          django.db,
          Array.from({length: 30}, () => taskRow({status: 'DONE'})),
        )
        await watch(django.db, ids.slice(0, 3))
        const before = await rowTexts(django.db)
        const done = await count(`status = 'DONE'`)
        const archived = ['--archive-table', 'cleared_tasks']
        const result = await runOpsInTty(clear('--status', 'DONE', ...path, ...archived), 'yes', {
          beforeAnswer: closeWhileAsking('ops taskmanager:clear'),
        })
        expect(result.code, result.stdout).to.equal(0)
        expect(result.stdout).to.contain(`Successfully deleted ${done} TaskManager records`)
        expect(await count(`status = 'DONE'`)).to.equal(0)
        const restored = await runOpsInTty(
          ['taskmanager:restore', '--database-url', django.url, '--from-archive-table', 'cleared_tasks'],
          'yes',
          {beforeAnswer: closeWhileAsking('ops taskmanager:restore')},
        )
        expect(restored.code, restored.stdout).to.equal(0)
        expect(await rowTexts(django.db)).to.deep.equal(before)
        await django.db.query('DROP TABLE cleared_tasks')
      }
    })

    it('a second clear while one runs warns that the two compete for the same rows, and both end with them gone', async () => {
      const first = spawnOps(slow())
      first.stdin?.end()
      const running = collect(first)
      await waitForOutput(first, /[\d,]+ \/ [\d,]+/)
      const second = await runOps(clear('--status', 'DONE', '--force'))
      expect(second.code, second.stderr).to.equal(0)
      expect(flat(second.stderr)).to.match(
        /Warning: ops taskmanager:clear is also running on this database \(backend \d+, since [\d-]+T[\d:.]+Z.*\): where both match the same rows, each reports the rows the other deleted as skipped\./,
      )
      const result = await running
      expect(result.code, result.stderr).to.equal(0)
      await finishAndCheck()
    })

    it('SIGKILL mid-run: the open batch rolls back, and a re-run finishes', async () => {
      await runOpsKilledWhen(slow(), async () => (await count(matching)) <= total - 1000)
      const left = await count(matching)
      expect(left).to.be.greaterThan(0)
      expect((total - left) % 200).to.equal(0) // whole batches only
      await finishAndCheck()
    })

    it('a dropped connection (pg_terminate_backend) fails clearly with exit 1, and a re-run finishes', async () => {
      const child = spawnOps(slow())
      child.stdin?.end()
      const done = collect(child)
      while ((await count(matching)) > total - 1000) await sleep(20)
      await terminateBackends(django.db, 'ops taskmanager:clear')
      const result = await done
      expect(result.code).to.equal(1)
      expect(result.stderr).to.match(/connection|terminat/i)
      expect(flat(result.stderr)).to.contain('Run the same command again to finish')
      await finishAndCheck()
    })

    it('--archive after an interrupted run and its re-run holds every deleted row', async () => {
      const {readFileSync} = await import('node:fs')
      const file = scratchFile('done.jsonl')
      const expected = (
        await django.db.query(`SELECT row_to_json(t)::text AS row FROM task_manager_taskmanager t WHERE ${matching} ORDER BY id`)
      ).rows.map((r) => r.row)
      expect((await interruptedAfterProgress([...slow(), '--archive', file])).code).to.equal(130)
      const rerun = await runOps(clear('--status', 'DONE', '--force', '--archive', file))
      expect(rerun.code, rerun.stderr).to.equal(0)
      expect(readFileSync(file, 'utf8').trimEnd().split('\n')).to.deep.equal(expected)
    })
  })

  describe('clear errors', () => {
    it('names host and port and masks the password when the server is unreachable', async () => {
      const result = await runOps(['taskmanager:clear', '--database-url', 'postgres://django:hunter2secret@127.0.0.1:1/app', '--force'])
      expect(result.code).to.equal(1)
      expect(flat(result.stderr)).to.contain('Could not connect to PostgreSQL at 127.0.0.1:1')
      expect(result.stdout + result.stderr).not.to.contain('hunter2secret')
    })

    it('says which table is missing, in which database and where', async () => {
      await seedExample()
      const result = await runOps(clear('--table', 'public.task_manager_tasks', '--force'))
      expect(result.code).to.equal(1)
      expect(flat(result.stderr)).to.match(
        /Table public\.task_manager_tasks does not exist in database "ops_tm_cli\w+" at 127\.0\.0\.1:\d+/,
      )
    })

    it('refuses a --replica-url that is no standby before the plan, in a dry run too (exit 2)', async () => {
      await seedExample()
      const before = await rowTexts(django.db)
      for (const mode of ['--dry-run', '--force']) {
        // The primary itself: reachable, but pg_is_in_recovery() is false.
        const result = await runOps(clear('--status', 'SCHEDULED', '--max-replica-lag', '5s', '--replica-url', django.url, mode))
        expect(result.code, result.stdout + result.stderr).to.equal(2)
        expect(flat(result.stderr)).to.match(/--replica-url postgres:\/\/\S+ is not a standby \(pg_is_in_recovery\(\) is false\)/)
        expect(result.stdout, mode).not.to.contain('Found')
      }
      expect(await rowTexts(django.db)).to.deep.equal(before)
    })

    it('refuses --max-replica-lag and --pause-on-autovacuum to a role that cannot see what they watch, not with pg_monitor', async () => {
      await seedExample()
      const before = await rowTexts(django.db)
      await withAppRole(django.db, django.url, async (asRole, role) => {
        const args = (...watch: string[]) => ['taskmanager:clear', '--database-url', asRole, '--status', 'SCHEDULED', ...watch, '--force']
        const lag =
          `--max-replica-lag reads the replicas' replay positions from pg_stat_replication, which role ${role} is not ` +
          'allowed to see (it sees 0 standbys there, with every position hidden)'
        const vacuum =
          `--pause-on-autovacuum reads from pg_stat_progress_vacuum which table a vacuum works on, which role ${role} is not ` +
          'allowed to see for autovacuum (it runs as another role: the run would never pause)'
        for (const [watch, said] of [
          [['--max-replica-lag', '5s'], [lag]],
          [['--pause-on-autovacuum'], [vacuum]],
          [
            ['--max-replica-lag', '5s', '--pause-on-autovacuum'],
            [lag, vacuum],
          ],
        ] as const) {
          const refused = await runOps(args(...watch))
          expect(refused.code, refused.stdout + refused.stderr).to.equal(2)
          for (const text of said) expect(flat(refused.stderr)).to.contain(text)
          expect(flat(refused.stderr)).to.contain(`: nothing was deleted. Try this: GRANT pg_monitor TO "${role}"`)
          expect(await rowTexts(django.db)).to.deep.equal(before)
        }
        await django.db.query(`GRANT pg_monitor TO ${role}`)
        const allowed = await runOps(args('--max-replica-lag', '5s', '--pause-on-autovacuum'))
        expect(allowed.code, allowed.stdout + allowed.stderr).to.equal(0)
        expect(await count(`status = 'SCHEDULED'`)).to.equal(0)
      })
    })

    it('refuses to clear or restore through a read-only session (default_transaction_read_only) before the plan (exit 2)', async () => {
      await seedExample()
      const before = await rowTexts(django.db)
      await withAppRole(django.db, django.url, async (asRole, role) => {
        await django.db.query(`ALTER ROLE ${role} SET default_transaction_read_only = on`)
        const restore = ['taskmanager:restore', '--from-archive-table', 'task_manager_archive']
        for (const command of [['taskmanager:clear', '--status', 'SCHEDULED'], restore]) {
          const result = await runOps([...command, '--database-url', asRole, '--force'])
          expect(result.code, result.stdout + result.stderr).to.equal(2)
          expect(flat(result.stderr)).to.contain(`is read-only (default_transaction_read_only is on): ${command[0]} can only plan there`)
        }
        const dry = await runOps(['taskmanager:clear', '--status', 'SCHEDULED', '--database-url', asRole, '--dry-run'])
        expect(dry.code, dry.stderr).to.equal(0)
        expect(dry.stdout).to.contain('Found 6 TaskManager records to delete')
      })
      expect(await rowTexts(django.db)).to.deep.equal(before)
    })

    it('names an unreachable --replica-url, masks its password and deletes nothing (exit 1)', async () => {
      await seedExample()
      const before = await rowTexts(django.db)
      const replica = 'postgres://ops:hunter2secret@127.0.0.1:1/app'
      const result = await runOps(clear('--status', 'SCHEDULED', '--max-replica-lag', '5s', '--replica-url', replica, '--force'))
      expect(result.code, result.stdout + result.stderr).to.equal(1)
      expect(flat(result.stderr)).to.contain('Could not connect to PostgreSQL replica at 127.0.0.1:1')
      expect(result.stdout + result.stderr).not.to.contain('hunter2secret')
      expect(result.stdout).not.to.contain('Found')
      expect(await rowTexts(django.db)).to.deep.equal(before)
    })
  })

  describe('read-only commands', () => {
    it("taskmanager:summary prints clear_task_manager_queue's blocks and --json the same counts", async () => {
      await seedExample()
      const text = await runOps(['taskmanager:summary', '--database-url', django.url])
      expect(text.code, text.stderr).to.equal(0)
      expect(text.stdout).to.contain('SCHEDULED: 6 records\n--------------------------------------------------\nTotal: 6 records')
      const json = parseJsonOutput<{total: number; statuses: unknown[]; modules: unknown[]}>(
        await runOps(['taskmanager:summary', '--database-url', django.url, '--json']),
      )
      expect(json.total).to.equal(6)
      expect(json.statuses).to.deep.equal([{status: 'SCHEDULED', count: 6}])
      expect(json.modules).to.deep.equal([{taskModule: 'breathecode.assignments.tasks', count: 6}])
    })

    it('taskmanager:stuck groups old SCHEDULED/PENDING rows by module and name, with samples', async () => {
      await django.reset()
      const old = (hours: number) => new Date(Date.now() - hours * 3_600_000).toISOString()
      await insertTasks(django.db, [
        taskRow({status: 'SCHEDULED', task_module: 'breathecode.notify.tasks', task_name: 'async_deliver_hook', last_run: old(30)}),
        taskRow({status: 'PENDING', task_module: 'breathecode.notify.tasks', task_name: 'async_deliver_hook', last_run: old(50)}),
        taskRow({status: 'PENDING', task_module: 'breathecode.payments.tasks', task_name: 'renew_consumables', last_run: old(26)}),
        taskRow({status: 'PENDING', task_module: 'breathecode.payments.tasks', task_name: 'renew_consumables', last_run: old(1)}),
        taskRow({status: 'DONE', task_module: 'breathecode.payments.tasks', task_name: 'renew_consumables', last_run: old(100)}),
      ])
      const text = await runOps(['taskmanager:stuck', '--database-url', django.url, '--hours', '24'])
      expect(text.code, text.stderr).to.equal(0)
      expect(text.stdout).to.contain('breathecode.notify.tasks.async_deliver_hook: 2 records (')
      expect(text.stdout).to.contain('breathecode.payments.tasks.renew_consumables: 1 record (PENDING 1)')
      const json = parseJsonOutput<{total: number; groups: {taskName: string; count: number; samples: unknown[]}[]}>(
        await runOps(['taskmanager:stuck', '--database-url', django.url, '--hours', '24', '--samples', '1', '--json']),
      )
      expect(json.total).to.equal(3)
      expect(json.groups.map((g) => [g.taskName, g.count, g.samples.length])).to.deep.equal([
        ['async_deliver_hook', 2, 1],
        ['renew_consumables', 1, 1],
      ])
    })
  })
})
