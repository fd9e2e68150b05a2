"""The generic ONNX building blocks: the graph builder (:mod:`lstmkit.export.graph`), LSTM
layers as ONNX ops (:mod:`lstmkit.export.layers`, :mod:`lstmkit.export.scan`), and
onnxruntime, int8 quantization and the parity check (:mod:`lstmkit.export.runtime`). Each
task's graphs live in its package (``lstmkit.tasks.NAME.export``); ``lstmkit export`` runs
:mod:`lstmkit.tasks.export`. Nothing here imports a task."""
