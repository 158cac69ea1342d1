"""Llama (rotary positions, grouped-query attention, RMSNorm, SwiGLU)."""
