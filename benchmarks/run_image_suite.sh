#!/bin/sh
# Reproduce the committed image results in benchmarks/results/ (about 40 minutes on 2 cores).
#   sh benchmarks/run_image_suite.sh [DATASETS_DIR] [COMPRESSAI_PYTHON]
set -eu
DATA=${1:-../shared/datasets/images}
CAI=${2:-/work/venv-cai/bin/python}
OUT=benchmarks/results
ncodec bench image --dataset "$DATA/kodak" --workers 2 --out "$OUT"
ncodec bench image --dataset "$DATA/eval_mcmaster" --workers 2 --out "$OUT"
python benchmarks/decode_speed.py --image "$DATA/kodak/kodim01.png" --compressai-python "$CAI"
python benchmarks/entropy_coding.py --compressai-python "$CAI"
python benchmarks/rvq_speed.py
