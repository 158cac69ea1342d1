"""Generate tiny Transformers 4.x TF ``tf_model.h5`` fixtures (with matching ``model.safetensors``).

For each tiny random-weight config this builds the PyTorch model (seeded), saves it with
``save_pretrained(dir, safe_serialization=True)``, converts it to the TF class with ``from_pt=True``,
checks the TF and PT logits agree, and saves ``tf_model.h5`` into the same directory, so both files
hold the same weights. Output: ``tests/fixtures/tf_h5/<name>/``.

This needs Transformers 4.x with TensorFlow, which the project venv does not have. Run it in a
separate venv::

    python3 -m venv /tmp/venv-tf4
    /tmp/venv-tf4/bin/pip install transformers==4.57.6 tf-keras==2.21.0 tensorflow-cpu==2.21.0 torch==2.13.0
    TF_USE_LEGACY_KERAS=1 /tmp/venv-tf4/bin/python scripts/make_tf_h5_fixtures.py [name ...]
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

OUT_ROOT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "tf_h5"
SEED = 0
ATOL = 1e-4


def _gpt2() -> tuple[transformers.PretrainedConfig, str, str]:
    cfg = transformers.GPT2Config(
        vocab_size=128, n_positions=64, n_embd=32, n_layer=2, n_head=4, bos_token_id=1, eos_token_id=2
    )
    return cfg, "GPT2LMHeadModel", "TFGPT2LMHeadModel"


def _opt(**overrides: object) -> Callable[[], tuple[transformers.PretrainedConfig, str, str]]:
    def build() -> tuple[transformers.PretrainedConfig, str, str]:
        kwargs: dict[str, object] = dict(
            vocab_size=128,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            ffn_dim=64,
            max_position_embeddings=64,
            word_embed_proj_dim=32,
            pad_token_id=1,
            bos_token_id=2,
            eos_token_id=2,
        )
        kwargs.update(overrides)
        return transformers.OPTConfig(**kwargs), "OPTForCausalLM", "TFOPTForCausalLM"

    return build


def _t5(**overrides: object) -> Callable[[], tuple[transformers.PretrainedConfig, str, str]]:
    def build() -> tuple[transformers.PretrainedConfig, str, str]:
        kwargs: dict[str, object] = dict(
            vocab_size=128,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=16,
            feed_forward_proj="relu",
            tie_word_embeddings=True,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
        kwargs.update(overrides)
        return transformers.T5Config(**kwargs), "T5ForConditionalGeneration", "TFT5ForConditionalGeneration"

    return build


def _whisper() -> tuple[transformers.PretrainedConfig, str, str]:
    cfg = transformers.WhisperConfig(
        vocab_size=128,
        num_mel_bins=80,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=64,  # encoder input is 2 * 64 = 128 mel frames
        max_target_positions=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
        suppress_tokens=None,
        begin_suppress_tokens=None,
    )
    return cfg, "WhisperForConditionalGeneration", "TFWhisperForConditionalGeneration"


def _mistral() -> tuple[transformers.PretrainedConfig, str, str]:
    """Transformers 4.57's only TF model of the Llama family (there is no TFLlama or TFQwen2)."""
    cfg = transformers.MistralConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        sliding_window=None,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return cfg, "MistralForCausalLM", "TFMistralForCausalLM"


def _bart_family(
    config: str, pt_cls: str, tf_cls: str, **overrides: object
) -> Callable[[], tuple[transformers.PretrainedConfig, str, str]]:
    """A tiny BART-family model (BART, mBART, Marian, Pegasus all had Transformers 4.x TF classes)."""

    def build() -> tuple[transformers.PretrainedConfig, str, str]:
        kwargs: dict[str, object] = dict(
            vocab_size=96,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=48,
            decoder_ffn_dim=48,
            max_position_embeddings=64,
        )
        kwargs.update(overrides)
        return getattr(transformers, config)(**kwargs), pt_cls, tf_cls

    return build


