#!/usr/bin/env bash
# Gather jmt_jax and every package it needs as wheels in one folder, on a machine with
# internet, for a cluster without it (install there with launch/install_offline.sh).
#
#   launch/wheels.sh [--dry-run] DEST [EXTRA]
#   PLATFORM=manylinux_2_28_x86_64 PYTHON_VERSION=3.11 launch/wheels.sh wheels cuda12
#
# EXTRA: cuda12 (NVIDIA GPUs) or tpu (Cloud TPU VMs) adds JAX's accelerator packages
# (several GB for cuda12); none: JAX for CPUs only. PLATFORM (default: manylinux up to
# glibc 2.28, x86_64) and PYTHON_VERSION (default: this Python's) name the cluster's nodes,
# so the wheels may be gathered on another kind of machine. Packages published only as
# source are built here into wheels; such a package must be pure Python (as `promise`,
# which tensorflow-datasets needs, is) unless this machine's platform is the cluster's.
# PYTHON picks the interpreter whose pip runs (default python3).
set -euo pipefail

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1
  shift
fi
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 [--dry-run] DEST [cuda12|tpu]" >&2
  exit 2
fi
dest=$1
extra=${2:-}
case "$extra" in
  ""|cuda12|tpu) ;;
  *) echo "error: unknown extra '$extra': use cuda12 or tpu (or none, for CPUs)" >&2; exit 2 ;;
esac
python=${PYTHON:-python3}
platform=${PLATFORM:-manylinux_2_28_x86_64}
version=${PYTHON_VERSION:-$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')}
repo=$(cd "$(dirname "$0")/.." && pwd)

# pip takes a manylinux tag as it is: name every older glibc the wheels may be built for.
platforms=("--platform" "$platform")
if [[ "$platform" =~ ^manylinux_2_([0-9]+)_(.+)$ ]]; then
  for ((glibc = 17; glibc < BASH_REMATCH[1]; glibc++)); do
    platforms+=("--platform" "manylinux_2_${glibc}_${BASH_REMATCH[2]}")
  done
  platforms+=("--platform" "manylinux2014_${BASH_REMATCH[2]}")
fi
target=(--only-binary=:all: "${platforms[@]}" --python-version "$version" --implementation cp)

run() {
  if [ "$dry_run" -eq 1 ]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}

run mkdir -p "$dest"
run "$python" -m pip wheel --quiet --no-deps --wheel-dir "$dest" "$repo"
wheel="$dest/jmt_jax-$(cd "$repo" && "$python" setup.py --version 2>/dev/null)-py3-none-any.whl"
requirement="$wheel${extra:+[$extra]}"
# The packages that have no wheel: resolved here, built here (pure Python: any platform).
report="$dest/.resolved.json"
run "$python" -m pip install --quiet --dry-run --ignore-installed --report "$report" "$requirement"
if [ "$dry_run" -eq 0 ]; then
  mapfile -t sources < <("$python" - "$report" <<'PY'
import json, sys
for item in json.load(open(sys.argv[1]))["install"]:
  if not item["download_info"]["url"].endswith(".whl"):
    print(f"{item['metadata']['name']}=={item['metadata']['version']}")
PY
)
  rm -f "$report"
  if [ "${#sources[@]}" -gt 0 ]; then
    "$python" -m pip wheel --quiet --no-deps --wheel-dir "$dest" "${sources[@]}"
  fi
fi
run "$python" -m pip download --quiet --dest "$dest" --find-links "$dest" "${target[@]}" \
  "$requirement"
if [ "$dry_run" -eq 0 ]; then
  echo "$(find "$dest" -name '*.whl' | wc -l) wheels in $dest ($(du -sh "$dest" | cut -f1)) for" \
    "Python $version on $platform; on the cluster: launch/install_offline.sh $dest $extra"
fi
