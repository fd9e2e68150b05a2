r"""Attention over a set of keys: Luong's ``dot`` and ``general`` and Bahdanau's ``additive``.

For a query :math:`q` (a decoder state) and keys :math:`k_s` (encoder outputs, s = 1..S):

.. math::
    \text{score}(q, k_s) = \begin{cases}
        q^\top k_s & \text{dot (Luong et al. 2015; needs } H_q = H_k) \\
        q^\top W_a k_s & \text{general (Luong et al. 2015)} \\
        v_a^\top \tanh(W_q q + W_k k_s) & \text{additive (Bahdanau et al. 2015)}
    \end{cases}

    a_s = \frac{\exp \text{score}(q, k_s)}{\sum_{s' \text{ unmasked}} \exp \text{score}(q, k_{s'})},
    \qquad c = \sum_s a_s k_s

Masked positions (padding) get weight exactly 0. Nothing here knows what the keys are, so
any task can use it (a translation decoder, a pooling layer over an encoder's outputs).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

KINDS = ("dot", "general", "additive")


class Attention(nn.Module):
    """Scores, weights and the context vector of queries over keys.

    Args:
        query_size: features of a query (H_q).
        key_size: features of a key (H_k); ``dot`` needs it equal to ``query_size``.
        kind: ``dot``, ``general`` or ``additive``. Default: ``general``
        attn_size: the hidden size of ``additive`` scoring. Default: ``query_size``

    Inputs: query, keys, mask
        * **query**: (N, H_q) for one query per sequence, or (N, T, H_q) for T of them.
        * **keys**: (N, S, H_k).
        * **mask**: optional bool (N, S), ``True`` where a key may be attended to (not
          padding). Every row must have at least one ``True``.

    Outputs: context, weights
        * **context**: (N, H_k) or (N, T, H_k): the weighted sum of the keys.
        * **weights**: (N, S) or (N, T, S): non-negative, summing to 1 over unmasked keys.

    Example::

        >>> attn = Attention(8, 6, "additive")
        >>> keys, mask = torch.randn(2, 5, 6), torch.tensor([[1, 1, 1, 0, 0], [1] * 5]).bool()
        >>> context, weights = attn(torch.randn(2, 8), keys, mask)
        >>> context.shape, weights.shape, weights[0, 3:].tolist()
        (torch.Size([2, 6]), torch.Size([2, 5]), [0.0, 0.0])
    """

    def __init__(
        self, query_size: int, key_size: int, kind: str = "general", attn_size: int | None = None
    ) -> None:
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"attention kind must be one of {', '.join(KINDS)}; got {kind!r}")
        if kind == "dot" and query_size != key_size:
            raise ValueError(
                f"dot attention needs query_size == key_size, got {query_size} and "
                f"{key_size} (use general or additive)"
            )
        self.kind, self.query_size, self.key_size = kind, query_size, key_size
        if kind == "general":
            self.W_a = nn.Linear(key_size, query_size, bias=False)
        elif kind == "additive":
            attn_size = attn_size or query_size
            self.W_q = nn.Linear(query_size, attn_size, bias=False)
            self.W_k = nn.Linear(key_size, attn_size, bias=True)
            self.v_a = nn.Linear(attn_size, 1, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        """What of the keys scoring reads, computed once per source for many queries:
        (N, S, H_q) for ``general``, (N, S, attn_size) for ``additive``, the keys for
        ``dot``. Pass it as ``projected`` to :meth:`forward`."""
        if self.kind == "general":
            return self.W_a(keys)
        if self.kind == "additive":
            return self.W_k(keys)
        return keys

    def scores(self, query: Tensor, projected: Tensor) -> Tensor:
        """Unnormalised scores (N, T, S) of queries (N, T, H_q)."""
        if self.kind == "additive":
            hidden = torch.tanh(self.W_q(query).unsqueeze(2) + projected.unsqueeze(1))
            return self.v_a(hidden).squeeze(-1)
        return torch.bmm(query, projected.transpose(1, 2))

    def forward(
        self,
        query: Tensor,
        keys: Tensor,
        mask: Tensor | None = None,
        projected: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        single = query.dim() == 2
        if single:
            query = query.unsqueeze(1)
        if query.dim() != 3 or keys.dim() != 3:
            raise ValueError(
                f"query must be (N, H_q) or (N, T, H_q) and keys (N, S, H_k); got "
                f"{tuple(query.shape)} and {tuple(keys.shape)}"
            )
        if projected is None:
            projected = self.project_keys(keys)
        scores = self.scores(query, projected)
        if mask is not None:
            scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        low = scores.dtype in (torch.float16, torch.bfloat16)  # softmax in float32 under autocast
        weights = torch.softmax(scores.float() if low else scores, dim=-1).to(keys.dtype)
        context = torch.bmm(weights, keys)
        if single:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights

    def extra_repr(self) -> str:
        return f"{self.query_size}, {self.key_size}, kind={self.kind!r}"
