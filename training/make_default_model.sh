#!/usr/bin/env bash
# Rebuild the shipped default model (models/default) from the real data: train, average, export, report.
# Reproducible: fixed seed, fixed data, fixed settings. About 30 minutes on this 2-core CPU when it is otherwise idle (training ~25 min).
# DATA (default ../shared/data) holds flickr8k/ and coco/ (see ../shared/data/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${CAPTIONBOT_DATA:-../shared/data}
RUN=${RUN:-runs/default}
OUT=${OUT:-models/default}
REPORT=${REPORT:-docs/model}
CB=${CB:-.venv/bin/captionbot}
PY=${PY:-.venv/bin/python}
FLICKR=(--flickr8k "$DATA/flickr8k")
TRAINED_ON="Flickr8k: its train split (5,999 images) and the 91 images in no split; COCO: 80 train2017 images. \
6,170 images, 30,623 captions of at most 22 words, each image also mirrored. Early-stopped on the Flickr8k dev split."

# 1. train (frozen EfficientNet-Lite0 features, cached once; every epoch kept for averaging)
if [ ! -f "$RUN/history.json" ] || [ "${RETRAIN:-0}" = 1 ]; then
  "$CB" train "${FLICKR[@]}" \
    --coco "$DATA/coco/annotations/captions_train2017_subset.json" "$DATA/coco/train2017" \
    --flip-augment --encoder efficientnet_lite0 \
    --epochs 7 --batch-size 96 --lr 6e-4 --label-smoothing 0.1 --weight-decay 0.05 --beam 3 --patience 3 \
    --threads "${THREADS:-2}" --seed 0 --keep-epochs \
    --out "$RUN"
fi

# 2. average the best epoch with the two after it (the run early-stops three epochs after its best)
best_epoch=$("$PY" -c "import json; h=json.load(open('$RUN/history.json')); print(max(h, key=lambda r: r['val_CIDEr'])['epoch'])")
avg_from=()
for e in $best_epoch $((best_epoch + 1)) $((best_epoch + 2)); do
  [ -f "$RUN/epoch$e.pt" ] && avg_from+=("$RUN/epoch$e.pt")
done
"$CB" average "${avg_from[@]}" --out "$RUN/avg.pt"
"$CB" evaluate "$RUN/avg.pt" "${FLICKR[@]}" --split dev --beam 3 --metrics BLEU,CIDEr --out "$RUN/eval-avg.json"

# (self-critical CIDEr fine-tuning, `captionbot finetune-cider`, lowered dev CIDEr here: see docs/model.md)
pick=avg
echo "exporting $RUN/$pick.pt"

# 4. export: fp32 (weights stored as fp16, computed in fp32) + int8; parity-checked on 50 dev images
export_bundle() {
  "$CB" export "$RUN/$pick.pt" --out "$OUT" --force --fp16-weights --variants "$1" --images 50 \
    --model-name captionbot-sat-lite0 --model-version "${MODEL_VERSION:-1.0.1}" --trained-on "$TRAINED_ON"
}
export_bundle int8

# 5. report on the held-out dev split: beam 1, 3, 5 (search rules as evaluated), beam 3 as served, int8
mkdir -p "$REPORT"
for k in 1 3 5; do
  "$CB" evaluate "$OUT" "${FLICKR[@]}" --split dev --beam $k --out "$REPORT/dev-beam$k.json"
done
"$CB" evaluate "$OUT" "${FLICKR[@]}" --split dev --beam 3 --as-served --out "$REPORT/dev-beam3-served.json"
"$CB" evaluate "$OUT" "${FLICKR[@]}" --split dev --beam 3 --variant int8 --out "$REPORT/dev-beam3-int8.json"
keep_int8=$("$PY" -c "import json; f=json.load(open('$REPORT/dev-beam3.json'))['scores']['CIDEr']; i=json.load(open('$REPORT/dev-beam3-int8.json'))['scores']['CIDEr']; print(int(abs(f-i) <= 0.01))")
if [ "$keep_int8" != 1 ]; then
  echo "int8 CIDEr is more than 1 point from fp32: shipping fp32 only"
  export_bundle ""
fi

# 6. gallery: 8 held-out dev images with captions and heatmaps
mkdir -p "$REPORT/gallery"
mapfile -t gallery < <(sort "$DATA/flickr8k/Flickr_8k.devImages.txt" | head -8 | sed "s|^|$DATA/flickr8k/images/|")
"$CB" caption "${gallery[@]}" --bundle "$OUT" --beam 3 --json --heatmap "$REPORT/gallery/heatmap.png" \
  > "$REPORT/gallery/captions.jsonl"
du -sh "$OUT"
