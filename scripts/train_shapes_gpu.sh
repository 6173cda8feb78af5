#!/usr/bin/env bash
# The recipe of the shipped shapes-llava, on one GPU (about 11 minutes on an H200).
#
#   OUT=runs/shapes bash scripts/train_shapes_gpu.sh
#
# 1. tower-clip: a CLIP with shapes-clip's architecture and trainer, longer (1,732 steps of batch
#    256). It only initialises LLaVA's vision tower and is not shipped (shapes-clip is chosen by
#    scripts/sweep_shapes_clip.py: this CLIP's raw complementary map does not avoid the objects);
# 2. shapes-llava, stage 1: a LLaVA on tower-clip's tower, tuned at half the rate (3,942 x 128);
# 3. shapes-llava, stage 2: the same model on fresh scenes (seed 1), tower at the full rate (3,992 x 256).
# The step counts are those of the shipped model (each stage was given a time budget on an H200;
# --planned-steps fixes the cosine schedule those budgets produced). GPU kernels are not bitwise
# deterministic, so a rerun gives close, not identical, weights.
# Pools are large and static (--refresh 0) and built by many processes: a step on the GPU takes
# milliseconds, far less than rendering the scenes it consumes. DEVICE=cpu works too, slowly.
# Each model is packed into $OUT/<name>.tar with its training log; copy shapes-llava to
# src/attnprompt/shapes/models/ and run benchmarks/localization.py and benchmarks/vqa.py.
set -eu
OUT=${OUT:-runs/shapes}
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-14}
POOL=${POOL:-60000}
PY=${PY:-python3}
export PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT"
common=(--device "$DEVICE" --workers "$WORKERS" --pool "$POOL" --refresh 0 --warmup 200 --time-budget 36000
        --checkpoint-every 1000 --probe-scenes 0)
pack() {  # pack NAME: the model folder and its log, one file
  tar -cf "$OUT/$1.tar" -C "$OUT" "$1" "$1.log" && echo "packed $OUT/$1.tar"
}

$PY -m attnprompt.shapes.train_clip --out "$OUT/tower-clip" "${common[@]}" --seed 0 \
  --steps 1732 --planned-steps 1771 --batch-size 256 --lr 1e-3 --log "$OUT/tower-clip.log"
pack tower-clip
$PY -m attnprompt.shapes.train_llava --out "$OUT/shapes-llava-stage1" --clip "$OUT/tower-clip" "${common[@]}" \
  --seed 0 --steps 3942 --planned-steps 3951 --batch-size 128 --lr 1e-3 --tune-vision --vision-lr-scale 0.5 \
  --log "$OUT/shapes-llava-stage1.log"
$PY -m attnprompt.shapes.train_llava --out "$OUT/shapes-llava" --init "$OUT/shapes-llava-stage1" "${common[@]}" \
  --seed 1 --steps 3992 --planned-steps 3603 --batch-size 256 --lr 7e-4 --tune-vision --vision-lr-scale 1.0 \
  --log "$OUT/shapes-llava.log"
pack shapes-llava
