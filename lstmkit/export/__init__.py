"""Exporting trained models: ONNX graphs (:mod:`lstmkit.export.onnx`), onnxruntime and int8
quantization (:mod:`lstmkit.export.runtime`), Hub-style folders and model cards
(:mod:`lstmkit.export.hub`, :mod:`lstmkit.export.card`). ``lstmkit export`` runs them."""