FIXTURES: dict[str, Callable[[], tuple[transformers.PretrainedConfig, str, str]]] = {
    "gpt2": _gpt2,
    "opt": _opt(),
    "opt_postnorm_proj": _opt(do_layer_norm_before=False, word_embed_proj_dim=16),
    "t5": _t5(),
    "t5_v11": _t5(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "whisper": _whisper,
    "mistral": _mistral,
    "bart": _bart_family("BartConfig", "BartForConditionalGeneration", "TFBartForConditionalGeneration"),
    "mbart": _bart_family(
        "MBartConfig",
        "MBartForConditionalGeneration",
        "TFMBartForConditionalGeneration",
        scale_embedding=True,
    ),
    "marian": _bart_family(
        "MarianConfig",
        "MarianMTModel",
        "TFMarianMTModel",
        pad_token_id=95,
        decoder_start_token_id=95,
        eos_token_id=0,
        activation_function="swish",
        scale_embedding=True,
    ),
    "pegasus": _bart_family(
        "PegasusConfig",
        "PegasusForConditionalGeneration",
        "TFPegasusForConditionalGeneration",
        scale_embedding=True,
    ),
    "blenderbot": _bart_family(
        "BlenderbotConfig", "BlenderbotForConditionalGeneration", "TFBlenderbotForConditionalGeneration"
    ),
    "blenderbot_small": _bart_family(
        "BlenderbotSmallConfig",
        "BlenderbotSmallForConditionalGeneration",
        "TFBlenderbotSmallForConditionalGeneration",
    ),
    # Same model as "t5", but tf_model.h5 is saved in shards (tf_model-0000i-of-0000n.h5 + tf_model.h5.index.json),
    # which use a different h5 layout (one top-level dataset per weight).
    "t5_sharded": _t5(),
}
SHARD_SIZE = {"t5_sharded": "100KB"}


def _inputs(name: str, cfg: transformers.PretrainedConfig) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    ids = rng.integers(3, cfg.vocab_size, size=(2, 7)).astype(np.int32)
    if name.startswith("t5") or name in (
        "bart",
        "mbart",
        "marian",
        "pegasus",
        "blenderbot",
        "blenderbot_small",
    ):
        return {"input_ids": ids, "decoder_input_ids": ids[:, :5]}
    if name == "whisper":
        feats = rng.standard_normal((2, cfg.num_mel_bins, 2 * cfg.max_source_positions)).astype(np.float32)
        return {"input_features": feats, "decoder_input_ids": ids[:, :5]}
    return {"input_ids": ids}


def make(name: str) -> None:
    """Build, save and cross-check one fixture."""
    cfg, pt_cls_name, tf_cls_name = FIXTURES[name]()
    out = OUT_ROOT / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tf.keras.backend.clear_session()  # deterministic model scope names (no "_1" suffixes from earlier models)

    torch.manual_seed(SEED)
    pt_model = getattr(transformers, pt_cls_name)(cfg).eval()
    # Random init leaves biases at 0 and norm weights at 1 (and tied copies identical); perturb every
    # stored tensor so that a swapped, mis-transposed or mis-named weight shows up in the tests.
    with torch.no_grad():
        for param in pt_model.parameters():
            if param.requires_grad:  # frozen tables (Marian's sinusoids) are computed, not stored, by TF
                param.add_(torch.randn_like(param) * 0.1)
    pt_model.save_pretrained(out, safe_serialization=True)

    tf_model = getattr(transformers, tf_cls_name).from_pretrained(out, from_pt=True)
    # Writes tf_model.h5 (or its shards) and config.json again.
    tf_model.save_pretrained(out, safe_serialization=False, max_shard_size=SHARD_SIZE.get(name, "10GB"))
    # Reload from the h5 alone (not model.safetensors) to make sure it round-trips.
    tf_model = getattr(transformers, tf_cls_name).from_pretrained(out, use_safetensors=False)

    inputs = _inputs(name, cfg)
    pt_inputs = {
        k: torch.from_numpy(v).long() if v.dtype == np.int32 else torch.from_numpy(v)
        for k, v in inputs.items()
    }
    with torch.no_grad():
        pt_logits = pt_model(**pt_inputs).logits.numpy()
    tf_logits = tf_model({k: tf.constant(v) for k, v in inputs.items()}, training=False).logits.numpy()
    diff = float(np.abs(pt_logits - tf_logits).max())
    assert diff < ATOL, f"{name}: TF/PT logits differ by {diff}"

    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    print(f"{name}: max |logits| = {np.abs(pt_logits).max():.2f}, max |PT - TF| = {diff:.2e}; files {sizes}")


def main(argv: list[str]) -> int:
    names = argv or list(FIXTURES)
    failed = []
    for name in names:
        try:
            make(name)
        except Exception as exc:  # report and skip, as documented
            failed.append(name)
            print(f"{name}: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
