#!/usr/bin/env bash
# Is a slow fashion_canvas run the code or the host? Protocol-B CutMix (seed 0, --n-sup 100, 2 threads) for 50
# and 250 iterations, evaluation only at the end, with the code of an older commit and with this checkout,
# back to back, ROUNDS times; seconds per iteration = (t250 - t50) / 200 (setup and evaluation cancel).
# A training process to pause meanwhile (e.g. a running benchmark) may be given: it is sent SIGSTOP, then SIGCONT.
# Used on 2026-12-03 with OLD_COMMIT=8923d79 (protocol B's runs): benchmarks/results/fashion_canvas_B_replication/speed_ab.txt.
# Usage: bash benchmarks/fashion_speed_ab.sh OLD_COMMIT [PID_TO_PAUSE]    (ROUNDS=2 by default)
set -euo pipefail
old_commit=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
mkdir "$work/old"
git -C "$repo" archive "$old_commit" | tar -x -C "$work/old"
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
if [[ -n ${2:-} ]]; then kill -STOP "$2"; trap 'kill -CONT '"$2" EXIT; fi
echo "# round, code, iterations, wall seconds"
for round in $(seq "${ROUNDS:-2}"); do
  for code in old new; do
    dir=$work/old; [[ $code == new ]] && dir=$repo
    for iters in 50 250; do
      start=$(date +%s.%N)
      (cd "$dir" && python train_seg_semisup.py --dataset fashion_canvas --reg cutmix --seed 0 --split-seed 0 \
          --n-sup 100 --iters "$iters" --eval-every 100000 --threads 2 --out-dir "$work/$code-$iters" --overwrite \
          > "$work/$code-$iters.log" 2>&1)
      echo "$round $code $iters $(python -c "import time; print(round(time.time() - $start, 2))")"
    done
  done
done
rm -rf "$work"
