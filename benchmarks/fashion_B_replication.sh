#!/usr/bin/env bash
# Issue 5: protocol B of benchmarks/fashion_canvas.py on three NEW seeds (3, 4, 5), fixed on 2026-12-03
# before any of its runs. A confirmatory replication, not a new protocol:
#   none           the supervised baseline (protocol B: 100 labelled canvases, 3,000 iterations)
#   cutmix         the paper's CutMix (protocol B exactly)
#   cutmix_colour  CutMix with --aug-strong-colour at its defaults: the variant that met the targets on
#                  seeds 0-2, chosen AFTER protocol B's results; these seeds test it on data it was not chosen on
# Every run: 2 threads, one run at a time, in the order seed 3 (none, cutmix, cutmix_colour), seed 4, seed 5,
# so that a partial table is balanced. Reported as they come (README, fashion_canvas benchmark): per seed, the
# mean over seeds 3-5, and the targets (ahead on every seed, >= 3 points on average, <= 15 min per run)
# checked on these seeds alone; the issue's own benchmark stays protocol B on seeds 0-2.
# Finished runs are kept; a stopped one (checkpoint.pt, no final.json) is resumed, so run it again to continue.
# Usage: bash benchmarks/fashion_B_replication.sh OUT_DIR [SEED ...]
set -euo pipefail
out=$1; shift
seeds=("${@:-3 4 5}")
export OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE
mkdir -p "$out"
for seed in ${seeds[@]}; do
    for method in none cutmix cutmix_colour; do
        run=$out/$method-s$seed
        if [[ -f $run/final.json ]]; then echo "kept $run"; continue; fi
        reg=${method%_colour}
        extra=()
        [[ $method == cutmix_colour ]] && extra=(--aug-strong-colour)
        start=$(date +%s)
        if [[ -f $run/checkpoint.pt ]]; then  # stopped (e.g. the session ended): continued exactly from its checkpoint
            python train_seg_semisup.py --resume --out-dir "$run" >> "$run.log" 2>&1
            echo "$method seed $seed: resumed, $(( $(date +%s) - start )) s wall for this part" | tee -a "$out/wall.txt"
            continue
        fi
        python train_seg_semisup.py --dataset fashion_canvas --reg "$reg" --seed "$seed" --split-seed "$seed" \
            --n-sup 100 --iters 3000 --threads 2 "${extra[@]}" --out-dir "$run" --overwrite > "$run.log" 2>&1
        echo "$method seed $seed: $(( $(date +%s) - start )) s wall" | tee -a "$out/wall.txt"
    done
done
