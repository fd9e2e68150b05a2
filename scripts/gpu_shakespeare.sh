#!/usr/bin/env bash
# One GPU check in one go (for the device tool): CUDA parity tests, then the
# shakespeare-char recipe with its epochs sized from a timed probe to fit the budget.
# Usage: scripts/gpu_shakespeare.sh DATA OUT_DIR [BUDGET_MINUTES] [extra lm-train args...]
set -euo pipefail
DATA=$1 OUT=$2 BUDGET=${3:-7}
shift 3 || shift $#
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python -m pytest -q -p no:cacheprovider tests/nn/test_cuda.py 2>&1 | tail -3
START=$(date +%s)
python -m lstmkit.cli.main lm train --preset shakespeare-char --data "$DATA" --out /tmp/probe \
    --max-steps 40 --no-progress "$@" > /tmp/probe.log 2>&1 || { cat /tmp/probe.log; exit 1; }
EPOCHS=$(python - "$BUDGET" "$@" <<'PY'
import json, sys
from lstmkit.data.bptt import BPTTBatches
from lstmkit.tasks.lm import task
from lstmkit.cli.common import preset_path
from lstmkit.train.config import apply_overrides, load_yaml
budget = float(sys.argv[1]) * 60
cfg = task.load_config(apply_overrides(load_yaml(preset_path("shakespeare-char")), sys.argv[2:]))
r = json.load(open("/tmp/probe/results.json"))
per_step = r["seconds"] / r["steps"]          # includes start-up: an overestimate
steps = r["train_tokens"] / (cfg.data.batch_size * cfg.data.bptt)
per_epoch = per_step * steps * 1.05            # + validation
print(max(1, int(budget / per_epoch)), file=sys.stdout)
print(f"probe: {per_step:.3f} s/step, ~{steps:.0f} steps/epoch -> {per_epoch:.1f} s/epoch",
      file=sys.stderr)
PY
)
echo "epochs for a ${BUDGET}-minute budget: $EPOCHS (probe took $(( $(date +%s) - START )) s)"
python -m lstmkit.cli.main lm train --preset shakespeare-char --data "$DATA" --out "$OUT" \
    --no-progress --train.epochs "$EPOCHS" "$@"
python -m lstmkit.cli.main lm evaluate --model "$OUT" --data "$DATA" --split val --json "$OUT/val.json"
for T in 0.8 1.0; do
  python -m lstmkit.cli.main lm generate --model "$OUT" --prompt "ROMEO:" --max-new 400 \
      --temperature $T --seed 1
done
