#!/usr/bin/env bash
# One time-boxed training stage on a lent GPU machine, from a pack made by
# scripts/pack_training_data.py (the datasets do not travel; the pack does). Fine-tunes the
# shipped weights, keeps a snapshot about every minute (--keep-snapshots) so the last ones can
# be averaged and chosen on held-out objects here (benchmarks/heldout.py), and writes the last
# KEEP snapshots, the final weights and the logs to $OUT.
# EXTRA holds further `clicksmith train` flags (e.g. --source-weight train_camvid=1.5).
#   OUT=<dir> MINUTES=7.5 [EXTRA='...'] bash scripts/gpu_train_stage.sh
set -uo pipefail
OUT=${OUT:?set OUT to the folder for snapshots and logs}
PACK=${PACK:-.gpu_data} MINUTES=${MINUTES:-7} RUN=${RUN:-$(mktemp -d /tmp/gpu_run.XXXXXX)} KEEP=${KEEP:-5}
DEVICE=${DEVICE:-cuda} WORKERS=${WORKERS:-14} BATCH=${BATCH:-32} LR=${LR:-5e-4}
start=$(date +%s)
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import sys, torch, cv2; print(sys.version.split()[0], 'torch', torch.__version__,
'cuda', torch.cuda.is_available(), 'cv2', cv2.__version__, 'cpus', __import__('os').cpu_count())"
[ -d "$PACK/train_camvid/masks" ] || tar -xJf "$PACK/masks.tar.xz" -C "$PACK" || exit 2
echo "masks unpacked after $(( $(date +%s) - start )) s"
if [ "$DEVICE" = cuda ]; then
  (python3 -m pytest -q -p no:cacheprovider tests/train/test_train.py -k gpu -rs \
     >"$OUT/gpu_test.log" 2>&1; echo "pytest rc=$?" >>"$OUT/gpu_test.log") &
fi
PYTHONUNBUFFERED=1 python3 -m cdnet.train --run-dir "$RUN" --datasets "$PACK"/train_* \
  --device "$DEVICE" --workers "$WORKERS" --batch-size "$BATCH" --lr "$LR" --crop 256 \
  --iterations 1000000 --minutes "$MINUTES" --val-every 100000000 --val-fraction 0 \
  --checkpoint-minutes 1 --keep-snapshots --threads 2 --init-weights "${INIT:-cdnet/weights/cdnet_mnv2.pt}" ${EXTRA:-} 2>&1 \
  | tr '\r' '\n' >"$OUT/train.log"
rc=$?
grep -v '^\s*$' "$OUT/train.log" | awk 'NR % 200 == 1' | cut -c1-160
tail -5 "$OUT/train.log" | cut -c1-300
for f in $(ls -v "$RUN"/snapshots/it_*.pt 2>/dev/null | tail -n "$KEEP"); do
  cp "$f" "$OUT/"
done
[ -f "$RUN/latest_model.pt" ] && cp "$RUN/latest_model.pt" "$OUT/final.pt"
wait
[ -f "$OUT/gpu_test.log" ] && tail -3 "$OUT/gpu_test.log"
echo "train rc=$rc after $(( $(date +%s) - start )) s"; ls -la "$OUT"
exit "$rc"
