/**
 * What the suite needs on the machine besides Node.js, by Debian/Ubuntu package: the one
 * list behind the README's install line, the line the suite prints first when some are
 * missing, and the one-line failure of a test that needs a missing one.
 */
import {existsSync} from 'node:fs'

import {which} from './servers.js'

interface Requirement {
  /** The apt package that provides it. */
  package: string
  /** What needs it, in a few words. */
  for: string
  present(): boolean
}

/** A server given by URL, or a container runtime testcontainers may find, stands in for local binaries. */
const servers = (env: string) => () => Boolean(process.env[env]) || Boolean(process.env.DOCKER_HOST) || existsSync('/var/run/docker.sock')

export const REQUIREMENTS: Requirement[] = [
  {
    package: 'postgresql',
    for: 'throwaway PostgreSQL servers (initdb, postgres)',
    present: () => Boolean(which('initdb') && which('postgres')) || servers('OPS_TEST_DATABASE_URL')(),
  },
  {
    package: 'redis-server',
    for: 'throwaway Redis servers',
    present: () => Boolean(which('redis-server')) || servers('OPS_TEST_REDIS_URL')(),
  },
  {
    package: 'redis-tools',
    for: 'redis-cli, which joins the throwaway Redis Cluster',
    present: () => Boolean(which('redis-cli')) || Boolean(process.env.OPS_TEST_REDIS_CLUSTER_URL),
  },
  {package: 'bash-completion', for: 'bash completion of command ids with ":"', present: () => existsSync(BASH_COMPLETION)},
  {package: 'zsh', for: 'the zsh completion tests', present: () => Boolean(which('zsh'))},
  {package: 'tmux', for: 'the tests that read a terminal screen', present: () => Boolean(which('tmux'))},
  {package: 'bsdutils', for: "util-linux script, the prompt tests' pseudo-terminal", present: () => Boolean(which('script'))},
  {package: 'openssl', for: 'the Redis TLS tests (pending without it)', present: () => Boolean(which('openssl'))},
  {
    package: 'pgbouncer',
    for: 'the tests of taskmanager commands behind a pooler in transaction mode',
    present: () => Boolean(which('pgbouncer')) || existsSync('/usr/sbin/pgbouncer'),
  },
]

export const BASH_COMPLETION = '/usr/share/bash-completion/bash_completion'

/** The install line that the README's Requirements give, for whatever is missing. */
export function installLine(packages: string[]): string {
  return `sudo apt-get install -y ${packages.join(' ')}`
}

export function missingPackages(): string[] {
  return REQUIREMENTS.filter((r) => !r.present()).map((r) => r.package)
}

/** Fails the calling test (or hook) at once with one clear line when `pkg` is missing. */
export function needPackage(pkg: string): void {
  const requirement = REQUIREMENTS.find((r) => r.package === pkg)
  if (!requirement) throw new Error(`unknown requirement ${pkg}`)
  if (!requirement.present()) throw packageMissing(pkg, requirement.for)
}

/** The one line a test fails with when `pkg` is not installed. */
export function packageMissing(pkg: string, neededFor: string): Error {
  return new Error(`${pkg} is not installed (needed for ${neededFor}): ${installLine([pkg])} — see the README's Requirements`)
}
