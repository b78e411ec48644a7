#!/bin/bash
# Side-by-side benchmark of durus-rs and Python Durus 4.3, on this machine,
# in one session (see bench/compare.py --help for the options, e.g.
# --quick, --reps 3, --n-emb 300000, --only rw,w6,stress,pingpong).
#
#   PEER_BENCH   the peer harness folder (default: ../shared/bench)
#   PEER_PYTHON  a Python with durus 4.3 (default: .venv/bin/python, then
#                ../.venv/bin/python)
#
# Builds the release binary first. Writes WORK/results/compare.jsonl and
# compare.md (WORK: --work, default /tmp/durus-compare).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
peer=${PEER_BENCH:-../shared/bench}
py=${PEER_PYTHON:-}
if [ -z "$py" ]; then
  for p in .venv/bin/python ../.venv/bin/python; do
    if [ -x "$p" ]; then py=$p; break; fi
  done
fi
if [ -z "$py" ] || ! "$py" -c 'import durus' 2>/dev/null; then
  echo "compare.sh: need a Python with durus 4.3 (set PEER_PYTHON)" >&2
  exit 2
fi
if [ ! -f "$peer/bench_durus.py" ]; then
  echo "compare.sh: no bench_durus.py in $peer (set PEER_BENCH)" >&2
  exit 2
fi
cargo build --release -p durus-cli
exec timeout 7200 "$py" bench/compare.py --peer-dir "$peer" --python "$py" \
  --durus "$root/target/release/durus" "$@"
