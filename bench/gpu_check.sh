#!/usr/bin/env bash
# Every GPU check in one call on a lent GPU machine (see issue notes): the trial path under an
# 8 GiB cap, packing K trials on one card, and the throughput benchmark (with torch.compile).
# Expects .devcarry/ (git-ignored via .git/info/exclude) with the bitsandbytes wheel, a tokenizer
# folder and the dataset; writes to $OUT. To build it on a machine with this project installed:
#   mkdir -p .devcarry/tokenizer && cp ../shared/data/fake_reviews/fake_reviews_dataset.csv.gz .devcarry/
#   python -c "from trainables.model import load_tokenizer as t; t('minilm').save_pretrained('.devcarry/tokenizer')"
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux_2_24_x86_64 -d .devcarry bitsandbytes==0.50.2
set -o pipefail
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-bench/results}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .devcarry/*.whl && export PYTHONPATH=/tmp/site || exit 1
LOG="$OUT/gpu_check.log"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOG"
python3 -c "import torch, transformers, peft, bitsandbytes; print(torch.__version__, transformers.__version__, peft.__version__, bitsandbytes.__version__)" | tee -a "$LOG"
DATA=(--tokenizer .devcarry/tokenizer --data .devcarry/fake_reviews_dataset.csv.gz)
timeout 240 python3 bench/gpu_trials.py "${DATA[@]}" --packing-reviews 2048 --out "$OUT" 2>&1 \
  | grep -v -i warn | tee -a "$LOG"
timeout 130 python3 bench/trial_throughput.py --stella-size "${DATA[@]}" --reviews 4096 --study-reviews 256 \
  --out "$OUT" 2>&1 | grep -v -i warn | tee -a "$LOG"
mkdir -p "$OUT/compile"
timeout 140 python3 bench/trial_throughput.py --stella-size "${DATA[@]}" --reviews 2048 --study-reviews 32 \
  --compile --compile-reviews 2048 --out "$OUT/compile" 2>&1 | grep -v -i warn | tee -a "$LOG"
