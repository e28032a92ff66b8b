#!/usr/bin/env bash
# Train (or resume) one config as a multi-node GPU job under SLURM: one process per GPU,
# joined through `--distributed` (JAX reads the SLURM environment), resubmitted after
# preemption or a time limit.
#
#   launch/slurm_gpu.sh [--dry-run] NODES GPUS_PER_NODE CONFIG WORKDIR [main.py flags...]
#   launch/slurm_gpu.sh --dry-run 2 8 configs/affwild2.py:data_dir=/data/affwild2 /shared/affwild2
#
# WORKDIR must be on a file system every node sees. SLURM sends SIGTERM two minutes before
# the time limit (and on preemption); training then saves a checkpoint and exits with
# status 75, and the job requeues itself to resume from it. Extra sbatch options go in
# SBATCH_FLAGS (e.g. "--partition=gpu --time=24:00:00"); PYTHON picks the interpreter of
# the environment jmt_jax is installed in (default python3), with its GPU extra:
#   python3 -m venv .venv && .venv/bin/pip install -e ".[cuda12]"
# On a cluster without internet, WHEELS names a folder launch/wheels.sh gathered (with the
# cuda12 extra): jmt_jax is first installed from it into PYTHON's environment by
# launch/install_offline.sh, which keeps a JAX the environment already has.
set -euo pipefail

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1
  shift
fi
if [ $# -lt 4 ]; then
  echo "usage: $0 [--dry-run] NODES GPUS_PER_NODE CONFIG WORKDIR [main.py flags...]" >&2
  exit 2
fi
nodes=$1
gpus=$2
config=$3
workdir=$4
shift 4
python=${PYTHON:-python3}

train=("$python" -m jmt_jax.main --config="$config" --workdir="$workdir" --distributed "$@")
job=$(cat <<JOB
#!/usr/bin/env bash
#SBATCH --job-name=jmt_jax
#SBATCH --nodes=$nodes
#SBATCH --ntasks-per-node=$gpus
#SBATCH --gpus-per-node=$gpus
#SBATCH --signal=TERM@120
#SBATCH --requeue
#SBATCH --output=$workdir/slurm-%j.out
status=0
srun --kill-on-bad-exit=1 $(printf '%q ' "${train[@]}") || status=\$?
if [ "\$status" -eq 75 ]; then
  scontrol requeue "\$SLURM_JOB_ID"
fi
exit "\$status"
JOB
)

install=()
if [ -n "${WHEELS:-}" ]; then
  install=(env PYTHON="$python" "$(dirname "$0")/install_offline.sh" "$WHEELS" cuda12)
fi

script="$workdir/slurm_job.sh"
read -r -a extra <<< "${SBATCH_FLAGS:-}"
if [ "$dry_run" -eq 1 ]; then
  if [ "${#install[@]}" -gt 0 ]; then
    printf '%q ' "${install[@]}"
    echo
  fi
  echo "# $script:"
  echo "$job"
  printf '%q ' sbatch "${extra[@]}" "$script"
  echo
  exit 0
fi
if [ "${#install[@]}" -gt 0 ]; then
  "${install[@]}"
fi
mkdir -p "$workdir"
echo "$job" > "$script"
sbatch "${extra[@]}" "$script"
