#!/usr/bin/env bash
# Train (or resume) and then evaluate one config on this machine, on all its devices.
#
#   launch/single_host.sh CONFIG WORKDIR [extra main.py flags...]
#   launch/single_host.sh --dry-run configs/demo.py workdirs/demo
#
# Re-running the same command resumes from the newest checkpoint in WORKDIR.
set -euo pipefail

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1
  shift
fi
if [ $# -lt 2 ]; then
  echo "usage: $0 [--dry-run] CONFIG WORKDIR [main.py flags...]" >&2
  exit 2
fi
config=$1
workdir=$2
shift 2

run() {
  printf '%q ' "$@"
  echo
  if [ "$dry_run" -eq 0 ]; then
    "$@"
  fi
}

run python -m jmt_jax.main --config="$config" --workdir="$workdir" "$@"
run python -m jmt_jax.main --config="$config" --workdir="$workdir" --mode=eval "$@"
