"""Gate heat-maps live in :mod:`lstmkit.viz.heatmap` (tasks and the server draw them)."""

from lstmkit.viz.heatmap import GATES, gate_activations, gate_heatmap

__all__ = ["GATES", "gate_activations", "gate_heatmap"]
