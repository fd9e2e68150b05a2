"""``lstmkit speech plot``: what a speech model reads and says about one WAV file, as PNG.

Three panels on a shared time axis: the waveform (at the model's rate), the normalised
log-mel features the model reads, and its output: for a CTC model the per-step posteriors
of the blank and each digit (the spikes CTC learns), for an isolated-digit model the
forget-gate activations of the first LSTM layer (mean over units, per direction) with the
class probabilities in the title.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from lstmkit.tasks.speech.model import members_of, stack_frames


def plot_file(predictor, wav: str | Path, out_dir: str | Path) -> list[Path]:
    """Draw ``wav`` through ``predictor``'s model into ``out_dir/<name>.png``; the paths."""
    config = predictor.config
    audio = predictor.read(wav)
    feats = predictor.featurizer.features(audio)  # (T, n_mels)
    rate, hop = config.features.sample_rate, config.features.hop_ms / 1000
    model = predictor.model
    x = feats[:, None].to(predictor.device)
    lengths = torch.tensor([feats.shape[0]])
    step = hop * config.model.subsample
    figure = Figure(figsize=(11, 8), layout="constrained")
    axes = figure.subplots(3, 1, sharex=True)
    axes[0].plot(np.arange(audio.size) / rate, audio, lw=0.5, color="0.2")
    axes[0].set_ylabel("waveform")
    bands = feats[:, : config.features.n_mels]  # the first view of several (normalize a+b)
    extent = (0.0, feats.shape[0] * hop, 0, bands.shape[1])
    axes[1].imshow(bands.T.numpy(), aspect="auto", origin="lower", extent=extent, cmap="magma")
    axes[1].set_ylabel("log-mel band")
    with torch.no_grad():
        out, steps = model(x, lengths)
        if config.ctc:
            probs = out[:, 0].exp().cpu().numpy()  # (T', 11)
            times = (np.arange(probs.shape[0]) + 0.5) * step
            axes[2].plot(times, probs[:, 0], color="0.6", lw=1, label="blank")
            for d in range(10):
                axes[2].plot(times, probs[:, d + 1], lw=1.2, label=str(d))
            axes[2].set_ylabel("CTC posterior")
            axes[2].legend(ncol=11, fontsize=7, loc="upper right")
            result = predictor.transcribe_audio(audio, str(wav))
            title = f"transcript: {result['transcript'] or '(empty)'}"
        else:
            members = members_of(model)  # an ensemble: its first member's gates
            first = members[0]
            stacked, _ = stack_frames(first.front(x), lengths, config.model.subsample)
            _, _, gates = first.rnn(stacked, return_gates=True)
            forget = gates.f[: first.rnn.num_directions, 0].mean(-1).cpu().numpy()  # (D, T')
            times = (np.arange(forget.shape[1]) + 0.5) * step
            for d, row in enumerate(forget):
                axes[2].plot(times, row, label=("forward", "backward")[d])
            which = f", member 1 of {len(members)}" if len(members) > 1 else ""
            axes[2].set_ylabel(f"forget gate (mean{which})")
            axes[2].legend(fontsize=8)
            p = out[0].softmax(-1).cpu().numpy()
            title = f"digit {int(p.argmax())} (p = {p.max():.3f})"
    axes[2].set_xlabel("time (s)")
    figure.suptitle(f"{Path(wav).name}: {title}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{Path(wav).stem}.png"
    figure.savefig(png, dpi=100)
    return [png]
