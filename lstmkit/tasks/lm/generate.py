"""Text generation from an LSTM LM: greedy, temperature, top-k, top-p and beam search.

Decoding is stateful: the prompt is read once, then each new token is fed with the carried
state (one step of the model per token, never the prefix again). :func:`generate` yields
the text of each new token as soon as it is chosen (beam search: as soon as every beam
agrees on it), so callers can stream it. ``<pad>`` and ``<unk>`` are never generated.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor

from lstmkit.data.tokenizer import Tokenizer
from lstmkit.models.language_model import LanguageModel, State


def filter_logits(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Set to ``-inf`` every logit outside the ``top_k`` largest and outside the smallest
    set whose probability reaches ``top_p`` (nucleus sampling, Holtzman et al. 2020); the
    most likely token always stays. ``logits`` is (..., V)."""
    if top_k is not None:
        if top_k <= 0:
            raise ValueError(f"top_k must be positive, got {top_k}")
        kth = logits.topk(min(top_k, logits.size(-1)), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the tokens ranked above it already reach top_p
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def _prompt_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    if not prompt:
        raise ValueError("the prompt is empty; give at least one character (e.g. a newline)")
    unknown = tokenizer.unknown(prompt)
    if unknown:
        raise ValueError(f"the prompt has characters the model never saw: {unknown}")
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ValueError(f"the prompt {prompt!r} encodes to no tokens")
    return ids


def _select(state: State, index: Tensor) -> State:
    return [(h[:, index], c[:, index]) for h, c in state]


@torch.no_grad()
def generate(
    model: LanguageModel,
    tokenizer: Tokenizer,
    prompt: str = "\n",
    max_new: int = 200,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    beam: int | None = None,
    length_penalty: float = 1.0,
    seed: int | None = None,
) -> Iterator[str]:
    """Yield the text of ``max_new`` tokens continuing ``prompt``.

    Args:
        model, tokenizer: a trained LM and its tokenizer.
        prompt: the text to continue; a ``char`` model rejects characters it never saw.
            Default: ``"\\n"``
        max_new: number of tokens to generate. Default: 200
        temperature: divides the logits; ``0`` is greedy decoding. Default: 1.0
        top_k, top_p: sample only among the ``top_k`` most likely tokens / the nucleus of
            probability ``top_p``. Default: ``None`` (off)
        beam: beam width: beam search (deterministic; the sampling options do not apply;
            width 1 is greedy decoding). Default: ``None`` (sampling)
        length_penalty: beam scores are ``log p / length ** length_penalty``. Default: 1.0
        seed: seeds the sampler (reproducible output). Default: ``None``

    Example::

        >>> from lstmkit.models import LMModelConfig
        >>> tok = Tokenizer.train(["abcabc"], "char")
        >>> model = LanguageModel(tok.vocab_size, LMModelConfig(8, 8, 1))
        >>> len("".join(generate(model, tok, "ab", 5, seed=0)))
        5
    """
    if max_new < 0:
        raise ValueError(f"max_new must be >= 0, got {max_new}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")
    if beam is not None and beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    model.eval()
    device = next(model.parameters()).device
    ids = torch.tensor(_prompt_ids(tokenizer, prompt), device=device).unsqueeze(1)  # (L, 1)
    banned = torch.tensor([tokenizer.pad_id, tokenizer.unk_id], device=device)

    def step(x: Tensor, state: State | None) -> tuple[Tensor, State]:
        logits, state = model(x, state)
        return logits[-1].float().index_fill(-1, banned, float("-inf")), state  # (B, V)

    logits, state = step(ids, None)  # the prompt, read once
    if beam is not None:
        yield from _beam_search(step, tokenizer, logits, state, max_new, beam, length_penalty)
        return
    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    out: list[int] = []
    text = ""
    for _ in range(max_new):
        if temperature == 0:
            token = logits.argmax(-1)
        else:
            # shifted so that the largest is 0: a tiny temperature cannot overflow to inf - inf
            shifted = logits - logits.amax(-1, keepdim=True)
            probs = filter_logits(shifted / temperature, top_k, top_p).softmax(-1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        out.append(int(token))
        new_text = tokenizer.decode(out)  # whole-sequence decode keeps subword spacing right
        yield new_text[len(text) :]
        text = new_text
        if len(out) < max_new:  # no step after the last token
            logits, state = step(token.view(1, 1), state)


def _beam_search(step, tokenizer, logits, state, max_new, width, length_penalty):
    """Keep the ``width`` best continuations by total log-probability; yield the tokens all
    beams share as they become certain, then the rest of the best beam."""
    vocab = logits.size(-1)
    scores = torch.zeros(1, device=logits.device)  # (B,) summed log-probs
    beams: list[list[int]] = [[]]
    emitted, text = 0, ""
    for n in range(max_new):
        logp = logits.log_softmax(-1) + scores.unsqueeze(1)  # (B, V)
        scores, flat = logp.flatten().topk(min(width, logp.numel()))
        parent, token = flat // vocab, flat % vocab
        beams = [beams[p] + [t] for p, t in zip(parent.tolist(), token.tolist())]
        state = _select(state, parent)
        common = 0
        while common < len(beams[0]) and all(b[common] == beams[0][common] for b in beams):
            common += 1
        if common > emitted:
            new_text = tokenizer.decode(beams[0][:common])
            yield new_text[len(text) :]
            text, emitted = new_text, common
        if n + 1 < max_new:
            logits, state = step(token.view(1, -1), state)
    lengths = torch.tensor([max(len(b), 1) for b in beams], device=scores.device)
    best = int((scores / lengths.float() ** length_penalty).argmax())
    yield tokenizer.decode(beams[best])[len(text) :]
