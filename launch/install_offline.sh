#!/usr/bin/env bash
# Install jmt_jax on a node without internet, from a folder of wheels that
# launch/wheels.sh gathered; pip is never sent to an index (--no-index).
#
#   launch/install_offline.sh [--dry-run] WHEELS [EXTRA]
#   python3 -m venv .venv && PYTHON=.venv/bin/python launch/install_offline.sh wheels cuda12
#
# A JAX the node already has (a cluster's module, a container's build) is kept, with its
# jaxlib and accelerator plugins, when jmt_jax's range admits it: the script says what it
# found and installs jmt_jax beside it without EXTRA. A JAX outside the range stops the
# install with a message; with no JAX, EXTRA (cuda12 or tpu) brings JAX's accelerator
# packages from WHEELS. PYTHON picks the interpreter to install into (default python3).
set -euo pipefail

dry_run=0
if [ "${1:-}" = "--dry-run" ]; then
  dry_run=1
  shift
fi
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 [--dry-run] WHEELS [cuda12|tpu]" >&2
  exit 2
fi
wheels=$1
extra=${2:-}
case "$extra" in
  ""|cuda12|tpu) ;;
  *) echo "error: unknown extra '$extra': use cuda12 or tpu (or none, for CPUs)" >&2; exit 2 ;;
esac
python=${PYTHON:-python3}
if [ ! -d "$wheels" ] || ! compgen -G "$wheels/jmt_jax-*.whl" > /dev/null; then
  echo "error: $wheels holds no jmt_jax wheel: gather it with launch/wheels.sh" >&2
  exit 1
fi
offline=(-m pip install --no-index --find-links "$wheels")

# What the node's JAX provides: "name==version" of jax, jaxlib and their plugins.
mapfile -t present < <("$python" - <<'PY'
import importlib.metadata as md
names = ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda12-pjrt", "jax-cuda13-plugin",
         "jax-cuda13-pjrt", "jax-rocm60-plugin", "jax-rocm60-pjrt", "libtpu")
for name in names:
  try:
    print(f"{name}=={md.version(name)}")
  except md.PackageNotFoundError:
    pass
PY
)
requirement=jmt_jax
constraints=()
if [ "${#present[@]}" -gt 0 ] && [[ "${present[0]}" == jax==* ]]; then
  echo "keeping the node's JAX: ${present[*]}"
  constraints_file=$(mktemp)
  trap 'rm -f "$constraints_file"' EXIT
  printf '%s\n' "${present[@]}" > "$constraints_file"
  constraints=(-c "$constraints_file")
  if ! "$python" "${offline[@]}" --quiet --dry-run "${constraints[@]}" jmt_jax > /dev/null 2>&1; then
    echo "error: the node's ${present[0]} is outside the range jmt_jax supports (setup.py):" \
      "use a JAX in range, or a Python environment without JAX" >&2
    exit 1
  fi
else
  requirement="jmt_jax${extra:+[$extra]}"
fi

cmd=("$python" "${offline[@]}" "${constraints[@]}" "$requirement")
if [ "$dry_run" -eq 1 ]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
"${cmd[@]}"
"$python" -c 'import jax, jmt_jax; print(f"jmt_jax installed with jax {jax.__version__} on {jax.devices()}")'
