"""Whisper's decoding rules, written for the XLA generation loop.

* ``WhisperSpecialTokens``: the ids of Whisper's special tokens (start of transcript, languages,
  tasks, ``<|notimestamps|>`` and the timestamp tokens that follow it), read from the generation
  config and the tokenizer, or derived from the standard vocabulary layout;
* ``decoder_prompt``: ``[<|startofprev|> previous text...] <|startoftranscript|> [language task]
  [<|notimestamps|>]``, the prompt the decoder continues;
* ``TimestampRules`` / ``WhisperTimestampLogitsProcessor``: the rules that make the predicted
  timestamps well formed (the reference implementation's ``ApplyTimestampRules``), on the loop's
  ``DecodeState`` with fixed shapes only, so they compile with XLA;
* ``transcription_suppress_tokens``: the tokens never generated in transcripts.

Timestamp token ``timestamp_begin + i`` stands for ``i * 0.02`` s from the start of the 30 s window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import tensorflow as tf

from xlagen.generation.logits_process import FILTER_VALUE, DecodeState, LogitsProcessor

TIME_PRECISION = 0.02  # seconds per timestamp token
FRAMES_PER_TIMESTAMP = 2  # mel frames (10 ms each) per timestamp step: conv2 has stride 2

# Whisper's language codes, in its vocabulary order (language token i is ``<|code|>``).
LANGUAGE_NAMES = {
    "en": "english", "zh": "chinese", "de": "german", "es": "spanish", "ru": "russian", "ko": "korean",
    "fr": "french", "ja": "japanese", "pt": "portuguese", "tr": "turkish", "pl": "polish", "ca": "catalan",
    "nl": "dutch", "ar": "arabic", "sv": "swedish", "it": "italian", "id": "indonesian", "hi": "hindi",
    "fi": "finnish", "vi": "vietnamese", "he": "hebrew", "uk": "ukrainian", "el": "greek", "ms": "malay",
    "cs": "czech", "ro": "romanian", "da": "danish", "hu": "hungarian", "ta": "tamil", "no": "norwegian",
    "th": "thai", "ur": "urdu", "hr": "croatian", "bg": "bulgarian", "lt": "lithuanian", "la": "latin",
    "mi": "maori", "ml": "malayalam", "cy": "welsh", "sk": "slovak", "te": "telugu", "fa": "persian",
    "lv": "latvian", "bn": "bengali", "sr": "serbian", "az": "azerbaijani", "sl": "slovenian",
    "kn": "kannada", "et": "estonian", "mk": "macedonian", "br": "breton", "eu": "basque",
    "is": "icelandic", "hy": "armenian", "ne": "nepali", "mn": "mongolian", "bs": "bosnian",
    "kk": "kazakh", "sq": "albanian", "sw": "swahili", "gl": "galician", "mr": "marathi",
    "pa": "punjabi", "si": "sinhala", "km": "khmer", "sn": "shona", "yo": "yoruba", "so": "somali",
    "af": "afrikaans", "oc": "occitan", "ka": "georgian", "be": "belarusian", "tg": "tajik",
    "sd": "sindhi", "gu": "gujarati", "am": "amharic", "yi": "yiddish", "lo": "lao", "uz": "uzbek",
    "fo": "faroese", "ht": "haitian creole", "ps": "pashto", "tk": "turkmen", "nn": "nynorsk",
    "mt": "maltese", "sa": "sanskrit", "lb": "luxembourgish", "my": "myanmar", "bo": "tibetan",
    "tl": "tagalog", "mg": "malagasy", "as": "assamese", "tt": "tatar", "haw": "hawaiian",
    "ln": "lingala", "ha": "hausa", "ba": "bashkir", "jw": "javanese", "su": "sundanese", "yue": "cantonese",
}  # fmt: skip


@dataclass(frozen=True)
class WhisperSpecialTokens:
    """Special token ids of one Whisper checkpoint (None where the vocabulary has no such token)."""

    eot: int
    sot: int
    vocab_size: int
    no_timestamps: int | None = None
    sot_prev: int | None = None
    sot_lm: int | None = None
    no_speech: int | None = None
    transcribe: int | None = None
    translate: int | None = None
    multilingual: bool = False
    languages: tuple[tuple[str, int], ...] = ()  # (code, token id), vocabulary order

    @property
    def timestamp_begin(self) -> int | None:
        """``<|0.00|>``: the token after ``<|notimestamps|>`` (None if the vocabulary has no timestamps)."""
        if self.no_timestamps is None or self.no_timestamps + 1 >= self.vocab_size:
            return None
        return self.no_timestamps + 1

    @property
    def timestamp_end(self) -> int | None:
        """The last timestamp token (``<|30.00|>`` for the standard vocabularies)."""
        return None if self.timestamp_begin is None else self.vocab_size - 1

    @property
    def lang_to_id(self) -> dict[str, int]:
        return dict(self.languages)

    def language_id(self, language: str) -> int:
        """Token id of ``language`` given as a code ("en"), a token ("<|en|>") or a name ("english")."""
        key = language.strip().lower()
        if key.startswith("<|") and key.endswith("|>"):
            key = key[2:-2]
        by_name = {name: code for code, name in LANGUAGE_NAMES.items()}
        key = by_name.get(key, key)
        ids = self.lang_to_id
        if key not in ids:
            known = ", ".join(sorted(ids)[:12])
            raise ValueError(f"unknown language {language!r} for this model (known: {known}, ...)")
        return ids[key]

    def language_code(self, token_id: int) -> str:
        for code, i in self.languages:
            if i == token_id:
                return code
        raise ValueError(f"token {token_id} is not a language token")

    @property
    def non_text(self) -> tuple[int, ...]:
        """Special tokens that never belong in a transcript's text (faster-whisper's extra suppressions)."""
        ids = (self.transcribe, self.translate, self.sot, self.sot_prev, self.sot_lm, self.no_speech)
        return tuple(sorted({i for i in ids if i is not None}))


def _token_id(tokenizer: Any, token: str) -> int | None:
    if tokenizer is None:
        return None
    vocab = getattr(tokenizer, "_whisper_vocab", None)
    if vocab is None:
        try:
            vocab = tokenizer.get_vocab()
        except AttributeError:
            vocab = {}
        try:
            tokenizer._whisper_vocab = vocab
        except AttributeError:
            pass
    value = vocab.get(token)
    return int(value) if value is not None else None


def special_tokens(model: Any, tokenizer: Any = None) -> WhisperSpecialTokens:
    """Special token ids of ``model`` (a Whisper model): from its generation config, else the tokenizer,
    else the standard layout around ``<|notimestamps|>`` (no-speech, start-of-prev, start-of-LM,
    transcribe and translate sit just below it in every released Whisper vocabulary)."""
    gc = model.generation_config
    extra: dict[str, Any] = getattr(gc, "_extra", {})
    vocab_size = int(model.config.vocab_size)
    sot = (
        gc.decoder_start_token_id
        if gc.decoder_start_token_id is not None
        else model.config.decoder_start_token_id
    )
    eot = gc.eos_token_ids[0] if gc.eos_token_ids else model.config.eos_token_id
    no_ts = extra.get("no_timestamps_token_id")
    if no_ts is None:
        no_ts = _token_id(tokenizer, "<|notimestamps|>")
    multilingual = extra.get("is_multilingual")
    if multilingual is None:
        multilingual = vocab_size >= 51865
    lang_to_id = dict(extra.get("lang_to_id") or {})
    task_to_id = dict(extra.get("task_to_id") or {})

    def find(token: str, offset: int | None) -> int | None:
        found = _token_id(tokenizer, token)
        if found is None and no_ts is not None and offset is not None and vocab_size >= 51864:
            found = no_ts - offset
        return found

    no_speech = _token_id(tokenizer, "<|nospeech|>")
    if no_speech is None:
        no_speech = find("<|nocaptions|>", 1)
    transcribe = task_to_id.get("transcribe", find("<|transcribe|>", 4))
    translate = task_to_id.get("translate", find("<|translate|>", 5))
    languages: list[tuple[str, int]] = []
    if lang_to_id:
        languages = sorted(((k.strip("<|>"), int(v)) for k, v in lang_to_id.items()), key=lambda kv: kv[1])
    elif multilingual and tokenizer is not None:
        for code in LANGUAGE_NAMES:
            idx = _token_id(tokenizer, f"<|{code}|>")
            if idx is not None:
                languages.append((code, idx))
    return WhisperSpecialTokens(
        eot=int(eot),
        sot=int(sot),
        vocab_size=vocab_size,
        no_timestamps=None if no_ts is None else int(no_ts),
        sot_prev=extra.get("prev_sot_token_id", find("<|startofprev|>", 2)),
        sot_lm=find("<|startoflm|>", 3),
        no_speech=no_speech,
        transcribe=transcribe,
        translate=translate,
        multilingual=bool(multilingual),
        languages=tuple(languages),
    )


def decoder_prompt(
    tokens: WhisperSpecialTokens,
    language: str | int | None = None,
    task: str | None = None,
    timestamps: bool = False,
    previous_tokens: list[int] | None = None,
    max_previous: int = 223,
    hotwords: list[int] | None = None,
    prefix: list[int] | None = None,
) -> list[int]:
    """The decoder prompt: ``[<|startofprev|> hotwords... previous...] <|startoftranscript|> [<|lang|>
    <|task|>] [<|notimestamps|>] [<|0.00|> prefix...]``.

    ``language`` (a code, token or token id) is required for multilingual models; English-only
    models accept only English and transcription. At most ``max_previous`` previous tokens (the
    latest ones) are kept, as the reference implementation does (half the decoder's context).
    ``hotwords`` (token ids, ignored with a ``prefix``) go before the previous text; ``prefix`` (token
    ids) is the start of the transcript, forced: the output continues it (faster-whisper's rules).
    """
    prompt: list[int] = []
    hotwords = list(hotwords or [])[:max_previous] if not prefix else []
    if previous_tokens or hotwords:
        if tokens.sot_prev is None:
            raise ValueError("this Whisper vocabulary has no <|startofprev|> token: cannot condition on text")
        prompt = [tokens.sot_prev, *hotwords]
        if previous_tokens:
            prompt.extend(int(t) for t in list(previous_tokens)[-max_previous:])
    prompt.append(tokens.sot)
    if tokens.multilingual:
        if language is None:
            raise ValueError("this Whisper model is multilingual: pass language= or detect it first")
        prompt.append(int(language) if isinstance(language, int) else tokens.language_id(language))
        task = task or "transcribe"
        task_id = {"transcribe": tokens.transcribe, "translate": tokens.translate}.get(task)
        if task_id is None:
            raise ValueError(f"unknown task {task!r}; choose 'transcribe' or 'translate'")
        prompt.append(task_id)
    else:
        if language is not None and not isinstance(language, int):
            code = language.strip().lower().strip("<|>")
            if code not in ("en", "english"):
                raise ValueError(
                    f"this Whisper model is English-only; cannot transcribe language={language!r}"
                )
        if task not in (None, "transcribe"):
            raise ValueError(f"this Whisper model is English-only; task={task!r} is not available")
    if not timestamps and tokens.no_timestamps is not None:
        prompt.append(tokens.no_timestamps)
    if timestamps and tokens.timestamp_begin is None:
        raise ValueError("this Whisper vocabulary has no timestamp tokens: cannot predict timestamps")
    if prefix:
        if timestamps:
            prompt.append(tokens.timestamp_begin)
        prompt.extend(int(t) for t in list(prefix)[:max_previous])
    return prompt


def forced_start(prompt: list[int], tokens: WhisperSpecialTokens) -> list[int]:
    """The part of ``prompt`` that belongs to the transcript (``<|0.00|>`` and a prefix): what follows
    the last special token before it. The timestamp rules count it as decoded, like faster-whisper."""
    specials = [i for i, t in enumerate(prompt) if tokens.eot <= t and not _is_timestamp(t, tokens)]
    return list(prompt[specials[-1] + 1 :]) if specials else list(prompt)


def _is_timestamp(token: int, tokens: WhisperSpecialTokens) -> bool:
    return tokens.timestamp_begin is not None and token >= tokens.timestamp_begin


def transcription_suppress_tokens(
    suppress_tokens: list[int] | tuple[int, ...] | None, tokens: WhisperSpecialTokens
) -> tuple[int, ...]:
    """The checkpoint's suppressed tokens (punctuation-like non-speech symbols), plus the special tokens
    that must not appear in a transcript (task, start-of-*, no-speech), as faster-whisper does."""
    ids = {int(t) for t in suppress_tokens or () if int(t) >= 0}
    ids.update(tokens.non_text)
    return tuple(sorted(i for i in ids if i < tokens.vocab_size))


class WhisperTimestampLogitsProcessor(LogitsProcessor):
    """Whisper's timestamp rules on the generated part of each row (the prompt is ignored):

    1. ``<|notimestamps|>`` is never generated;
    2. the first generated token is a timestamp, at most ``max_initial_timestamp_index`` steps in;
    3. timestamps come in pairs (a segment's end and the next one's start), except just before the
       end of text: after two timestamps comes text; after one (following text) comes a timestamp
       or the end of text;
    4. timestamps never decrease, and a segment (text between two timestamps) has a non-zero
       length: after text, the next timestamp is strictly later than the last one;
    5. when the probability mass of all timestamp tokens together exceeds that of the most likely
       text token, a timestamp is generated.

    Every rule is a mask over [rows, vocab], computed from the token buffer with fixed shapes.
    With ``renormalize`` the result is ``log_softmax`` of the masked scores (the reference
    implementation's beam scores are log-probabilities renormalised after masking).
    """

    def __init__(
        self,
        eot: int,
        no_timestamps: int,
        timestamp_begin: int,
        max_initial_timestamp_index: int | None,
        renormalize: bool = False,
    ) -> None:
        self.eot = eot
        self.no_timestamps = no_timestamps
        self.begin = timestamp_begin
        self.max_initial = max_initial_timestamp_index
        self.renormalize = renormalize

    def __call__(self, scores: tf.Tensor, state: DecodeState) -> tf.Tensor:
        vocab = scores.shape[-1]
        ids = tf.range(vocab)[None, :]
        is_ts = ids >= self.begin  # [1, vocab]
        tokens, valid = state.tokens, state.valid
        slots = tf.shape(tokens)[1]
        pos = tf.range(slots)[None, :]
        # The transcript so far: the real tokens after the last special one (start of transcript,
        # language, task...): the generated ones, plus a forced ``<|0.00|>`` + prefix from the prompt.
        last = tf.reduce_max(tf.where(valid, pos, -1), axis=1)  # [rows]
        prompt_end = (last - state.step)[:, None]  # real tokens sit contiguously
        special = valid & (tokens >= self.eot) & (tokens < self.begin) & (pos <= prompt_end)
        start = tf.reduce_max(tf.where(special, pos, -1), axis=1, keepdims=True)
        generated = valid & (pos > tf.where(start < 0, prompt_end, start))
        step = tf.reduce_sum(tf.cast(generated, tf.int32), axis=1)  # [rows]
        last_tok = tf.gather(tokens, tf.maximum(last, 0), batch_dims=1)
        prev_tok = tf.gather(tokens, tf.maximum(last - 1, 0), batch_dims=1)
        last_was_ts = tf.logical_and(step >= 1, last_tok >= self.begin)
        prev_was_ts = tf.logical_or(step < 2, prev_tok >= self.begin)
        lone_ts = tf.logical_and(last_was_ts, tf.logical_not(prev_was_ts))  # a segment just ended
        newest_ts = tf.reduce_max(
            tf.where(tf.logical_and(generated, tokens >= self.begin), tokens, -1), axis=1
        )

        block = tf.equal(ids, self.no_timestamps)
        block |= (last_was_ts & prev_was_ts)[:, None] & is_ts
        block |= lone_ts[:, None] & (ids < self.eot)
        # Monotonic: after a lone timestamp the next may repeat it (next segment starts where this one
        # ended); otherwise it must be later than the newest timestamp so far.
        bound = tf.where(lone_ts, newest_ts, newest_ts + 1)
        block |= is_ts & (ids < bound[:, None])
        first = (step == 0)[:, None]
        block |= tf.logical_and(first, ids < self.begin)
        if self.max_initial is not None:
            block |= tf.logical_and(first, ids > self.begin + self.max_initial)
        scores = tf.where(block, FILTER_VALUE, scores)

        logprobs = tf.nn.log_softmax(scores, axis=-1)
        ts_mass = tf.reduce_logsumexp(tf.where(is_ts, logprobs, FILTER_VALUE), axis=-1)
        best_text = tf.reduce_max(tf.where(is_ts, FILTER_VALUE, logprobs), axis=-1)
        force_ts = ts_mass > best_text
        scores = tf.where(force_ts[:, None] & tf.logical_not(is_ts), FILTER_VALUE, scores)
        if self.renormalize:
            scores = tf.nn.log_softmax(scores, axis=-1)
        return scores


class RenormalizeLogitsProcessor(LogitsProcessor):
    """``log_softmax`` of the (masked) scores: beam scores become log-probabilities over what is allowed."""

    def __call__(self, scores: tf.Tensor, state: DecodeState) -> tf.Tensor:
        return tf.nn.log_softmax(scores, axis=-1)


@dataclass(frozen=True)
class TimestampRules:
    """Hashable factory for ``LoopSpec.extra_processors``: ``factory(params, vocab_size)``."""

    eot: int
    no_timestamps: int
    timestamp_begin: int
    max_initial_timestamp_index: int | None = 50
    renormalize: bool = False

    def __call__(self, params: dict, vocab_size: int) -> LogitsProcessor:
        return WhisperTimestampLogitsProcessor(
            self.eot,
            self.no_timestamps,
            self.timestamp_begin,
            self.max_initial_timestamp_index,
            self.renormalize,
        )


@dataclass(frozen=True)
class Renormalize:
    """Hashable factory of ``RenormalizeLogitsProcessor``."""

    def __call__(self, params: dict, vocab_size: int) -> LogitsProcessor:
        return RenormalizeLogitsProcessor()


class SplitTokens(NamedTuple):
    """Generated tokens (timestamps on) cut into segments; times are in timestamp steps (0.02 s)."""

    segments: list[tuple[int, int | None, list[int]]]  # (start, end or None if unknown, tokens)
    unfinished: list[int]  # tokens after the last complete segment (decoded again in the next window)
    last_end: int | None  # end of the last complete segment: where the next window starts
    single_ending: bool  # the output ends with a lone timestamp: no speech after it in this window


def split_segments(tokens: list[int], timestamp_begin: int) -> SplitTokens:
    """Cut a window's output at each pair of consecutive timestamps (one segment's end, the next one's
    start). Without any pair the whole output is one segment, from the window start to its last
    timestamp (None: unknown, the window's end)."""
    is_ts = [t >= timestamp_begin for t in tokens]
    single_ending = len(tokens) >= 2 and not is_ts[-2] and is_ts[-1]
    cuts = [i for i in range(1, len(tokens)) if is_ts[i] and is_ts[i - 1]]
    if not cuts:
        stamps = [t - timestamp_begin for t in tokens if t >= timestamp_begin]
        end = stamps[-1] if stamps and stamps[-1] > 0 else None
        return SplitTokens([(0, end, list(tokens))], [], None, single_ending)
    if single_ending:
        cuts.append(len(tokens))
    segments = []
    begin = 0
    for cut in cuts:
        piece = list(tokens[begin:cut])
        segments.append((piece[0] - timestamp_begin, piece[-1] - timestamp_begin, piece))
        begin = cut
    return SplitTokens(segments, list(tokens[begin:]), tokens[begin - 1] - timestamp_begin, single_ending)


def timestamp_begin_of(tokenizer: Any) -> int:
    """``<|0.00|>``'s id for a Whisper tokenizer: the id after ``<|notimestamps|>`` (timestamp tokens
    need not be in the vocabulary: CTranslate2's and OpenAI's tokenizer files stop before them)."""
    no_ts = _token_id(tokenizer, "<|notimestamps|>")
    if no_ts is None:
        raise ValueError(
            "this tokenizer has no <|notimestamps|> token: it cannot be a Whisper tokenizer with timestamps"
        )
    return no_ts + 1


def decode_with_timestamps(
    tokenizer: Any, ids: Any, skip_special_tokens: bool = False, time_offset: float = 0.0
) -> str:
    """Text of one window's token ids with each timestamp token written as ``<|1.08|>`` (seconds from
    the window start, plus ``time_offset``), as Transformers' ``decode(decode_with_timestamps=True)``."""
    begin = timestamp_begin_of(tokenizer)
    pieces: list[str] = []
    run: list[int] = []
    for token in [int(t) for t in flat_ids(ids)]:
        if token >= begin:
            if run:
                pieces.append(tokenizer.decode(run, skip_special_tokens=skip_special_tokens))
                run = []
            pieces.append(f"<|{(token - begin) * TIME_PRECISION + time_offset:.2f}|>")
        else:
            run.append(token)
    if run:
        pieces.append(tokenizer.decode(run, skip_special_tokens=skip_special_tokens))
    return "".join(pieces)


def timestamp_offsets(tokenizer: Any, ids: Any, time_offset: float = 0.0) -> list[dict[str, Any]]:
    """``[{"text", "timestamp": (start, end)}]``: the text between each pair of timestamps of one
    window's token ids, as Transformers' ``decode(output_offsets=True)`` gives them."""
    begin = timestamp_begin_of(tokenizer)
    tokens = [int(t) for t in flat_ids(ids)]
    stamps = [i for i, t in enumerate(tokens) if t >= begin]
    cuts = [i for i in stamps[1:] if tokens[i - 1] >= begin]
    if not cuts and len(stamps) <= 1:
        return []
    if stamps[-1] + 1 not in cuts:
        cuts.append(stamps[-1] + 1)
    offsets = []
    start = stamps[0]
    for cut in cuts:
        piece = tokens[start:cut]
        if len(piece) > 1:
            text_ids = [t for t in piece if t < begin]
            offsets.append(
                {
                    "text": tokenizer.decode(text_ids, skip_special_tokens=True),
                    "timestamp": (
                        round((piece[0] - begin) * TIME_PRECISION + time_offset, 2),
                        round((piece[-1] - begin) * TIME_PRECISION + time_offset, 2),
                    ),
                }
            )
        start = cut
    return offsets


def flat_ids(ids: Any) -> list[int]:
    """One sequence of token ids from a list, array or tensor (a batch of one is unwrapped)."""
    if hasattr(ids, "numpy"):
        ids = ids.numpy()
    array = list(ids.tolist() if hasattr(ids, "tolist") else ids)
    if array and isinstance(array[0], list):
        if len(array) != 1:
            raise ValueError("decode one sequence at a time (got a batch)")
        array = array[0]
    return array
