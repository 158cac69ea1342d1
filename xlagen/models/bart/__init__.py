"""The BART family: BART, mBART, Marian, Pegasus, Blenderbot, BlenderbotSmall, M2M100/NLLB (one config-driven encoder-decoder)."""
