"""Model directories and trainer state, saved without pickled code.

A model directory holds::

    config.json          enough to rebuild the model (model + task + train sections)
    model.safetensors    weights only
    metrics.json         final (or best) metrics and the per-epoch history
    train_log.csv        one row per optimizer step; epoch_log.csv one row per epoch
    trainer_state/       what exact resume needs: latest weights, optimizer and scheduler
                         state, step counters, RNG states of torch, numpy and random, and
                         the hidden state carried between batches (truncated BPTT)

Weights and tensors are safetensors; the optimizer and scheduler state dicts are loaded
with ``torch.load(weights_only=True)``, which refuses to execute pickled code; everything
else is JSON.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.json"
STATE_DIR = "trainer_state"


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (or the model itself)."""
    return getattr(model, "module", model)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (a crash never leaves half a file)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"not found: {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def save_weights(model: nn.Module, path: str | Path) -> None:
    """Save the weights as safetensors (tied weights are stored once), readable like every
    other file of the directory (safetensors itself creates the file mode 0600)."""
    save_model(unwrap(model), str(path))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def load_weights(model: nn.Module, path: str | Path, strict: bool = True) -> nn.Module:
    """Load safetensors weights into ``model``; a missing file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}")
    load_model(unwrap(model), str(path), strict=strict)
    return model


# -- RNG --------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python's random, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The RNG states as (JSON-able dict, tensors)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    plain = {
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
        "python": [version, list(internal), gauss_next],
    }
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for k, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{k}"] = state
    return plain, tensors


def set_rng_state(plain: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    kind, keys, pos, has_gauss, gauss = plain["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = plain["python"]
    random.setstate((version, tuple(internal), gauss_next))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


# -- carried state (truncated BPTT) -----------------------------------------------------


def flatten_state(state: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a (nested tuple/list of) tensor(s) into a JSON structure and named tensors."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(x: Any) -> Any:
        if x is None:
            return None
        if isinstance(x, torch.Tensor):
            name = str(len(tensors))
            tensors[name] = x.detach().contiguous().cpu()
            return {"tensor": name}
        if isinstance(x, (tuple, list)):
            return {"seq": [walk(v) for v in x]}
        raise TypeError(f"carried state must be tensors in tuples/lists, got {type(x).__name__}")

    return walk(state), tensors


def unflatten_state(structure: Any, tensors: dict[str, torch.Tensor], device: torch.device) -> Any:
    if structure is None:
        return None
    if "tensor" in structure:
        return tensors[structure["tensor"]].to(device)
    return tuple(unflatten_state(s, tensors, device) for s in structure["seq"])


# -- trainer state ------------------------------------------------------------------------


def save_trainer_state(
    out_dir: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedulers: dict[str, Any],
    progress: dict[str, Any],
    carry: Any,
    extra: dict[str, Callable[[Path], None]] | None = None,
) -> Path:
    """Write ``out_dir/trainer_state`` atomically (into a temporary folder, then renamed);
    ``extra`` maps further file names to functions that write them (the weight average)."""
    final = Path(out_dir) / STATE_DIR
    tmp = Path(out_dir) / (STATE_DIR + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(model, tmp / MODEL_FILE)
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            **{k: s.state_dict() for k, s in schedulers.items() if s is not None},
        },
        tmp / "optimizer.pt",
    )
    plain_rng, tensor_rng = rng_state()
    structure, carry_tensors = flatten_state(carry)
    save_file(tensor_rng, str(tmp / "rng.safetensors"))
    if carry_tensors:
        save_file(carry_tensors, str(tmp / "carry.safetensors"))
    for name, write in (extra or {}).items():
        write(tmp / name)
    write_json(tmp / "trainer.json", {"progress": progress, "rng": plain_rng, "carry": structure})
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def load_trainer_state(
    out_dir: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    schedulers: dict[str, Any],
    device: torch.device,
) -> tuple[dict[str, Any], Any, dict[str, Any], dict[str, torch.Tensor]]:
    """Restore weights, optimizer and schedulers; return (progress, carry, rng, rng tensors).

    The RNG states are returned, not applied: the trainer applies them at the exact point
    of the data stream where they were saved.
    """
    state_dir = Path(out_dir) / STATE_DIR
    if not (state_dir / "trainer.json").is_file():
        raise FileNotFoundError(
            f"cannot resume: no trainer state in {state_dir} (train without --resume first)"
        )
    load_weights(model, state_dir / MODEL_FILE)
    states = torch.load(state_dir / "optimizer.pt", map_location=device, weights_only=True)
    optimizer.load_state_dict(states["optimizer"])
    for name, scheduler in schedulers.items():
        if scheduler is not None:
            scheduler.load_state_dict(states[name])
    meta = read_json(state_dir / "trainer.json")
    carry_file = state_dir / "carry.safetensors"
    carry_tensors = load_file(str(carry_file)) if carry_file.is_file() else {}
    carry = unflatten_state(meta["carry"], carry_tensors, device)
    return meta["progress"], carry, meta["rng"], load_file(str(state_dir / "rng.safetensors"))
