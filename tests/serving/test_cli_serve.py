"""``xlagen serve``'s argument checks (the server itself is tested in test_server.py)."""

from __future__ import annotations

import pytest

from xlagen.cli import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--slots", "0"], "--slots must be >= 1"),
        (["serve", "--steps-per-call", "0"], "--steps-per-call must be >= 1"),
        (["serve", "--model", "/no/such/dir"], "is not a directory"),
        (["serve", "--model", "none", "--whisper", "none"], "nothing to serve"),
        (["serve", "--whisper", "/no/such/whisper"], "is not a directory"),
    ],
)
def test_bad_serve_arguments(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
