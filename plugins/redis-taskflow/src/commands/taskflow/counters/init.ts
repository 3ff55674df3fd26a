import CountersSync from './sync.js'

export default class CountersInit extends CountersSync {
  static override summary = 'Initialize the state counters from the task hashes.'

  static override description = `Initialize the state counters from the task hashes (initialize_counters.py).

Run once when deploying the counter-based monitoring. Same engine as
taskflow:counters:sync: counts every task:* hash by state and moves each
metrics:tasks:state:* counter to it with INCRBY (a missing counter counts as 0).`

  static override examples = ['<%= config.bin %> taskflow:counters:init --dry-run', '<%= config.bin %> taskflow:counters:init --force']

  protected override readonly wording = {
    analyzing: 'Initializing Redis task state counters from the task hashes...',
    noun: 'counters to initialize',
  }
}
