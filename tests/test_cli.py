"""The command line on a tiny checkpoint (with a tokenizer) written by Transformers."""

from __future__ import annotations

from xlagen.cli import main


def test_generate_greedy_and_timing(gpt2_tokenizer_checkpoint, capsys):
    path, _ = gpt2_tokenizer_checkpoint
    assert (
        main(["generate", "--model", str(path), "TensorFlow is", "XLA", "--max-new-tokens", "6", "--timing"])
        == 0
    )
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("TensorFlow is") and lines[1].startswith("XLA")
    assert "first call" in err and "warm" in err and "compilations: 1" in err


def test_generate_sampling_is_reproducible(gpt2_tokenizer_checkpoint, capsys):
    path, _ = gpt2_tokenizer_checkpoint
    args = ["generate", "--model", str(path), "TensorFlow is", "--do-sample", "--seed", "3", "--top-p", "0.9"]
    main(args)
    first = capsys.readouterr().out
    main(args)
    assert capsys.readouterr().out == first


def test_bad_arguments_are_reported(gpt2_tokenizer_checkpoint, capsys, tmp_path):
    path, _ = gpt2_tokenizer_checkpoint
    assert main(["generate", "--model", str(path), "hi", "--do-sample", "--top-p", "2"]) == 2
    assert "top_p" in capsys.readouterr().err
    assert main(["generate", "--model", str(tmp_path), "hi"]) == 2
    assert "config.json" in capsys.readouterr().err


def test_default_demo_model_prints_real_words(capsys):
    """The bundled demo GPT-2 (scripts/train_demo_model.py) continues a prompt in KJV English."""
    assert main(["generate", "And God said", "--max-new-tokens", "16"]) == 0
    words = capsys.readouterr().out.lower().replace(",", " ").replace(".", " ").split()
    common = {"the", "and", "unto", "of", "he", "said", "him", "lord", "god", "that", "i", "thee", "thou"}
    assert sum(w in common for w in words[3:]) >= 4, words
