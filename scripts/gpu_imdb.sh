#!/usr/bin/env bash
# The imdb-best recipe in one go (for the device tool): imdb-lm pretraining, then the
# sentiment classifier fine-tuned from it. Extra overrides: LM_ARGS, CLF_ARGS.
# Usage: scripts/gpu_imdb.sh ARCHIVE OUT_ROOT
set -euo pipefail
DATA=$1 ROOT=$2
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
START=$(date +%s)
# shellcheck disable=SC2086
python -m lstmkit.cli.main lm train --preset imdb-lm --data "$DATA" --out "$ROOT/lm" \
    --no-progress ${LM_ARGS:-}
echo "language model done after $(( $(date +%s) - START )) s"
# shellcheck disable=SC2086
python -m lstmkit.cli.main sentiment train --preset imdb-best --data "$DATA" \
    --model.pretrained "$ROOT/lm" --out "$ROOT/clf" --no-progress ${CLF_ARGS:-}
echo "whole recipe: $(( $(date +%s) - START )) s"
