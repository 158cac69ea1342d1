"""Chat templates: the checkpoint's Jinja template rendered the way Transformers renders it.

Transformers 5 keeps the template in ``chat_template.jinja`` (older checkpoints: the
``chat_template`` entry of ``tokenizer_config.json``, a string or a list of named templates). It
renders it in a sandboxed Jinja environment with ``trim_blocks`` and ``lstrip_blocks``, the
``loopcontrols`` extension, a ``tojson`` filter that keeps non-ASCII text, and the globals
``raise_exception`` and ``strftime_now``; the special tokens (``bos_token``...) are variables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

CHAT_TEMPLATE_FILE = "chat_template.jinja"


def load_chat_template(directory: Path, from_config: Any = None) -> str | None:
    """The template of a tokenizer directory: ``chat_template.jinja`` first, else the config's entry
    (a list of ``{"name", "template"}`` picks ``default``)."""
    path = Path(directory) / CHAT_TEMPLATE_FILE
    if path.is_file():
        return path.read_text(encoding="utf-8")
    if isinstance(from_config, list):
        named = {t.get("name"): t.get("template") for t in from_config if isinstance(t, Mapping)}
        return named.get("default")
    return from_config if isinstance(from_config, str) else None


@lru_cache(maxsize=16)
def _compile(template: str):
    from jinja2 import StrictUndefined  # noqa: F401 - imported to fail early if jinja2 is missing
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str):
        raise TemplateError(message)

    def tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render_chat_template(
    template: str,
    conversation: Sequence[Mapping[str, Any]],
    add_generation_prompt: bool,
    variables: Mapping[str, Any],
) -> str:
    """The prompt text for ``conversation``; ValueError naming the problem when the template refuses it."""
    from jinja2.exceptions import TemplateError

    try:
        return _compile(template).render(
            messages=list(conversation), add_generation_prompt=add_generation_prompt, **variables
        )
    except TemplateError as e:
        raise ValueError(f"chat template error: {e}") from e
