"""Serving: export a model's XLA-compiled ``generate()`` for TensorFlow Serving."""
