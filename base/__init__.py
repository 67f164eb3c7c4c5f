"""The base layer: helpers every other package may use and that use none of them.

Atomic file writes, typed configs, MLflow helpers, checkpoint reading, batching of patch sequences, reading
a built corpus, and the ABC text formats (``base.abc``). Nothing here imports Ray or DeepSpeed, nor any of
``models``, ``evaluators``, ``pipelines``, ``orchestration`` or the command line.
"""
