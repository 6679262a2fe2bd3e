#!/usr/bin/env bash
# bench/controller.sh: the controller's targets on real cgroups: following a quota change, a 1-core and a 1.5-core
# quota under load against static counts, and hill/latency under a load step, with a PNG plot (gnuplot).
#
#   bench/controller.sh                      # every scenario, 3 rounds (about 6 minutes)
#   bench/controller.sh follow quota1        # some of them
#   bench/controller.sh --rounds 5 --out /tmp/ctl
#
# Needs root and a cgroup cpu controller (v1, or v2 with cpu enabled). The driver is bench/controller.py (run with
# Debian's python3); its --help lists the options and what each scenario measures.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec /usr/bin/python3 "$here/controller.py" "$@"
