#!/usr/bin/env bash
# Train (or resume) one config on a Cloud TPU VM pod slice: create the slice, copy this
# checkout to every worker, install, run the same command on all workers (they find each
# other through `--distributed`), and copy the results back.
#
#   launch/tpu_pod.sh [--dry-run] TPU_NAME ZONE ACCELERATOR_TYPE CONFIG WORKDIR [main.py flags...]
#   launch/tpu_pod.sh --dry-run jmt-v4 us-central2-b v4-32 configs/affwild2.py:data_dir=/data/affwild2 /mnt/shared/affwild2
#
# WORKDIR (checkpoints) and the data must be at the same path on every worker: a shared
# file system (e.g. Filestore NFS or a gcsfuse-mounted bucket), since every worker writes
# its shards of each checkpoint. Rerunning the command resumes from the newest checkpoint,
# so after a preemption the same command is all it takes (an existing slice is reused).
# Environment: PROJECT (gcloud project), TPU_VERSION (runtime, default tpu-ubuntu2204-base),
# SPOT=1 (spot capacity), RESULTS (local folder for results, default results/TPU_NAME),
# WHEELS (a folder launch/wheels.sh gathered with the tpu extra: the workers install from
# it with launch/install_offline.sh, never reaching a package index, for slices without
# internet access).
set -euo pipefail

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1
  shift
fi
if [ $# -lt 5 ]; then
  echo "usage: $0 [--dry-run] TPU_NAME ZONE ACCELERATOR_TYPE CONFIG WORKDIR [main.py flags...]" >&2
  exit 2
fi
name=$1
zone=$2
accelerator=$3
config=$4
workdir=$5
shift 5
version=${TPU_VERSION:-tpu-ubuntu2204-base}
results=${RESULTS:-results/$name}
project_flags=()
if [ -n "${PROJECT:-}" ]; then
  project_flags=(--project="$PROJECT")
fi
spot_flags=()
if [ "${SPOT:-0}" = "1" ]; then
  spot_flags=(--spot)
fi

run() {
  printf '%q ' "$@"
  echo
  if [ "$dry_run" -eq 0 ]; then
    "$@"
  fi
}

tpu() {
  run gcloud compute tpus tpu-vm "$@" --zone="$zone" "${project_flags[@]}"
}

remote_flags=""
for flag in "$@"; do
  remote_flags+=" $(printf '%q' "$flag")"
done
train_cmd="cd ~/jmt_jax && .venv/bin/python -m jmt_jax.main --config=$(printf '%q' "$config") \
--workdir=$(printf '%q' "$workdir") --distributed$remote_flags"

if [ "$dry_run" -eq 1 ] || ! gcloud compute tpus tpu-vm describe "$name" --zone="$zone" \
    "${project_flags[@]}" >/dev/null 2>&1; then
  tpu create "$name" --accelerator-type="$accelerator" --version="$version" "${spot_flags[@]}"
fi
run git archive --format=tar.gz --output=/tmp/jmt_jax.tar.gz HEAD
tpu scp /tmp/jmt_jax.tar.gz "$name":/tmp/jmt_jax.tar.gz --worker=all
install="mkdir -p ~/jmt_jax && tar -xzf /tmp/jmt_jax.tar.gz -C ~/jmt_jax && cd ~/jmt_jax && \
python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu]'"
if [ -n "${WHEELS:-}" ]; then
  run tar -czf /tmp/jmt_jax_wheels.tar.gz -C "$WHEELS" .
  tpu scp /tmp/jmt_jax_wheels.tar.gz "$name":/tmp/jmt_jax_wheels.tar.gz --worker=all
  install="mkdir -p ~/jmt_jax ~/jmt_jax_wheels && tar -xzf /tmp/jmt_jax.tar.gz -C ~/jmt_jax && \
tar -xzf /tmp/jmt_jax_wheels.tar.gz -C ~/jmt_jax_wheels && cd ~/jmt_jax && python3 -m venv .venv \
&& PYTHON=.venv/bin/python launch/install_offline.sh ~/jmt_jax_wheels tpu"
fi
tpu ssh "$name" --worker=all --command="$install"
tpu ssh "$name" --worker=all --command="$train_cmd"
run mkdir -p "$results"
tpu scp --recurse "$name":"$workdir/eval" "$name":"$workdir/metrics.jsonl" "$results" --worker=0
