"""Word-level timestamps for Whisper: cross-attention alignment and dynamic time warping.

The reference recipe (OpenAI's ``timing.py``, as CTranslate2's ``align`` and faster-whisper's
``add_word_timestamps`` run it):

* one teacher-forced decoder pass over ``<|startoftranscript|> [lang task] <|notimestamps|>`` + the
  window's text tokens (all its segments, timestamps removed) + ``<|endoftext|>`` on the window's
  encoder output (``TFWhisperForConditionalGeneration.alignment_outputs``);
* the cross-attention scores of the alignment heads, cut to the window's audio (``num_frames / 2``
  encoder positions), softmax over them, standardised per head along the tokens, median-filtered
  along time (width 7, reflected edges), averaged over the heads;
* dynamic time warping on the negated matrix (rows: the position before each text token and the
  end of text); a token starts where the path first reaches its row;
* tokens grouped into words (at spaces and punctuation; at unicode boundaries for zh/ja/th/lo/my/yue),
  a word's probability the mean of its tokens' (softmax over text tokens of the teacher-forced
  logits), punctuation merged into the neighbouring word;
* faster-whisper's clean-up: words at sentence ends and after a pause no longer than twice the
  median word duration (at most 0.7 s), segment boundaries moved to the words, except where the
  first or last word is much longer than the segment says.

The decoder pass, the matrix and DTW's forward pass run as one XLA program of their own
(``word_alignment_pass``; token length padded to 32/64/128/256/448, so each bucket compiles once and
normal decoding is untouched); only the backtrace (< 1 ms) runs in Python. Measured for a 30 s window
of 95 text tokens with tiny.en on 2 shared CPU cores: the whole program ~330-350 ms, of which the
full-vocabulary softmax for the word probabilities is ~190 ms; DTW on the 96 x 1500 matrix takes
~1.2 ms in XLA (a scan over the 1596 anti-diagonals) against 20-40 ms vectorised in NumPy (``dtw``,
kept as the reference) and the matrix ~60-80 ms in NumPy (``alignment_matrix``).

``token_timestamps`` is Transformers' ``return_token_timestamps`` on the same pass (see its docstring
for how it differs from the word recipe).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
UNICODE_SPLIT_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})
TOKENS_PER_SECOND = 50  # encoder positions per second of audio (20 ms each)
SENTENCE_END_MARKS = ".。!！?？"


@dataclass
class Word:
    """One word of a segment: times in seconds from the start of the audio, the text with its leading
    space, and the mean probability of its tokens (faster-whisper's ``Word``)."""

    start: float
    end: float
    word: str
    probability: float


@dataclass
class WordTiming:
    """A word as the alignment found it: window-relative times and its tokens."""

    word: str
    tokens: list[int] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    probability: float = 0.0


# -- alignment heads ----------------------------------------------------------------------------------
def alignment_heads(model: Any) -> tuple[tuple[int, int], ...]:
    """(decoder layer, head) pairs used for alignment: the generation config's ``alignment_heads``
    (Transformers' layout, also what the CTranslate2 loader copies from its config.json), else all
    heads of the last half of the decoder layers (OpenAI's and CTranslate2's default)."""
    config = model.config
    layers, heads = int(config.decoder_layers), int(config.decoder_attention_heads)
    gc = model.generation_config
    value = getattr(gc, "_extra", {}).get("alignment_heads", getattr(gc, "alignment_heads", None))
    if not value:
        return tuple((layer, head) for layer in range(layers // 2, layers) for head in range(heads))
    try:
        pairs = tuple((int(layer), int(head)) for layer, head in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"generation_config.alignment_heads must be [layer, head] pairs, got {value!r}"
        ) from None
    bad = [p for p in pairs if not (0 <= p[0] < layers and 0 <= p[1] < heads)]
    if bad:
        raise ValueError(
            f"generation_config.alignment_heads {bad} are outside this model's {layers} decoder layers "
            f"x {heads} heads"
        )
    return pairs


# -- numerics -------------------------------------------------------------------------------------------
def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a sliding window of odd ``width`` along the last axis, edges reflected (as
    ``scipy.ndimage``/OpenAI/CTranslate2); unchanged when the axis is not longer than ``width // 2``."""
    if width <= 0 or width % 2 != 1:
        raise ValueError(f"median filter width must be a positive odd number, got {width}")
    pad = width // 2
    if x.shape[-1] <= pad or width == 1:
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.partition(windows, pad, axis=-1)[..., pad]


def dtw(cost: np.ndarray, dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic time warping: the monotonic path through ``cost`` [N, M] from (0, 0) to (N-1, M-1) with
    the least total cost, as (row indices, column indices).

    The reference's rules: sums in ``dtype`` (float32: OpenAI, CTranslate2; Transformers: float64), a
    diagonal step only when strictly cheapest, then a step down when strictly cheapest, else a step
    right. Computed one anti-diagonal at a time (each cell depends only on the two anti-diagonals
    before it) in a skewed layout where each anti-diagonal is a contiguous row: N + M vector steps.
    """
    x = np.asarray(cost, dtype)
    n, m = x.shape
    if n == 0 or m == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, cols = np.meshgrid(np.arange(1, n + 1), np.arange(1, m + 1), indexing="ij")
    skewed = np.full((n + m + 1, n + 1), np.inf, dtype)  # [i + j, i]: cell (i, j) of the 1-padded grid
    skewed[rows + cols, rows] = x
    acc = np.full((n + m + 1, n + 1), np.inf, dtype)
    acc[0, 0] = 0.0
    trace = np.full((n + m + 1, n + 1), 2, np.int8)
    for d in range(2, n + m + 1):
        c0, c1, c2 = acc[d - 2, :-1], acc[d - 1, :-1], acc[d - 1, 1:]
        diagonal = (c0 < c1) & (c0 < c2)
        down = ~diagonal & (c1 < c0) & (c1 < c2)
        acc[d, 1:] = skewed[d, 1:] + np.where(diagonal, c0, np.where(down, c1, c2))
        trace[d, 1:] = np.where(diagonal, 0, np.where(down, 1, 2))
    # The borders are infinite, so the path always ends with the diagonal step (1, 1) -> (0, 0).
    return backtrace(trace, n, m)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _standardize(x: np.ndarray, axis: int) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (x - x.mean(axis=axis, keepdims=True)) / x.std(axis=axis, keepdims=True)


def _bucket(length: int, limit: int) -> int:
    """Token lengths the alignment program is compiled for: 32, 64, 128, 256, then the model's limit."""
    if length > limit:
        raise ValueError(f"cannot align {length} tokens: the decoder takes at most {limit}")
    size = 32
    while size < length:
        size *= 2
    return min(size, limit)


def alignment_pass(model: Any, hidden: Any, sequences: list[list[int]], heads, text_vocab: int):
    """Run the alignment program on ``sequences`` (one per row of ``hidden``, padded here to one bucket):
    cross-attention scores [B, heads, T, positions] and next-token probabilities [B, T] (NumPy)."""
    width = _bucket(max(len(s) for s in sequences), int(model.config.max_target_positions))
    ids = np.zeros([len(sequences), width], np.int32)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        ids[row, len(seq) :] = seq[-1]
    scores, probs = model._compiled_alignment(hidden, ids, heads, text_vocab)
    return scores.numpy(), probs.numpy()


# -- the same in XLA: matrix and DTW inside the alignment program ------------------------------------------
_BIG = 1e30


def _median7_tf(values: list) -> Any:
    """Elementwise median of an odd number of tensors (odd-even transposition sort: n rounds)."""
    import tensorflow as tf

    v = list(values)
    for round_ in range(len(v)):
        for k in range(round_ % 2, len(v) - 1, 2):
            v[k], v[k + 1] = tf.minimum(v[k], v[k + 1]), tf.maximum(v[k], v[k + 1])
    return v[len(v) // 2]


def alignment_trace_tf(scores: Any, lengths: Any, frames: Any, offset: int, width: int) -> Any:
    """``alignment_matrix`` and ``dtw``'s forward pass for a batch, in TensorFlow (XLA): scores
    [B, heads, T, S], ``lengths`` [B] tokens, ``frames`` [B] audio positions; rows ``offset`` ..
    length - 2 are aligned. Returns the DTW trace [B, N + S + 1, N + 1] (N = T - offset) in the
    skewed layout of ``dtw`` (0 diagonal, 1 down, 2 right); cells past a row's own (rows, frames)
    corner hold values that its path never reads."""
    import tensorflow as tf

    from xlagen.models.layers import shape_list

    b, _, t, s = shape_list(scores)
    positions = tf.range(s)
    audio = positions[None, None, None, :] < frames[:, None, None, None]  # [B, 1, 1, S]
    # XLA CPU does not keep infinities (fast math): large finite values stand in for them
    weights = tf.nn.softmax(tf.where(audio, scores, -_BIG), axis=-1)
    weights = tf.where(audio, weights, 0.0)
    real = tf.cast(tf.range(t)[None, None, :, None] < lengths[:, None, None, None], weights.dtype)
    count = tf.cast(lengths, weights.dtype)[:, None, None, None]
    mean = tf.reduce_sum(weights * real, axis=2, keepdims=True) / count
    std = tf.sqrt(tf.reduce_sum(tf.square((weights - mean) * real), axis=2, keepdims=True) / count)
    weights = tf.where(audio, (weights - mean) / std, 0.0)
    pad = width // 2
    if width > 1:  # median over the window, edges reflected at each row's last audio position
        shifted = []
        for k in range(-pad, pad + 1):
            at = tf.abs(positions[None, :] + k)  # [1, S]
            at = tf.where(at >= frames[:, None], 2 * frames[:, None] - at - 2, at)  # [B, S]
            shifted.append(tf.gather(weights, tf.clip_by_value(at, 0, s - 1), axis=3, batch_dims=1))
        filtered = _median7_tf(shifted)
        weights = tf.where((frames > pad)[:, None, None, None], filtered, weights)
    return dtw_trace_tf(-tf.reduce_mean(weights, axis=1)[:, offset:, :])


def dtw_trace_tf(cost: Any) -> Any:
    """``dtw``'s forward pass on a batch of costs [B, N, S] in TensorFlow: the trace [B, N + S + 1,
    N + 1] in ``dtw``'s skewed layout, one loop step per anti-diagonal."""
    import tensorflow as tf

    from xlagen.models.layers import shape_list

    b, n, s = shape_list(cost)
    # skewed: row d holds the anti-diagonal i + j = d of the 1-padded grid, column i
    d = tf.range(n + s + 1)[:, None]
    i = tf.range(n + 1)[None, :]
    j = d - i
    inside = (i >= 1) & (j >= 1) & (j <= s)
    flat = tf.reshape(cost, [b, n * s])
    where = tf.where(inside, (i - 1) * s + (j - 1), 0)
    skewed = tf.where(inside[None], tf.gather(flat, where, axis=1), _BIG)  # [B, N + S + 1, N + 1]
    inf = tf.fill([b, n + 1], np.float32(_BIG))  # borders: sums of them stay far above any path's cost
    first = tf.concat([tf.zeros([b, 1]), inf[:, 1:]], axis=1)  # anti-diagonal 0: the origin
    two = tf.constant(2, tf.int8)

    def step(carry, x):
        before, last, _ = carry
        c0, c1, c2 = before[:, :-1], last[:, :-1], last[:, 1:]
        diagonal = (c0 < c1) & (c0 < c2)
        down = ~diagonal & (c1 < c0) & (c1 < c2)
        new = x[:, 1:] + tf.where(diagonal, c0, tf.where(down, c1, c2))
        move = tf.where(diagonal, tf.constant(0, tf.int8), tf.where(down, tf.constant(1, tf.int8), two))
        return last, tf.concat([inf[:, :1], new], axis=1), tf.concat([tf.fill([b, 1], two), move], axis=1)

    rows = tf.scan(step, tf.transpose(skewed[:, 2:], [1, 0, 2]), (first, inf, tf.fill([b, n + 1], two)))[2]
    start = tf.fill([b, 2, n + 1], two)
    return tf.concat([start, tf.transpose(rows, [1, 0, 2])], axis=1)


def backtrace(trace: np.ndarray, rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """The DTW path ending at (rows - 1, cols - 1) from a skewed trace (``alignment_trace_tf``)."""
    i, j = rows, cols
    path_i, path_j = [], []
    while i > 0 and j > 0:
        path_i.append(i - 1)
        path_j.append(j - 1)
        step = trace[i + j, i]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return np.array(path_i[::-1], np.int64), np.array(path_j[::-1], np.int64)


def word_alignment_pass(
    model: Any, hidden: Any, sequences: list[list[int]], frames: list[int], heads, text_vocab: int, offset: int,
    width: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """One XLA program (per token bucket) from the decoder pass to the DTW trace: (trace [B, ...],
    next-token probabilities [B, T])."""
    import tensorflow as tf

    limit = int(model.config.max_target_positions)
    size = _bucket(max(len(s) for s in sequences), limit)
    ids = np.zeros([len(sequences), size], np.int32)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
        ids[row, len(seq) :] = seq[-1]
    heads = tuple((int(a), int(h)) for a, h in heads)

    def run(hid, tok, lengths, audio):
        scores, probs = model.alignment_outputs(hid, tok, heads, text_vocab)
        return alignment_trace_tf(scores, lengths, audio, offset, width), probs

    program = model._aux_programs.get(("word_alignment", heads, int(text_vocab), offset, width), run)
    trace, probs = program(
        tf.convert_to_tensor(hidden, tf.float32), tf.constant(ids),
        tf.constant([len(s) for s in sequences], tf.int32), tf.constant(frames, tf.int32),
    )  # fmt: skip
    return trace.numpy(), probs.numpy()


# -- words ----------------------------------------------------------------------------------------------
def _decode(tokenizer: Any, tokens: list[int], eot: int) -> str:
    text = [t for t in tokens if t < eot]
    if not text:
        return ""
    return tokenizer.decode(text, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def split_tokens_on_unicode(tokenizer: Any, tokens: list[int], eot: int) -> tuple[list[str], list[list[int]]]:
    """Cut ``tokens`` where the text decoded so far is whole unicode characters (no U+FFFD left
    dangling); special tokens decode to the empty string."""
    full = _decode(tokenizer, tokens, eot)
    replacement = "\ufffd"
    words: list[str] = []
    word_tokens: list[list[int]] = []
    current: list[int] = []
    offset = 0
    for token in tokens:
        current.append(token)
        decoded = _decode(tokenizer, current, eot)
        at = decoded.find(replacement)
        if at < 0 or (at + offset < len(full) and full[at + offset] == replacement):
            words.append(decoded)
            word_tokens.append(current)
            current = []
            offset += len(decoded)
    return words, word_tokens


def split_to_word_tokens(
    tokenizer: Any, tokens: list[int], eot: int, language: str | None = None
) -> tuple[list[str], list[list[int]]]:
    """Group ``tokens`` into words: a new word at a leading space, at punctuation and at special
    tokens; for languages written without spaces, at every unicode boundary."""
    pieces, piece_tokens = split_tokens_on_unicode(tokenizer, tokens, eot)
    if language in UNICODE_SPLIT_LANGUAGES:
        return pieces, piece_tokens
    words: list[str] = []
    word_tokens: list[list[int]] = []
    for piece, toks in zip(pieces, piece_tokens):
        if toks[0] >= eot or piece.startswith(" ") or piece.strip() in string.punctuation or not words:
            words.append(piece)
            word_tokens.append(list(toks))
        else:
            words[-1] += piece
            word_tokens[-1].extend(toks)
    return words, word_tokens


def merge_punctuations(alignment: list[WordTiming], prepended: str, appended: str) -> None:
    """Attach opening punctuation to the next word and closing punctuation to the previous one (the
    emptied entries stay, with no text and no tokens), in place."""
    i, j = len(alignment) - 2, len(alignment) - 1
    while i >= 0:
        previous, following = alignment[i], alignment[j]
        if previous.word.startswith(" ") and previous.word.strip() in prepended:
            following.word = previous.word + following.word
            following.tokens = previous.tokens + following.tokens
            previous.word, previous.tokens = "", []
        else:
            j = i
        i -= 1
    i, j = 0, 1
    while j < len(alignment):
        previous, following = alignment[i], alignment[j]
        if not previous.word.endswith(" ") and following.word in appended:
            previous.word = previous.word + following.word
            previous.tokens = previous.tokens + following.tokens
            following.word, following.tokens = "", []
        else:
            i = j
        j += 1


def alignment_matrix(
    scores: np.ndarray, length: int, num_frames: int, median_filter_width: int = 7
) -> np.ndarray:
    """The reference's alignment matrix [length, num_frames // 2] of one sequence from its heads' scores
    [heads, T, positions]: softmax over the window's audio positions, per head standardised along the
    ``length`` tokens, median-filtered along time, averaged over the heads."""
    frames = min(num_frames // 2, scores.shape[-1])
    weights = _softmax(scores[:, :length, :frames].astype(np.float32))
    weights = median_filter(_standardize(weights, axis=-2), median_filter_width)
    return weights.mean(axis=0)


def find_alignment(
    model: Any,
    tokenizer: Any,
    hidden: Any,
    sot_sequence: list[int],
    text_tokens: list[list[int]],
    num_frames: list[int],
    eot: int,
    no_timestamps: int,
    language: str | None = None,
    heads: tuple[tuple[int, int], ...] | None = None,
    median_filter_width: int = 7,
) -> list[list[WordTiming]]:
    """Words of each row's ``text_tokens`` with window-relative start/end times and probabilities.

    ``hidden`` [B, positions, d_model] is the encoder output of B windows, ``num_frames`` their mel
    frames with audio (at most 3000), ``sot_sequence`` the start of transcript with language/task
    tokens. One call of the alignment program for the whole batch.
    """
    heads = tuple(heads or alignment_heads(model))
    rows = [i for i, toks in enumerate(text_tokens) if toks]
    results: list[list[WordTiming]] = [[] for _ in text_tokens]
    if not rows:
        return results
    sequences = [[*sot_sequence, no_timestamps, *text_tokens[i], eot] for i in rows]
    positions = int(np.shape(hidden)[1])
    frames = [min(num_frames[i] // 2, positions) for i in rows]
    selected = hidden if len(rows) == len(text_tokens) else np.asarray(hidden)[rows]
    offset = len(sot_sequence)
    trace, probs = word_alignment_pass(
        model, selected, sequences, frames, heads, eot, offset, median_filter_width
    )
    for k, row in enumerate(rows):
        text = text_tokens[row]
        if frames[k] < 1:
            continue
        text_indices, time_indices = backtrace(trace[k], len(text) + 1, frames[k])
        words, word_tokens = split_to_word_tokens(tokenizer, [*text, eot], eot, language)
        if len(word_tokens) <= 1:
            continue
        boundaries = np.pad(np.cumsum([len(t) for t in word_tokens[:-1]]), (1, 0))
        jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
        jump_times = time_indices[jumps] / TOKENS_PER_SECOND
        token_probs = probs[k, offset : offset + len(text)]
        results[row] = [
            WordTiming(
                word, toks, float(jump_times[a]), float(jump_times[b]), float(np.mean(token_probs[a:b]))
            )
            for word, toks, a, b in zip(words, word_tokens, boundaries[:-1], boundaries[1:])
        ]
    return results


@dataclass
class SegmentSpan:
    """A segment of one window for ``add_word_timestamps``: absolute times and its tokens."""

    start: float
    end: float
    tokens: list[int]
    words: list[Word] = field(default_factory=list)


def add_word_timestamps(
    model: Any,
    tokenizer: Any,
    hidden: Any,
    windows: list[list[SegmentSpan]],
    offsets: list[float],
    num_frames: list[int],
    sot_sequence: list[int],
    eot: int,
    no_timestamps: int,
    language: str | None,
    prepend_punctuations: str = PREPEND_PUNCTUATIONS,
    append_punctuations: str = APPEND_PUNCTUATIONS,
    last_speech_timestamp: float = 0.0,
    heads: tuple[tuple[int, int], ...] | None = None,
) -> float:
    """Give every segment of each window (one row of ``hidden`` per window, starting at ``offsets``
    seconds) its words, and move its start/end to them as faster-whisper does, in place. Returns
    the end of the last speech (``last_speech_timestamp``, updated)."""
    text_per_segment = [[[t for t in s.tokens if t < eot] for s in segments] for segments in windows]
    text = [[t for toks in per_segment for t in toks] for per_segment in text_per_segment]
    alignments = find_alignment(
        model, tokenizer, hidden, sot_sequence, text, num_frames, eot, no_timestamps, language, heads
    )
    for window, (segments, alignment) in enumerate(zip(windows, alignments)):
        durations = np.array([w.end - w.start for w in alignment])
        durations = durations[durations.nonzero()]
        median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
        longest = median * 2
        if len(durations):  # words at sentence boundaries are at most twice the median word duration
            for i in range(1, len(alignment)):
                if alignment[i].end - alignment[i].start > longest:
                    if alignment[i].word in SENTENCE_END_MARKS:
                        alignment[i].end = alignment[i].start + longest
                    elif alignment[i - 1].word in SENTENCE_END_MARKS:
                        alignment[i].start = alignment[i].end - longest
        merge_punctuations(alignment, prepend_punctuations, append_punctuations)
        offset = offsets[window]
        index = 0
        for segment, segment_text in zip(segments, text_per_segment[window]):
            saved = 0
            words: list[Word] = []
            while index < len(alignment) and saved < len(segment_text):
                timing = alignment[index]
                if timing.word:
                    words.append(
                        Word(round(offset + timing.start, 2), round(offset + timing.end, 2), timing.word,
                             timing.probability)
                    )  # fmt: skip
                saved += len(timing.tokens)
                index += 1
            if words:
                last_speech_timestamp = _clip_segment_words(
                    segment, words, median, longest, last_speech_timestamp
                )
            segment.words = words
    return last_speech_timestamp


def _clip_segment_words(
    segment: SegmentSpan, words: list[Word], median: float, longest: float, last_speech: float
) -> float:
    """faster-whisper's boundary rules for one segment's words (in place); returns its new end."""
    first, second = words[0], words[1] if len(words) > 1 else None
    # the first word after a pause, or the first two, are at most twice the median word duration
    if first.end - last_speech > median * 4 and (
        first.end - first.start > longest or (second is not None and second.end - first.start > longest * 2)
    ):
        if second is not None and second.end - second.start > longest:
            boundary = max(second.end / 2, second.end - longest)
            first.end = second.start = boundary
        first.start = max(0, first.end - longest)
    # the segment's own start when the first word is much longer, else the first word's start
    if segment.start < first.end and segment.start - 0.5 > first.start:
        first.start = max(0, min(first.end - median, segment.start))
    else:
        segment.start = first.start
    last = words[-1]
    if segment.end > last.start and segment.end + 0.5 < last.end:
        last.end = max(last.start + median, segment.end)
    else:
        segment.end = last.end
    return segment.end


def words_end(windows_segments: list[SegmentSpan]) -> float | None:
    """The end of the last word of these segments, else the last segment's end (faster-whisper's
    ``get_end``: where the next window starts when words were computed)."""
    for segment in reversed(windows_segments):
        if segment.words:
            return segment.words[-1].end
    return windows_segments[-1].end if windows_segments else None


# -- token-level timestamps (Transformers' return_token_timestamps) ------------------------------------
def token_timestamps(
    model: Any,
    hidden: Any,
    sequences: Any,
    num_input_ids: int,
    num_frames: int | list[int] | None = None,
    heads: tuple[tuple[int, int], ...] | None = None,
    median_filter_width: int | None = None,
    time_precision: float = 0.02,
) -> np.ndarray:
    """Per-token times [B, L] of generated ``sequences`` [B, L] (prompt of ``num_input_ids`` tokens
    first), computed as Transformers' ``generate(..., return_token_timestamps=True)`` does.

    Transformers reads the cross-attention of the generation steps, so it differs from the word
    recipe above: the attention is the softmax over all encoder positions (cut to ``num_frames / 2``
    afterwards, no new softmax), only the generated tokens' rows are standardised (the prompt's are
    dropped first), the row of token k is the step that read token k (not the one that predicted
    it), DTW runs in float64, and each token gets the time where the path reaches its row (the last
    one repeats the one before; prompt tokens get 0). Without ``num_frames`` (no attention mask) all
    1500 positions are used; the median filter is applied in both cases.
    """
    seqs = np.asarray(sequences, np.int64)
    batch, length = seqs.shape
    heads = tuple(heads or alignment_heads(model))
    width = median_filter_width or int(getattr(model.config, "median_filter_width", 7) or 7)
    out = np.zeros([batch, length], np.float32)
    if length - 1 <= num_input_ids:
        return out
    # the step rows: every position but the last (its token is never fed back)
    from xlagen.models.whisper.decoding import special_tokens

    steps = [[int(t) for t in s[:-1]] for s in seqs]
    scores, _ = alignment_pass(model, hidden, steps, heads, special_tokens(model).eot)
    weights = _softmax(scores[:, :, : length - 1].astype(np.float32))  # [B, heads, L - 1, positions]
    frames = None
    if num_frames is not None:
        frames = np.broadcast_to(np.asarray(num_frames, np.int64), [batch])
    for b in range(batch):
        w = weights[b, :, num_input_ids:]
        if frames is not None:
            w = w[..., : frames[b] // 2]
        matrix = median_filter(_standardize(w, axis=-2), width).mean(axis=0)
        text_indices, time_indices = dtw(-matrix, np.float64)
        jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
        jump_times = time_indices[jumps] * time_precision
        out[b, num_input_ids:] = np.concatenate([jump_times, jump_times[-1:]])
    return out
