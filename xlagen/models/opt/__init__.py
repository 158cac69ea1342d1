"""OPT (Meta's Open Pre-trained Transformers), decoder-only."""
