#!/usr/bin/env bash
# bench/capacity.sh: each term of the capacity formula (../shared/CAPACITY.md, tools/capacity/formula.h) made the
# binding one in turn, the real limit measured beside tern-capacity's prediction and the published constants'.
#
#   bench/capacity.sh                          # all four terms (about a minute)
#   bench/capacity.sh fds                      # one of cpu, fds, memory, bandwidth
#   bench/capacity.sh --fd-limits 512 --memory-mb 32 --out /tmp/cap memory fds
#   bench/capacity.sh --nice -20 cpu           # where other programs' CPU hogs share the machine
#
# Needs root, prlimit, taskset, the cgroup v1 memory controller, ip netns and tc (iproute2), and build/bin/tern-echo,
# tern-load and tern-capacity. The driver is bench/capacity.py (run with Debian's python3); its --help says what each
# term measures. It removes what it creates (cgroup, network namespace, servers) on exit, failure and Ctrl-C included.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec /usr/bin/python3 "$here/capacity.py" "$@"
