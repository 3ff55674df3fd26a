import {createHash} from 'node:crypto'

import type {Redis} from 'ioredis'

import {quiet, SCAN_COUNT} from './scan.js'

/** What a task key held when it was read: its state field, `NO_STATE` for a hash without one, `GONE` for a deleted key. */
export type StateReading = string | typeof NO_STATE | typeof GONE
export const NO_STATE = null
export const GONE = undefined

/** Keys per script call: about a millisecond of server time on a 2-core machine, so the server never stalls. */
export const READ_CHUNK = 500

/** SCAN COUNT of one scan-and-read call: about 1,000 keys, 2-3 ms of server time on a 2-core machine. */
export const STATE_SCAN_COUNT = SCAN_COUNT

/**
 * HGET state for many keys in one read-only call, packed into one reply
 * string: a pipelined HGET per key costs the client a command object and a
 * reply each, which made a million-task census 1.7x slower than merely
 * listing the keys. "\1" marks a hash without a state field, "\0" a key
 * deleted since the SCAN. (redis.call, not pcall: 15% cheaper per key; a key
 * that stopped being a hash fails the call, and that chunk is read the slow way.)
 */
const STATE_SCRIPT = `
local out = {}
local call = redis.call
for i = 1, #ARGV do
  local state = call('HGET', ARGV[i], 'state')
  if state then
    out[i] = state
  elseif call('EXISTS', ARGV[i]) == 1 then
    out[i] = '\\1'
  else
    out[i] = '\\0'
  end
end
return table.concat(out, '\\n')`
const STATE_SCRIPT_SHA = createHash('sha1').update(STATE_SCRIPT).digest('hex')

/**
 * One SCAN step and the state of every key it returned, in one read-only call:
 * the keys never travel back to the server as arguments, and one round trip
 * replaces two (a tenth less server time than SCAN then STATE_SCRIPT). The keys
 * exist (the script is atomic), so there is no GONE here; "\1" marks a hash
 * without a state field. The states come back packed in one string.
 */
const SCAN_STATES_SCRIPT = `
local scanned = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3])
local keys = scanned[2]
local states = {}
local call = redis.call
for i = 1, #keys do
  states[i] = call('HGET', keys[i], 'state') or '\\1'
end
return {scanned[1], keys, table.concat(states, '\\n')}`
const SCAN_STATES_SCRIPT_SHA = createHash('sha1').update(SCAN_STATES_SCRIPT).digest('hex')

/** An error that means "no scripts for this connection": the server lacks EVAL_RO or the ACL forbids it. */
const SCRIPTS_UNAVAILABLE = /unknown command|NOPERM|not allowed|no permissions/i

/** Keys returned by one SCAN step, with what each one held. */
export interface StateBatch {
  keys: string[]
  readings: StateReading[]
}

/**
 * Reads the state of task keys through one node. Uses EVALSHA_RO (Redis 7:
 * the server itself refuses any write from it); where scripts are not allowed
 * (older server, ACL without EVAL_RO) it falls back to pipelined HGET.
 */
export class StateReader {
  private scripted = true

  constructor(private readonly node: Redis) {}

  async read(keys: string[]): Promise<StateReading[]> {
    if (keys.length === 0) return []
    if (this.scripted) {
      try {
        return await this.readScripted(keys)
      } catch (error) {
        if (/WRONGTYPE/.test(String(error))) return this.readPipelined(keys)
        if (!SCRIPTS_UNAVAILABLE.test(String(error))) throw error
        this.scripted = false
      }
    }
    return this.readPipelined(keys)
  }

  /**
   * Every key of this node matching `pattern`, batch by batch, with its state:
   * one scan-and-read call per SCAN step, the next one sent before the caller
   * works on the batch, so the server is never left waiting on the client.
   * Without scripts, or when a key of the step is not a hash (the script
   * fails), that step is a plain SCAN from the same cursor, then read().
   */
  async *scan(pattern: string, count = STATE_SCAN_COUNT): AsyncGenerator<StateBatch> {
    let pending = quiet(this.scanStep('0', pattern, count))
    for (;;) {
      const step = await pending
      // The next step goes out before this one is unpacked: the server works while the client does.
      if (step.cursor !== '0') pending = quiet(this.scanStep(step.cursor, pattern, count))
      const batch = await step.unpack()
      if (batch.keys.length > 0) yield batch
      if (step.cursor === '0') return
    }
  }

  /** One SCAN step: its next cursor as soon as the reply is in, its keys and states on unpack(). */
  private async scanStep(cursor: string, pattern: string, count: number): Promise<{cursor: string; unpack: () => Promise<StateBatch>}> {
    if (this.scripted) {
      try {
        const [next, keys, packed] = (await this.evalReadOnly(SCAN_STATES_SCRIPT, SCAN_STATES_SCRIPT_SHA, [cursor, pattern, count])) as [string, string[], string]
        return {cursor: next, unpack: () => this.unpackStates(keys, packed)}
      } catch (error) {
        if (SCRIPTS_UNAVAILABLE.test(String(error))) this.scripted = false
        else if (!/WRONGTYPE/.test(String(error))) throw error
      }
    }
    const [next, keys] = (await this.node.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', count)) as [string, string[]]
    const readings = quiet(this.read(keys))
    return {cursor: next, unpack: async () => ({keys, readings: await readings})}
  }

  private async unpackStates(keys: string[], packed: string): Promise<StateBatch> {
    const states = keys.length === 0 ? [] : packed.split('\n')
    // A state holding a newline would shift the parts: those keys are read again one by one.
    if (states.length !== keys.length) return {keys, readings: await this.read(keys)}
    return {keys, readings: states.map((s) => (s === '\u0001' ? NO_STATE : s))}
  }

  private async evalReadOnly(script: string, sha: string, args: (string | number)[]): Promise<unknown> {
    try {
      return await this.node.call('EVALSHA_RO', sha, 0, ...args)
    } catch (error) {
      if (!/NOSCRIPT/.test(String(error))) throw error
      return this.node.call('EVAL_RO', script, 0, ...args)
    }
  }

  private async readScripted(keys: string[]): Promise<StateReading[]> {
    const packed = (await this.evalReadOnly(STATE_SCRIPT, STATE_SCRIPT_SHA, keys)) as string
    const parts = packed.split('\n')
    // A state containing a newline would shift the parts: read that chunk the slow way.
    if (parts.length !== keys.length) return this.readPipelined(keys)
    return parts.map((part) => (part === '\u0001' ? NO_STATE : part === '\u0000' ? GONE : part))
  }

  private async readPipelined(keys: string[]): Promise<StateReading[]> {
    const pipeline = this.node.pipeline()
    for (const key of keys) pipeline.hget(key, 'state').exists(key)
    const replies = (await pipeline.exec()) ?? []
    const out: StateReading[] = []
    for (let i = 0; i < keys.length; i++) {
      const [stateError, state] = replies[2 * i]
      const [existsError, exists] = replies[2 * i + 1]
      if (existsError) throw existsError
      // WRONGTYPE: a task:* key that is not a hash has no state either.
      out.push(!stateError && state !== null ? String(state) : exists ? NO_STATE : GONE)
    }
    return out
  }
}
