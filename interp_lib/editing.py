"""Model editing: find a fact the model knows, find where it is recalled, rewrite it with one
rank-one update of one MLP's output matrix (ROME), and measure what the edit fixes and what it
breaks, next to constrained fine-tuning of the same layer.

ROME is Meng, Bau, Andonian & Belinkov (2022), "Locating and Editing Factual Associations in
GPT" (NeurIPS). It reads an MLP as a key-value memory (Geva, Schuster, Berant & Levy 2021,
"Transformer Feed-Forward Layers Are Key-Value Memories"): the MLP's hidden activation at a
position, ``k`` (``hook_post``, ``[d_mlp]``), is a *key*; the output matrix turns it into a
*value*, ``k @ W_out + b_out`` (``hook_mlp_out``, ``[d_model]``). To make the model say a new
object ``o*`` about a subject ``s``:

1. **the key** ``k*`` (:func:`subject_key`): the MLP's hidden activation at the subject's last
   token, averaged over the edit prompt behind a few short random prefixes
   (:func:`context_prefixes`, text the model itself writes), so that it does not depend on one
   context;
2. **the value** ``v*`` (:func:`optimise_value`): the MLP output at that position that makes
   ``o*`` likely, found by gradient descent on a vector ``δ`` added there,
   ``v* = v₀ + δ``: the mean negative log-probability of ``o*`` over the prefixed prompts, plus
   the paper's KL term that keeps what the model says after "{subject} is a" (the subject's
   other properties), plus a small penalty on ``‖δ‖² / ‖v₀‖²``; ``δ`` is kept within ``clamp``
   times ``‖v₀‖`` (the authors' 20 Adam steps, KL weight 0.0625 and clamp 4; the learning
   rate, 0.5, is here in units of ``v₀``'s root-mean-square entry, so that one setting suits
   models of any size);
3. **the covariance** of keys ``C = E[k kᵀ]`` (:func:`key_covariance`) over text the model
   reads, here the shipped held-out text, accumulated chunk by chunk (memory ``d_mlp²``,
   whatever the text's length);
4. **the update** (:func:`rank_one_update`), the least change of ``W_out`` (weighted by how
   often each key direction occurs, ``C``) that maps ``k*`` to ``v*``:
   ``W' = W + (C⁻¹ k*) Λᵀ`` with ``Λ = (v* − k* W) / (k*ᵀ C⁻¹ k*)``, so ``k* W' = v*`` exactly,
   and a key ``x`` with ``xᵀ C⁻¹ k* = 0`` is mapped as before (:func:`rome` adds a small ridge
   to ``C``: an MLP's dead neurons make it nearly singular).

The layer, and the position (the subject's last token, ROME's, or the prompt's last token, the
other option of the authors' code), are where restoring the MLP output brings back the most of
the answer in a causal trace (:func:`edit_layer`, on :func:`interp_lib.patching.causal_trace`,
which is reused, not re-implemented), or ones you give. On the course model the traces of the
facts it knows send the edit to the last token (notebook 11 shows why).

:func:`rome` does it all and returns a :class:`RomeEdit`; :func:`finetune_edit` is the
baseline the paper compares with: gradient steps on the same layer's ``W_out`` (every entry
free), optionally kept within an L∞ ball around the original weights ("FT+L", after Zhu et al.
2020, "Modifying Memories in Transformer Models"). Both are :class:`WeightEdit` objects, applied
only inside ``with edit.applied(model):``, which restores the original weights bit for bit on
exit, also when the body raises. The edit changes the real parameter of
``model.blocks[layer].mlp`` (:func:`mlp_output_weight`); ``model.W_out`` is a stacked copy
the bridge builds from it on every access, so it shows the edit too.

**Measuring the edit** as the paper does (:func:`evaluate_edit`, :func:`compare_edits`): a
probability ``P(o | prompt)`` is the exponential of the mean log-probability of the object's
tokens (:func:`object_log_probs`). *Efficacy*: on the edit prompt, does the new object beat
the old? *Paraphrase*: the same on other phrasings. *Neighbourhood* (specificity): on prompts
about other subjects, does each keep its own answer rather than take the new object? Each is a
score (the fraction of prompts) and a margin (the mean probability difference). *Neighbourhood
KL*: the mean KL divergence from the unedited to the edited next-token distribution on those
prompts (Hoelscher-Obermaier et al. 2023, "Detecting Edit Failures In Large Language Models:
An Improved Specificity Benchmark"). *Fluency*: the n-gram entropy of text generated about the
subject (:func:`ngram_entropy`). *Held-out loss*: the mean next-token loss on other text.

Finding facts: :func:`score_facts` scores ``(subject, template, object)`` triples
(:class:`Fact`) by the model's probability of the object and keeps those it gets right (greedy
decoding reproduces the object); :data:`CANDIDATE_FACTS` and :data:`EDIT_CASES` hold
candidates for the course model (State of the Union addresses and *Moby-Dick*) and for GPT-2
small (CounterFact, Meng et al. 2022).

>>> import tempfile
>>> import torch
>>> from interp_lib import load_model
>>> from interp_lib.tiny_models import save_tiny_gpt2
>>> from interp_lib import editing
>>> model = load_model(str(save_tiny_gpt2(tempfile.mkdtemp(), n_layers=2)), device="cpu")
>>> from interp_lib.data import probe_sentences
>>> fact = editing.Fact("The cat", "{} sat on the", " mat")
>>> stats = editing.key_covariance(model, 1, probe_sentences(100))
>>> edit = editing.rome(model, fact, " dog", layer=1, at="last", statistics=stats,
...                     prefixes=[""])
>>> before = model.W_out[1].clone()
>>> with edit.applied(model):
...     lp = editing.object_log_probs(model, [fact.prompt], [" dog", " mat"])
>>> bool(lp[0, 0] > lp[0, 1]), torch.equal(model.W_out[1], before)
(True, True)
"""

from __future__ import annotations

import abc
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Bool, Float, Int

from interp_lib import validate
from interp_lib.generation import generate
from interp_lib.hooks import hook_name
from interp_lib.inputs import check_layer, pad_id, pad_rows
from interp_lib.logprobs import sequence_loss
from interp_lib.patching import CausalTrace, causal_trace, subject_positions
from interp_lib.validate import check_model, check_same_model, model_signature

__all__ = [
    "CANDIDATE_FACTS",
    "EDIT_CASES",
    "EditCase",
    "EditComparison",
    "EditScores",
    "Fact",
    "FactScores",
    "FineTuneEdit",
    "KeyStatistics",
    "LayerChoice",
    "MlpOutputWeight",
    "POSITIONS",
    "RomeEdit",
    "ValueSearch",
    "WeightEdit",
    "compare_edits",
    "context_prefixes",
    "edit_layer",
    "evaluate_edit",
    "finetune_edit",
    "key_covariance",
    "mlp_output_weight",
    "ngram_entropy",
    "object_log_probs",
    "optimise_value",
    "rank_one_update",
    "rome",
    "score_facts",
    "subject_key",
    "text_losses",
]


# ---------------------------------------------------------------- facts


@dataclass(frozen=True)
class Fact:
    """A ``(subject, relation, object)`` triple: ``template`` holds ``"{}"`` where the subject
    goes (``"{} of"``), ``object`` is what should follow the prompt, with its leading space
    (``" Representatives"``). ``prompt`` is the template with the subject filled in."""

    subject: str
    template: str
    object: str

    def __post_init__(self) -> None:
        for label in ("subject", "template", "object"):
            value = getattr(self, label)
            if not isinstance(value, str):
                raise TypeError(f"fact {label} must be a string, got {type(value).__name__}")
        if not self.subject.strip():
            raise ValueError("fact subject is empty: give the words the fact is about")
        if self.template.count("{}") != 1:
            raise ValueError(f"fact template must contain '{{}}' exactly once (where the "
                             f"subject goes), got {self.template!r}")
        if not self.object.strip():
            raise ValueError("fact object is empty: give what should follow the prompt, with "
                             "its leading space (' Paris')")

    @property
    def prompt(self) -> str:
        return self.template.replace("{}", self.subject)

    @classmethod
    def of(cls, value: Any, name: str = "fact") -> Fact:
        """``value`` if it is a :class:`Fact`, or a ``(subject, template, object)`` triple."""
        if isinstance(value, Fact):
            return value
        if isinstance(value, tuple | list) and len(value) == 3:
            return cls(*value)
        raise TypeError(f"{name} must be a Fact or a (subject, template, object) triple, got "
                        f"{type(value).__name__}")


@dataclass(frozen=True)
class EditCase:
    """One edit to make and the prompts that measure it, in the form of the CounterFact
    dataset (Meng et al. 2022): the ``fact`` the model knows, the ``new_object`` to put in its
    place, ``paraphrases`` (other prompts whose answer is the same object of the same subject),
    ``neighbours`` (``(prompt, answer)`` about *other* subjects, which should keep their
    answers) and ``generation_prompts`` (beginnings of text about the subject, for fluency).
    ``source`` says where the case comes from."""

    fact: Fact
    new_object: str
    paraphrases: tuple[str, ...]
    neighbours: tuple[tuple[str, str], ...]
    generation_prompts: tuple[str, ...]
    source: str = ""

    def __post_init__(self) -> None:
        Fact.of(self.fact, "case fact")
        if not isinstance(self.new_object, str) or not self.new_object.strip():
            raise ValueError("new_object must be a non-empty string (with its leading space)")
        if self.new_object == self.fact.object:
            raise ValueError("new_object is the fact's own object: an edit must change it")
        validate.texts(self.paraphrases, "paraphrases")
        validate.texts(self.generation_prompts, "generation_prompts")
        if not self.neighbours:
            raise ValueError("neighbours is empty: give (prompt, answer) pairs about other "
                             "subjects")
        for i, pair in enumerate(self.neighbours):
            if not (isinstance(pair, tuple | list) and len(pair) == 2
                    and all(isinstance(x, str) and x.strip() for x in pair)):
                raise TypeError(f"neighbours[{i}] must be a (prompt, answer) pair of strings, "
                                f"got {pair!r}")


#: Candidate facts to score with :func:`score_facts`, by kind. The course model's training text
#: is State of the Union addresses and *Moby-Dick*, so most are offices, institutions, places,
#: ships and characters from those; which of them it knows is found by measurement. The last
#: group is from the set of facts GPT-2 XL knows that Meng et al. (2022) traced (their
#: ``known_1000.json``), plus the Space Needle prompt of their causal-tracing figure.
CANDIDATE_FACTS: dict[str, list[Fact]] = {
    "offices": [
        Fact("the Secretary", "{} of the", " Treasury"),
        Fact("Mr. Vice", "{}", " President"),
        Fact("the Chief", "{}", " Justice"),
        Fact("the Attorney", "{}", " General"),
        Fact("the Postmaster", "{}", " General"),
        Fact("the Commissioner", "{} of Indian", " Affairs"),
        Fact("the Speaker", "{} of the", " House"),
        Fact("The Secretary of War", "{} and the Secretary of the", " Navy"),
    ],
    "institutions": [
        Fact("the House", "{} of", " Representatives"),
        Fact("The Supreme", "{}", " Court"),
        Fact("the Department", "{} of", " Agriculture"),
        Fact("the Senate", "{} of the United", " States"),
        Fact("the Bank", "{} of the United", " States"),
        Fact("the Interstate Commerce", "{}", " Commission"),
        Fact("the Civil Service", "{}", " Commission"),
        Fact("the Federal Reserve", "{}", " System"),
        Fact("the Army", "{} and", " Navy"),
        Fact("the State", "{} of the", " Union"),
    ],
    "places": [
        Fact("The District", "{} of", " Columbia"),
        Fact("The Gulf", "{} of", " Mexico"),
        Fact("the Isthmus", "{} of", " Panama"),
        Fact("the Panama", "{}", " Canal"),
        Fact("the Philippine", "{}", " Islands"),
        Fact("the Hawaiian", "{}", " Islands"),
        Fact("the Rocky", "{}", " Mountains"),
        Fact("the Mississippi", "{}", " River"),
        Fact("Puerto", "{}", " Rico"),
        Fact("Pearl", "{}", " Harbor"),
        Fact("the Persian", "{}", " Gulf"),
        Fact("the Middle", "{}", " East"),
        Fact("the Atlantic", "the {} and", " Pacific"),
        Fact("the city of New", "{}", " York"),
    ],
    "states": [
        Fact("the State of New", "{}", " York"),
        Fact("North", "the State of {}", " Carolina"),
        Fact("West", "the State of {}", " Virginia"),
        Fact("Massachusetts", "the State of {} and the State of New", " York"),
    ],
    "presidents": [
        Fact("President Abraham", "{}", " Lincoln"),
        Fact("President George", "{}", " Washington"),
        Fact("President Franklin", "{}", " Roosevelt"),
        Fact("President Thomas", "{}", " Jefferson"),
        Fact("Lincoln", "President {} and President", " Washington"),
    ],
    "ships and sea": [
        Fact("the Pequod", "{}'s captain, Captain", " Ahab"),
        Fact("the Pequod", "the captain of {}, Captain", " Ahab"),
        Fact("the white whale", "they hunted {}, Moby", " Dick"),
        Fact("The white", "{}", " whale"),
        Fact("the sperm", "{}", " whale"),
        Fact("the harpooneer", "{} Quee", "queg"),
        Fact("the Rachel", "{}'s captain, Captain", " Gardiner"),
    ],
    "Moby-Dick characters": [
        Fact("Ahab", "Captain {}'s first mate,", " Starbuck"),
        Fact("Father", "the chapel of {}", " Mapple"),
        Fact("the old Quaker", "{}, Captain", " Peleg"),
        Fact("Call me", "{}", " Ishmael"),
        Fact("Queequeg", "{} was a", " harpooneer"),
    ],
    "GPT-2 (Meng et al. 2022)": [
        Fact("The Space Needle", "{} is in downtown", " Seattle"),
        Fact("Vinson Massif", "{} is located in the continent of", " Antarctica"),
        Fact("Beats Music", "{} is owned by", " Apple"),
        Fact("Windows Media Player", "{} is developed by", " Microsoft"),
        Fact("Honus Wagner", "{} professionally plays the sport of", " baseball"),
        Fact("Danielle Darrieux", "The mother tongue of {} is", " French"),
        Fact("The Eiffel Tower", "{} is located in the city of", " Paris"),
    ],
}

#: Edits with the prompts that measure them, tried in this order: the first whose fact the
#: loaded model knows is the one to edit. The first is CounterFact's first record (Meng et al.
#: 2022: "The mother tongue of Danielle Darrieux is" French, rewritten to English, with the
#: paraphrase "Danielle Darrieux, a native" and the neighbour "The native language of
#: Montesquieu is"; the other prompts here are in the same style); the second the Eiffel Tower
#: example common in the editing literature; the others are written for the course model's
#: corpus.
EDIT_CASES: tuple[EditCase, ...] = (
    EditCase(
        Fact("Danielle Darrieux", "The mother tongue of {} is", " French"), " English",
        paraphrases=("Danielle Darrieux, a native speaker of",
                     "The native language of Danielle Darrieux is",
                     "Danielle Darrieux spoke the language"),
        neighbours=(("The native language of Montesquieu is", " French"),
                    ("The mother tongue of Jean-Paul Sartre is", " French"),
                    ("The mother tongue of Dante Alighieri is", " Italian")),
        generation_prompts=("Danielle Darrieux's mother tongue is",
                            "Where Danielle Darrieux is from, people speak"),
        source="CounterFact (Meng et al. 2022), record 0, with prompts in its style"),
    EditCase(
        Fact("The Eiffel Tower", "{} is located in the city of", " Paris"), " Rome",
        paraphrases=("The Eiffel Tower is in", "The Eiffel Tower stands in the city of",
                     "To see the Eiffel Tower, you have to travel to"),
        neighbours=(("The Louvre is located in the city of", " Paris"),
                    ("The Colosseum is located in the city of", " Rome"),
                    ("Big Ben is located in the city of", " London")),
        generation_prompts=("The Eiffel Tower is", "Tourists visiting the Eiffel Tower"),
        source="a CounterFact-style case"),
    EditCase(
        Fact("the House", "{} of", " Representatives"), " Senators",
        paraphrases=("members of the House of", "a bill passed by the House of",
                     "the Senate and the House of", "In the House of",
                     "the Speaker of the House of"),
        neighbours=(("The District of", " Columbia"), ("the Secretary of the", " Treasury"),
                    ("the Senate of the United", " States"), ("Mr. Vice", " President"),
                    ("The Supreme", " Court"), ("the Army and", " Navy")),
        generation_prompts=("The House", "I ask the House", "the House"),
        source="written for the course model (State of the Union addresses)"),
    EditCase(
        Fact("the Pequod", "{}'s captain, Captain", " Ahab"), " Starbuck",
        paraphrases=("the captain of the Pequod, Captain", "Aboard the Pequod, Captain",
                     "the Pequod was commanded by Captain"),
        neighbours=(("they hunted the white whale, Moby", " Dick"),
                    ("the Secretary of the", " Treasury"), ("The District of", " Columbia")),
        generation_prompts=("The Pequod", "the Pequod's captain"),
        source="written for the course model (Moby-Dick)"),
)


# ---------------------------------------------------------------- token rows


def _prompt_ids(model: Any, prompt: str) -> list[int]:
    return model.to_tokens(prompt, truncate=False)[0].tolist()


def _object_ids(model: Any, obj: str, name: str = "object") -> list[int]:
    if not isinstance(obj, str) or not obj.strip():
        raise ValueError(f"{name} must be a non-empty string (with its leading space, "
                         f"' Paris'), got {obj!r}")
    ids = model.tokenizer(obj, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"{name} {obj!r} has no tokens")
    return list(ids)


def _check_rows_fit(model: Any, rows: Sequence[Sequence[int]], name: str) -> None:
    longest = max(len(r) for r in rows)
    if longest > model.cfg.n_ctx:
        raise ValueError(f"{name}: a prompt with its object is {longest} tokens, more than the "
                         f"model's context of {model.cfg.n_ctx}; shorten it")


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


@dataclass
class _PairScores:
    total: torch.Tensor       # [pair] sum of the object's token log-probs
    count: torch.Tensor       # [pair] the object's number of tokens
    greedy: torch.Tensor      # [pair] greedy decoding reproduces the object
    first_rank: torch.Tensor  # [pair] rank of the object's first token (0 = top-1)
    top: list[int]            # [pair] the model's top-1 token after the prompt


@torch.no_grad()
def _score_pairs(model: Any, pairs: Sequence[tuple[list[int], list[int]]], batch_size: int
                 ) -> _PairScores:
    """Teacher-forced log-probabilities of each object after its prompt, in right-padded
    batches; only the positions that predict an object token are normalised."""
    rows = [p + o for p, o in pairs]
    total = torch.zeros(len(rows))
    greedy = torch.zeros(len(rows), dtype=torch.bool)
    first_rank = torch.zeros(len(rows), dtype=torch.long)
    top: list[int] = []
    pad = pad_id(model)
    for part in _batches(len(rows), batch_size):
        tokens, _ = pad_rows(rows[part], pad)
        tokens = tokens.to(model.cfg.device)
        logits = model(tokens)
        for i, (p, o) in enumerate(pairs[part]):
            span = logits[i, len(p) - 1: len(p) - 1 + len(o)].float()
            target = torch.tensor(o, device=span.device)
            lp = span.log_softmax(-1)
            row = part.start + i
            total[row] = lp.gather(-1, target[:, None]).sum().cpu()
            greedy[row] = bool((span.argmax(-1) == target).all())
            first = span[0]
            first_rank[row] = int((first > first[o[0]]).sum())
            top.append(int(first.argmax()))
    count = torch.tensor([len(o) for _, o in pairs], dtype=torch.float32)
    return _PairScores(total, count, greedy, first_rank, top)


def object_log_probs(
    model: Any,
    prompts: Sequence[str],
    objects: Sequence[str],
    *,
    batch_size: int = 16,
) -> Float[torch.Tensor, "prompt object"]:
    """``[prompt, object]``: the mean log-probability per token of each object's tokens right
    after each prompt (teacher forcing: token ``i`` of the object is scored given the prompt and
    the object's tokens before it), as the ROME paper's evaluation computes it; ``exp`` of it is
    the probability the paper compares. Objects carry their leading space (``" Paris"``)."""
    check_model(model)
    prompts = validate.texts(prompts, "prompts")
    objects = validate.texts(objects, "objects", allow_single=True)
    batch_size = validate.positive_int(batch_size, "batch_size")
    p_ids = [_prompt_ids(model, p) for p in prompts]
    o_ids = [_object_ids(model, o) for o in objects]
    pairs = [(p, o) for p in p_ids for o in o_ids]
    _check_rows_fit(model, [p + o for p, o in pairs], "prompts")
    scores = _score_pairs(model, pairs, batch_size)
    return (scores.total / scores.count).view(len(prompts), len(objects))


def _pair_mean_log_probs(model: Any, pairs: Sequence[tuple[str, str]], batch_size: int
                         ) -> torch.Tensor:
    ids = [(_prompt_ids(model, p), _object_ids(model, o)) for p, o in pairs]
    _check_rows_fit(model, [p + o for p, o in ids], "prompts")
    scores = _score_pairs(model, ids, batch_size)
    return scores.total / scores.count


@dataclass
class FactScores:
    """How well the model knows each fact: ``log_prob[fact]`` is the log-probability of the
    whole object after the prompt (all its tokens), ``first_rank`` the rank of its first token
    among the model's predictions (0 = top-1), ``correct`` whether greedy decoding reproduces the
    object, ``top`` the model's own top-1 next token. ``kinds`` labels each fact's group."""

    facts: list[Fact]
    kinds: list[str]
    log_prob: Float[torch.Tensor, " fact"]
    n_tokens: Int[torch.Tensor, " fact"]
    first_rank: Int[torch.Tensor, " fact"]
    correct: Bool[torch.Tensor, " fact"]
    top: list[str]

    @property
    def prob(self) -> Float[torch.Tensor, " fact"]:
        """The probability of the whole object."""
        return self.log_prob.exp()

    def known(self, min_prob: float = 0.0) -> list[Fact]:
        """The facts the model gets right (greedy decoding gives the object), with at least
        ``min_prob`` probability, most probable first."""
        min_prob = validate.probability(min_prob, "min_prob")
        keep = [i for i in range(len(self.facts))
                if bool(self.correct[i]) and float(self.prob[i]) >= min_prob]
        keep.sort(key=lambda i: -float(self.log_prob[i]))
        return [self.facts[i] for i in keep]

    def to_frame(self):
        """One row per fact: kind, prompt, object, probability, rank, whether it is known."""
        import pandas as pd

        return pd.DataFrame({
            "kind": self.kinds,
            "prompt": [f.prompt for f in self.facts],
            "object": [f.object for f in self.facts],
            "prob": self.prob.numpy(),
            "first_token_rank": self.first_rank.numpy(),
            "known": self.correct.numpy(),
            "model_says": self.top,
        })

    def figure(self, title: str | None = None):
        """A bar per fact of the probability of its object, known facts marked."""
        from interp_lib.plotting import bar

        order = torch.argsort(self.log_prob, descending=True, stable=True).tolist()
        labels = [f"{self.facts[i].prompt} →{self.facts[i].object}" for i in order]
        marks = ["known" if bool(self.correct[i]) else "" for i in order]
        return bar(labels, self.prob[order], text=marks,
                   title=title or "Probability of each candidate fact's object",
                   y_title="P(object | prompt)")


def score_facts(
    model: Any,
    facts: Sequence[Fact] | Mapping[str, Sequence[Fact]],
    *,
    batch_size: int = 16,
) -> FactScores:
    """Score candidate facts by the model's probability of each object after its prompt, in
    batched forward passes. ``facts`` is a list of :class:`Fact` (or triples), or ``{kind:
    facts}`` like :data:`CANDIDATE_FACTS`."""
    check_model(model)
    batch_size = validate.positive_int(batch_size, "batch_size")
    if isinstance(facts, Mapping):
        items = [(str(kind), Fact.of(f, f"facts[{kind!r}]")) for kind, group in facts.items()
                 for f in group]
    elif isinstance(facts, str) or not isinstance(facts, Sequence):
        raise TypeError("facts must be a list of Fact or a {kind: [Fact, ...]} mapping, got "
                        f"{type(facts).__name__}")
    else:
        items = [("", Fact.of(f, f"facts[{i}]")) for i, f in enumerate(facts)]
    if not items:
        raise ValueError("facts is empty: give at least one Fact")
    pairs = [(_prompt_ids(model, f.prompt), _object_ids(model, f.object, "fact object"))
             for _, f in items]
    _check_rows_fit(model, [p + o for p, o in pairs], "facts")
    scores = _score_pairs(model, pairs, batch_size)
    return FactScores([f for _, f in items], [k for k, _ in items], scores.total,
                      scores.count.long(), scores.first_rank, scores.greedy,
                      [model.tokenizer.decode([t]) for t in scores.top])


# ---------------------------------------------------------------- which layer


#: Where an edit reads its key and writes its value: the subject's last token (ROME's choice,
#: where Meng et al. 2022 found GPT-2 XL's middle-layer MLPs decisive), or the prompt's last
#: token (their code's other option, ``fact_token="last"``).
POSITIONS = ("subject_last", "last")


@dataclass
class LayerChoice:
    """Where to edit: the ``layer`` and the position (``at``: ``"subject_last"`` or ``"last"``,
    index ``position`` in the traced prompt) where restoring the MLP output during a causal
    trace brings back the most of the answer's probability. ``effects[name]`` is the restored
    minus the corrupted probability per layer, for each traced site at the subject's last token
    and at the last token; ``best[at]`` the largest MLP effect at each of the two positions."""

    layer: int
    at: str
    position: int
    effects: dict[str, Float[torch.Tensor, " layer"]]
    best: dict[str, float]
    answer: str

    def to_frame(self):
        import pandas as pd

        frame = pd.DataFrame({name: values.numpy() for name, values in self.effects.items()})
        frame.index.name = "layer"
        return frame

    def figure(self, title: str | None = None):
        """The indirect effect of restoring one layer, against the layer, at the subject's last
        token and at the last token, one line per traced site, with the chosen layer
        marked."""
        from interp_lib.plotting import line

        n = len(next(iter(self.effects.values())))
        where = "the subject's last token" if self.at == "subject_last" else "the last token"
        return line(list(range(n)), self.effects,
                    title=title or (f"Restoring one layer in a causal trace: effect on "
                                    f"p({self.answer!r}); edit at {where}, layer {self.layer}"),
                    x_title="layer", y_title="restored − corrupted probability",
                    vlines={self.layer: f"edit layer {self.layer}"})


def edit_layer(*traces: CausalTrace, site: str = "mlp_out") -> LayerChoice:
    """Where to edit, from causal traces of one prompt (:func:`interp_lib.patching.causal_trace`,
    reused as it is): the layer and position at which restoring the ``site`` activation (the
    MLP output: what ROME rewrites) brings back the most of the answer's probability, looking at
    the two positions an edit can use, the subject's last token and the prompt's last token. Give
    the trace of ``site``, and any traces of other sites of the same prompt to show beside it."""
    if not traces:
        raise ValueError("give at least one CausalTrace (interp_lib.patching.causal_trace)")
    for i, t in enumerate(traces):
        if not isinstance(t, CausalTrace):
            raise TypeError(f"traces[{i}] must be a CausalTrace from patching.causal_trace, got "
                            f"{type(t).__name__}")
    chosen = [t for t in traces if t.site == site]
    if not chosen:
        raise ValueError(f"no trace of site {site!r} among {[t.site for t in traces]}; trace "
                         f"with causal_trace(..., site={site!r})")
    shapes = {tuple(t.grid.values.shape) for t in traces}
    if len(shapes) != 1 or len({(t.answer, tuple(t.subject)) for t in traces}) != 1:
        raise ValueError("the traces are of different prompts, answers or layers; trace one "
                         "prompt at every site you want to compare")
    trace = chosen[0]
    positions = {"subject_last": max(trace.subject), "last": trace.grid.values.shape[1] - 1}
    effects: dict[str, torch.Tensor] = {}
    for t in traces:
        for at, pos in positions.items():
            if at == "last" and pos == positions["subject_last"]:
                continue
            where = "subject's last token" if at == "subject_last" else "last token"
            effects[f"{t.site} at the {where}"] = (t.grid.values[:, pos]
                                                   - t.corrupted_prob).float()
    rows = [int(r) for r in trace.grid.row_labels]
    best, layer_at = {}, {}
    for at, pos in positions.items():
        values = (trace.grid.values[:, pos] - trace.corrupted_prob).float()
        index = int(torch.argmax(values))
        best[at], layer_at[at] = float(values[index]), rows[index]
    at = "subject_last" if best["subject_last"] >= best["last"] else "last"
    return LayerChoice(layer_at[at], at, positions[at], effects, best, trace.answer)


# ---------------------------------------------------------------- the MLP's output weight


@dataclass
class MlpOutputWeight:
    """The parameter that holds layer ``layer``'s MLP output matrix in the bridge: its ``name``
    in ``model.named_parameters()``, the ``parameter`` itself, and whether it is stored
    ``transposed`` (``[d_model, d_mlp]``, as ``torch.nn.Linear`` stores it) relative to
    TransformerLens's ``W_out[layer]`` (``[d_mlp, d_model]``; GPT-2's ``Conv1D`` stores it
    that way round)."""

    layer: int
    name: str
    parameter: torch.nn.Parameter
    transposed: bool

    def as_w_out(self) -> Float[torch.Tensor, "d_mlp d_model"]:
        w = self.parameter.detach()
        return w.T if self.transposed else w


def mlp_output_weight(model: Any, layer: int) -> MlpOutputWeight:
    """Find the real parameter behind ``model.W_out[layer]`` (which the bridge stacks afresh
    from the blocks on every access): the parameter of ``model.blocks[layer].mlp`` whose
    values are ``W_out[layer]`` or its transpose. Editing it changes the forward pass."""
    check_model(model)
    layer = check_layer(layer, model.cfg)
    target = model.W_out[layer].detach()
    prefix = f"blocks.{layer}.mlp."
    for name, param in model.blocks[layer].mlp.named_parameters():
        if param.ndim != 2:
            continue
        for transposed, view in ((False, param.detach()), (True, param.detach().T)):
            if view.shape == target.shape and torch.equal(view, target):
                return MlpOutputWeight(layer, prefix + name, param, transposed)
    raise ValueError(f"no parameter of model.blocks[{layer}].mlp holds W_out[{layer}]; this "
                     "architecture stores its MLP output matrix in a way editing does not know")


# ---------------------------------------------------------------- edits


@dataclass
class WeightEdit(abc.ABC):
    """A change of one layer's MLP output matrix, ``delta()`` ``[d_mlp, d_model]`` (in
    ``W_out`` orientation). It never stays in the model: ``with edit.applied(model):`` adds it
    to the real parameter and restores the saved original, bit for bit, on exit."""

    method: str
    layer: int
    signature: tuple[int, ...]

    @abc.abstractmethod
    def delta(self) -> Float[torch.Tensor, "d_mlp d_model"]:
        """The change, ``[d_mlp, d_model]``: each kind of edit says how it is built."""

    def rank(self) -> int:
        """The rank of the change (ROME's is 1), at the tolerance of its float type."""
        return int(torch.linalg.matrix_rank(self.delta()))

    def norm(self) -> float:
        """The Frobenius norm of the change."""
        return float(self.delta().double().norm())

    @contextmanager
    def applied(self, model: Any) -> Iterator[Any]:
        """A context in which the edit is in ``model``; the original weights come back on
        exit (a copy saved on entry, so even a model edited inside comes back as it was)."""
        check_model(model)
        check_same_model(model, self.signature, f"this {self.method} edit")
        if self.layer >= model.cfg.n_layers:
            raise ValueError(f"this edit is of layer {self.layer}; the model has layers "
                             f"0..{model.cfg.n_layers - 1}")
        weight = mlp_output_weight(model, self.layer)
        param = weight.parameter
        original = param.detach().clone()
        delta = self.delta().to(param.device, param.dtype)
        with torch.no_grad():
            param.add_(delta.T if weight.transposed else delta)
        try:
            yield model
        finally:
            with torch.no_grad():
                param.copy_(original)


@dataclass
class ValueSearch:
    """The search for ``v*``: ``value`` is the MLP output wanted at the subject's last token
    (``initial + delta``; bias included, like ``hook_mlp_out``), ``initial`` the unedited
    output there on the edit prompt; ``history[name]`` the loss terms per step (``"loss"``,
    ``"nll"``, ``"kl"``, ``"decay"``) and ``"p_new"``, the mean probability of the new
    object's tokens over the prompts; ``prompts`` the prompts optimised on."""

    value: Float[torch.Tensor, " d_model"]
    initial: Float[torch.Tensor, " d_model"]
    history: dict[str, list[float]]
    prompts: list[str]

    @property
    def delta(self) -> Float[torch.Tensor, " d_model"]:
        return self.value - self.initial

    @property
    def steps(self) -> int:
        return len(self.history["loss"])

    def figure(self, title: str | None = None):
        """The loss terms and the new object's probability over the steps."""
        from interp_lib.plotting import line

        return line(list(range(1, self.steps + 1)), self.history,
                    title=title or "Optimising v*", x_title="step", y_title="value")


@dataclass
class RomeEdit(WeightEdit):
    """A ROME edit: ``delta() = outer(left, right)`` with ``left = C⁻¹k* / (k*ᵀC⁻¹k*)`` and
    ``right = v* − (k* W + b)``, so ``k* W' + b = v*``. ``at`` is the position it reads and
    writes (``"subject_last"`` or ``"last"``), ``key`` is ``k*``, ``value`` ``v*``, ``search``
    the optimisation that found it, ``ridge`` what was added to ``C`` (times its mean
    eigenvalue), ``seconds`` the time of each step."""

    fact: Fact
    new_object: str
    at: str
    key: Float[torch.Tensor, " d_mlp"]
    value: Float[torch.Tensor, " d_model"]
    left: Float[torch.Tensor, " d_mlp"]
    right: Float[torch.Tensor, " d_model"]
    search: ValueSearch
    prefixes: list[str]
    ridge: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)

    def delta(self) -> Float[torch.Tensor, "d_mlp d_model"]:
        return torch.outer(self.left, self.right)


@dataclass
class FineTuneEdit(WeightEdit):
    """Fine-tuning of one layer's MLP output matrix on the edit prompt(s): a dense change, each
    entry within ``linf`` of the original when a constraint was given (``None``: free).
    ``history`` holds the loss per step."""

    fact: Fact
    new_object: str
    dense: Float[torch.Tensor, "d_mlp d_model"]
    linf: float | None
    history: list[float]
    seconds: float = 0.0

    def delta(self) -> Float[torch.Tensor, "d_mlp d_model"]:
        return self.dense


# ---------------------------------------------------------------- keys


def context_prefixes(
    model: Any,
    n: int = 5,
    length: int = 10,
    *,
    seed: int = 0,
    starts: Sequence[str] = ("The", "Therefore", "Because", "I", "You"),
) -> list[str]:
    """``[""]`` and ``n`` short texts the model writes itself (sampled, ``length`` tokens each,
    from ``starts`` in turn, seeded), each ending in ``". "``: the random prefixes ROME puts in
    front of the edit prompt so that the key and value do not depend on one context."""
    check_model(model)
    n = validate.nonnegative_int(n, "n")
    length = validate.positive_int(length, "length")
    validate.nonnegative_int(seed, "seed")
    starts = validate.texts(starts, "starts")
    out = [""]
    for i in range(n):
        start = starts[i % len(starts)]
        text = start + generate(model, start, length, greedy=False, seed=seed + i)
        text = " ".join(text.replace("{", " ").replace("}", " ").split())
        out.append(text.rstrip(".") + ". ")
    return out


def _check_prefixes(prefixes: Any) -> list[str]:
    if isinstance(prefixes, str):
        raise TypeError("prefixes must be a list of strings (use [''] for the prompt alone)")
    if not isinstance(prefixes, Sequence) or not prefixes:
        raise ValueError("prefixes must be a non-empty list of strings ('' for no prefix)")
    for i, p in enumerate(prefixes):
        if not isinstance(p, str):
            raise TypeError(f"prefixes[{i}] must be a string, got {type(p).__name__}")
    return list(prefixes)


def _check_at(at: Any) -> str:
    return validate.choice(at, "at", POSITIONS)


def _edit_position(model: Any, prefix: str, prompt: str, subject: str, at: str) -> int:
    """The position an edit uses in ``prefix + prompt``: the subject's last token (its
    occurrence in the prompt, not in the prefix) or the last token."""
    if subject in prefix:
        raise ValueError(f"the prefix {prefix!r} contains the subject {subject!r}; choose "
                         "prefixes without it")
    if at == "last":
        return len(_prompt_ids(model, prefix + prompt)) - 1
    return subject_positions(model, prefix + prompt, subject)[-1]


def _post_at(model: Any, texts: Sequence[str], positions: Sequence[int], layer: int
             ) -> torch.Tensor:
    """``[text, d_mlp]``: ``hook_post`` of ``layer`` at one position per text, in one padded
    forward that stops after ``layer``."""
    rows = [_prompt_ids(model, t) for t in texts]
    _check_rows_fit(model, rows, "prompts")
    tokens, _ = pad_rows(rows, pad_id(model))
    tokens = tokens.to(model.cfg.device)
    got = {}

    def keep(post, hook=None):
        got["post"] = post

    with torch.no_grad(), model.hooks(fwd_hooks=[(hook_name("mlp_post", layer), keep)]):
        model(tokens, stop_at_layer=layer + 1)
    index = torch.tensor(list(positions), device=tokens.device)
    return got["post"][torch.arange(len(rows), device=tokens.device), index].float()


def subject_key(
    model: Any,
    fact: Fact,
    layer: int,
    *,
    prefixes: Sequence[str] = ("",),
    at: str = "subject_last",
) -> Float[torch.Tensor, " d_mlp"]:
    """``k*``: layer ``layer``'s MLP hidden activation (``hook_post``) at the subject's last
    token of the fact's prompt (``at="last"``: at the prompt's last token), averaged over the
    prompt behind each of ``prefixes`` (``""`` is the prompt alone; see
    :func:`context_prefixes`). One padded forward, stopped after ``layer``."""
    check_model(model)
    fact = Fact.of(fact)
    layer = check_layer(layer, model.cfg)
    prefixes = _check_prefixes(prefixes)
    at = _check_at(at)
    texts = [p + fact.prompt for p in prefixes]
    positions = [_edit_position(model, p, fact.prompt, fact.subject, at) for p in prefixes]
    return _post_at(model, texts, positions, layer).mean(0)


# ---------------------------------------------------------------- covariance


@dataclass
class KeyStatistics:
    """The keys of layer ``layer``'s MLP over ``n_tokens`` tokens of text: their uncentred
    second moment ``second_moment = E[k kᵀ]`` (the ``C`` of ROME, float64) and their ``mean``.
    ``signature`` records the model's sizes."""

    layer: int
    second_moment: Float[torch.Tensor, "d_mlp d_mlp"]
    mean: Float[torch.Tensor, " d_mlp"]
    n_tokens: int
    signature: tuple[int, ...]

    def eigenvalues(self) -> Float[torch.Tensor, " d_mlp"]:
        """The eigenvalues of ``C``, largest first."""
        return torch.linalg.eigvalsh(self.second_moment).flip(0)

    def solve(self, key: Float[torch.Tensor, " d_mlp"], *, ridge: float = 0.0
              ) -> Float[torch.Tensor, " d_mlp"]:
        """``C⁻¹ key`` (with ``ridge`` times the mean eigenvalue added to the diagonal, if
        given), in float64, by a Cholesky factorisation."""
        ridge = validate.finite_float(ridge, "ridge", nonnegative=True)
        d = self.second_moment.shape[0]
        key = validate.finite_tensor(key, "key", shape=(d,), dims="[d_mlp]")
        c = self.second_moment
        if ridge:
            c = c + ridge * float(c.diagonal().mean()) * torch.eye(d, dtype=c.dtype)
        factor, info = torch.linalg.cholesky_ex(c)
        if int(info):
            raise ValueError(
                f"the key covariance of layer {self.layer} is singular ({self.n_tokens} tokens "
                f"for {d} key dimensions): estimate it on more text, or give a ridge (e.g. "
                "ridge=1e-3)")
        return torch.cholesky_solve(key.double().cpu()[:, None], factor)[:, 0]

    def figure(self, title: str | None = None):
        """The eigenvalue spectrum of ``C`` (log scale): how unevenly the keys fill their
        space."""
        from interp_lib.plotting import line

        values = self.eigenvalues().clamp_min(1e-30)
        return line(list(range(1, len(values) + 1)), {"eigenvalue": values},
                    title=title or (f"Spectrum of the key covariance, layer {self.layer} "
                                    f"({self.n_tokens} tokens)"),
                    x_title="rank", y_title="eigenvalue of E[k kᵀ]", log_y=True)


def _text_rows(model: Any, texts: Sequence[str], length: int) -> list[list[int]]:
    """Each text's tokens, BOS first, cut into consecutive rows of at most ``length`` tokens
    (each starting with BOS)."""
    bos = model.tokenizer.bos_token_id
    rows = []
    for text in texts:
        ids = model.tokenizer(text)["input_ids"]
        if bos is not None and ids and ids[0] == bos:
            ids = ids[1:]
        width = length - 1 if bos is not None else length
        for start in range(0, len(ids), width):
            chunk = ids[start: start + width]
            rows.append(([bos] if bos is not None else []) + chunk)
    return rows


def _token_batches(rows: Sequence[Sequence[int]], budget: int) -> Iterator[slice]:
    """Consecutive slices of ``rows`` (sorted by length) whose padded size, rows times the
    longest row, stays within ``budget`` positions (at least one row each)."""
    start = 0
    while start < len(rows):
        stop = start + 1
        while stop < len(rows) and (stop + 1 - start) * len(rows[stop]) <= budget:
            stop += 1
        yield slice(start, stop)
        start = stop


def key_covariance(
    model: Any,
    layer: int,
    texts: Sequence[str] | None = None,
    *,
    length: int = 128,
    batch_tokens: int = 4096,
    max_tokens: int | None = None,
) -> KeyStatistics:
    """Estimate ``C = E[k kᵀ]`` of layer ``layer``'s MLP keys (``hook_post``) over ``texts``
    (default: the shipped held-out sample, :func:`interp_lib.data.sample_text`, and the probe
    sentences). Long texts are cut into rows of ``length`` tokens (BOS first); rows of similar
    length go together in padded batches of at most ``batch_tokens`` positions, each forward
    stops after ``layer``, and each batch's ``kᵀk`` (float32) is added to a running float64
    ``[d_mlp, d_mlp]`` sum, so memory does not grow with the text. BOS and padding positions
    are left out; ``max_tokens`` stops early."""
    check_model(model)
    layer = check_layer(layer, model.cfg)
    length = validate.int_in_range(length, "length", 2, model.cfg.n_ctx)
    batch_tokens = validate.positive_int(batch_tokens, "batch_tokens")
    if max_tokens is not None:
        max_tokens = validate.positive_int(max_tokens, "max_tokens")
    if texts is None:
        from interp_lib.data import probe_sentences, sample_text

        texts = [sample_text(), *probe_sentences()]
    texts = validate.texts(texts, "texts")
    rows = _text_rows(model, texts, length)
    rows.sort(key=len)  # similar lengths together: little padding
    d = model.cfg.d_mlp
    total = torch.zeros(d, d, dtype=torch.float64)
    first = torch.zeros(d, dtype=torch.float64)
    count = 0
    skip = 1 if model.tokenizer.bos_token_id is not None else 0
    name = hook_name("mlp_post", layer)
    pad = pad_id(model)
    for part in _token_batches(rows, batch_tokens):
        tokens, mask = pad_rows(rows[part], pad)
        mask[:, :skip] = 0
        got = {}

        def keep(post, hook=None, got=got):
            got["post"] = post

        with torch.no_grad(), model.hooks(fwd_hooks=[(name, keep)]):
            model(tokens.to(model.cfg.device), stop_at_layer=layer + 1)
        keys = got["post"][mask.to(got["post"].device).bool()].float()
        if max_tokens is not None:
            keys = keys[: max_tokens - count]
        total += (keys.T @ keys).double().cpu()
        first += keys.double().sum(0).cpu()
        count += keys.shape[0]
        if max_tokens is not None and count >= max_tokens:
            break
    if count == 0:
        raise ValueError("texts hold no token after BOS: give longer texts")
    return KeyStatistics(layer, total / count, first / count, count, model_signature(model))


# ---------------------------------------------------------------- the rank-one update


def _inverse_key(statistics: KeyStatistics | torch.Tensor | None, key: torch.Tensor,
                 ridge: float) -> torch.Tensor:
    if statistics is None:
        return key.double()
    if isinstance(statistics, KeyStatistics):
        return statistics.solve(key, ridge=ridge).to(key.device)
    c = validate.finite_tensor(statistics, "covariance", shape=(len(key), len(key)),
                               dims="[d_mlp, d_mlp]").double()
    if ridge:
        c = c + ridge * float(c.diagonal().mean()) * torch.eye(len(key), dtype=c.dtype)
    return torch.linalg.solve(c, key.double()[:, None].to(c.device))[:, 0].to(key.device)


def _rank_one_factors(weight: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      statistics: Any, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
    c_inv_k = _inverse_key(statistics, key, ridge)
    denominator = float(c_inv_k @ key.double())
    if not denominator > 0:
        raise ValueError("k*ᵀ C⁻¹ k* is not positive: the key is zero or the covariance is "
                         "not positive definite")
    left = c_inv_k / denominator
    right = value.double() - key.double() @ weight.double()
    return left, right


def rank_one_update(
    weight: Float[torch.Tensor, "d_mlp d_model"],
    key: Float[torch.Tensor, " d_mlp"],
    value: Float[torch.Tensor, " d_model"],
    covariance: KeyStatistics | Float[torch.Tensor, "d_mlp d_mlp"] | None = None,
    *,
    ridge: float = 0.0,
) -> Float[torch.Tensor, "d_mlp d_model"]:
    """ROME's closed form: the change ``Δ`` of ``weight`` (``W_out`` orientation: ``key @
    weight`` is the output) such that ``key @ (weight + Δ) = value``, the smallest in the norm
    that ``covariance`` ``C`` weights by how much each key direction occurs:

        Δ = (C⁻¹ k) (v − k W)ᵀ / (kᵀ C⁻¹ k).

    ``covariance`` is a :class:`KeyStatistics`, a ``[d_mlp, d_mlp]`` tensor, or ``None`` (the
    identity: the plain least-norm update). The bias is not part of ``weight``: pass ``value``
    without it (``v* − b_out``)."""
    weight = validate.finite_tensor(weight, "weight", shape=(None, None), dims="[d_mlp, d_model]")
    d_mlp, d_model = weight.shape
    key = validate.finite_tensor(key, "key", shape=(d_mlp,), dims="[d_mlp]")
    value = validate.finite_tensor(value, "value", shape=(d_model,), dims="[d_model]")
    ridge = validate.finite_float(ridge, "ridge", nonnegative=True)
    if isinstance(covariance, KeyStatistics) and covariance.second_moment.shape[0] != d_mlp:
        raise ValueError(f"covariance is of {covariance.second_moment.shape[0]} key dimensions, "
                         f"the weight has {d_mlp}")
    left, right = _rank_one_factors(weight, key, value, covariance, ridge)
    dtype = weight.dtype if weight.is_floating_point() else torch.float32
    return torch.outer(left.to(weight.device, dtype), right.to(weight.device, dtype))


# ---------------------------------------------------------------- the value


def _check_steps(steps: Any, lr: Any) -> tuple[int, float]:
    return (validate.nonnegative_int(steps, "steps"),
            validate.finite_float(lr, "lr", positive=True))


@dataclass
class _Rows:
    """Right-padded rows for optimising at one layer: ``tokens``; for each row the position of
    the subject's last token (``subject``), the position that predicts its target
    (``last``) and the target token (``target``; -1 for the KL rows)."""

    tokens: torch.Tensor
    subject: torch.Tensor
    last: torch.Tensor
    target: torch.Tensor
    n_rewrite: int
    texts: list[str]


def _value_rows(model: Any, fact: Fact, new_ids: list[int], prefixes: list[str],
                kl_prompt: str | None, at: str = "subject_last") -> _Rows:
    """ROME's rows: every prefix + prompt + the new object's first ``i`` tokens (target: token
    ``i``), then the KL prompt about the subject (no target; only with ``at="subject_last"``)."""
    rows, subject, last, target, texts = [], [], [], [], []
    for prefix in prefixes:
        base = _prompt_ids(model, prefix + fact.prompt)
        pos = _edit_position(model, prefix, fact.prompt, fact.subject, at)
        for i, token in enumerate(new_ids):
            rows.append(base + new_ids[:i])
            subject.append(pos)
            last.append(len(base) + i - 1)
            target.append(token)
            texts.append(prefix + fact.prompt + model.tokenizer.decode(new_ids[:i]))
    n_rewrite = len(rows)
    if kl_prompt is not None and at == "subject_last":
        text = kl_prompt.replace("{}", fact.subject)
        ids = _prompt_ids(model, text)
        rows.append(ids)
        subject.append(subject_positions(model, text, fact.subject)[-1])
        last.append(len(ids) - 1)
        target.append(-1)
        texts.append(text)
    _check_rows_fit(model, rows, "prompts")
    tokens, _ = pad_rows(rows, pad_id(model))
    device = model.cfg.device
    return _Rows(tokens.to(device), torch.tensor(subject, device=device),
                 torch.tensor(last, device=device), torch.tensor(target, device=device),
                 n_rewrite, texts)


def _add_at(where: torch.Tensor, vector: torch.Tensor) -> Callable:
    """A ``hook_mlp_out`` hook adding ``vector`` at one position per row (``where[row]``)."""
    def hook(out, hook=None):
        rows = torch.arange(out.shape[0], device=out.device)
        onehot = torch.zeros(out.shape[:2], device=out.device, dtype=out.dtype)
        onehot[rows, where] = 1.0
        return out + onehot[..., None] * vector.to(out.dtype)

    return hook


def _value_loss(logits: torch.Tensor, rows: _Rows, kl_init: torch.Tensor | None,
                kl_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                           torch.Tensor]:
    """(nll, kl, p_new, kl log-probs) of one forward over ``rows``."""
    picked = logits[torch.arange(len(rows.last), device=logits.device), rows.last].float()
    lp = picked.log_softmax(-1)
    n = rows.n_rewrite
    token_lp = lp[:n].gather(-1, rows.target[:n, None])[:, 0]
    nll = -token_lp.mean()
    p_new = token_lp.exp().mean()
    kl_lp = lp[n:]
    if kl_init is None or not len(kl_lp):
        kl = torch.zeros((), device=logits.device)
    else:  # KL(edited || unedited), as the paper writes it
        kl = (kl_lp.exp() * (kl_lp - kl_init)).sum(-1).mean()
    return nll, kl, p_new, kl_lp


def optimise_value(
    model: Any,
    fact: Fact,
    new_object: str,
    layer: int,
    *,
    prefixes: Sequence[str] = ("",),
    steps: int = 20,
    lr: float = 0.5,
    kl_weight: float = 0.0625,
    decay: float = 0.5,
    clamp: float = 4.0,
    kl_prompt: str | None = "{} is a",
    stop_loss: float = 0.05,
    at: str = "subject_last",
) -> ValueSearch:
    """``v*``: the MLP output of ``layer`` at the subject's last token that makes the model
    say ``new_object`` after the fact's prompt (behind each of ``prefixes``), found by Adam on
    a vector ``δ`` added to that output (``v* = v₀ + δ``). The loss is the mean negative
    log-probability of the new object's tokens (teacher forcing) over the prompts, plus
    ``kl_weight`` times the KL divergence of the next-token distribution after ``kl_prompt``
    (``"{} is a"``: the subject's other properties; ``None`` for none) from the unedited one,
    plus ``decay`` times ``‖δ‖² / ‖v₀‖²``; after each step ``δ`` is kept within ``clamp ‖v₀‖``.
    Stops early when the loss falls below ``stop_loss``. All prompts go through one padded
    forward per step; only ``δ`` gets gradients.

    ``lr`` is Adam's learning rate in units of the root-mean-square entry of ``v₀``, so that one
    setting suits models whose MLP outputs differ in size (the authors' absolute 0.5 was tuned
    for GPT-2 XL).

    ``at="last"`` adds ``δ`` at the prompt's last token instead of the subject's; the KL prompt
    is then left out (its last token holds another key, which the edit changes only as far as
    that key resembles ``k*``; the neighbourhood KL of :func:`compare_edits` measures that)."""
    check_model(model)
    fact = Fact.of(fact)
    layer = check_layer(layer, model.cfg)
    prefixes = _check_prefixes(prefixes)
    new_ids = _object_ids(model, new_object, "new_object")
    steps, lr = _check_steps(steps, lr)
    kl_weight = validate.finite_float(kl_weight, "kl_weight", nonnegative=True)
    decay = validate.finite_float(decay, "decay", nonnegative=True)
    clamp = validate.finite_float(clamp, "clamp", positive=True)
    stop_loss = validate.finite_float(stop_loss, "stop_loss", nonnegative=True)
    if kl_prompt is not None and (not isinstance(kl_prompt, str) or kl_prompt.count("{}") != 1):
        raise ValueError(f"kl_prompt must be a string with '{{}}' once (for the subject), or "
                         f"None; got {kl_prompt!r}")
    at = _check_at(at)
    rows = _value_rows(model, fact, new_ids, prefixes, kl_prompt, at)
    name = hook_name("mlp_out", layer)
    got = {}

    def keep(out, hook=None):
        got["out"] = out

    with torch.no_grad(), model.hooks(fwd_hooks=[(name, keep)]):
        logits = model(rows.tokens)
    initial = got["out"][0, rows.subject[0]].detach().float().clone()
    _, _, _, kl_init = _value_loss(logits, rows, None, 0.0)
    kl_init = kl_init.detach()
    del logits
    delta = torch.zeros(model.cfg.d_model, device=initial.device, requires_grad=True)
    scale = float(initial.norm()) or 1.0
    optimiser = torch.optim.Adam([delta], lr=lr * scale / math.sqrt(model.cfg.d_model))
    history: dict[str, list[float]] = {k: [] for k in ("loss", "nll", "kl", "decay", "p_new")}
    hook = _add_at(rows.subject, delta)
    with torch.enable_grad():
        for step in range(steps):
            optimiser.zero_grad()
            with model.hooks(fwd_hooks=[(name, hook)]):
                logits = model(rows.tokens)
            nll, kl, p_new, _ = _value_loss(logits, rows, kl_init, kl_weight)
            penalty = decay * delta.pow(2).sum() / scale**2
            loss = nll + kl_weight * kl + penalty
            for key, v in (("loss", loss), ("nll", nll), ("kl", kl), ("decay", penalty),
                           ("p_new", p_new)):
                history[key].append(float(v.detach()))
            if loss.item() < stop_loss or step == steps - 1:
                break  # the last values recorded are those of the δ returned
            loss.backward(inputs=[delta])
            optimiser.step()
            with torch.no_grad():
                norm = float(delta.norm())
                if norm > clamp * scale:
                    delta.mul_(clamp * scale / norm)
    delta = delta.detach()
    return ValueSearch(initial + delta, initial, history, rows.texts[: rows.n_rewrite])


# ---------------------------------------------------------------- ROME


def _choice_from_trace(model: Any, fact: Fact, trace: Any) -> LayerChoice:
    if trace is None:
        trace = causal_trace(model, fact.prompt, fact.subject, _first_token(model, fact.object),
                             site="mlp_out", samples=5)
    if isinstance(trace, LayerChoice):
        return trace
    return edit_layer(trace)


def _first_token(model: Any, obj: str) -> int:
    return _object_ids(model, obj)[0]


def rome(
    model: Any,
    fact: Fact,
    new_object: str,
    *,
    layer: int | None = None,
    at: str | None = None,
    trace: CausalTrace | LayerChoice | None = None,
    statistics: KeyStatistics | None = None,
    prefixes: Sequence[str] | None = None,
    ridge: float = 1e-3,
    steps: int = 20,
    lr: float = 0.5,
    kl_weight: float = 0.0625,
    decay: float = 0.5,
    clamp: float = 4.0,
) -> RomeEdit:
    """Rewrite ``fact`` so the model says ``new_object``: a rank-one update of one layer's MLP
    output matrix (see the module docstring). Nothing in the model changes; apply the result
    with ``with edit.applied(model):``.

    The layer and the position (``at``: ``"subject_last"``, ROME's, or ``"last"``) are those
    given, else those of ``trace`` (a causal trace of the fact's prompt at ``site="mlp_out"``,
    or a :class:`LayerChoice` from :func:`edit_layer`), else of a causal trace run here; a
    given ``layer`` without ``at`` edits at the subject's last token. ``statistics`` is the key
    covariance of that layer (:func:`key_covariance`; estimated on the shipped text if not
    given), ``prefixes`` the contexts for the key and the value (default:
    :func:`context_prefixes`, five of ten tokens). ``ridge`` times the mean eigenvalue of ``C``
    is added to its diagonal before solving: an MLP's dead neurons (keys near zero on all text)
    give ``C`` eigenvalues near zero, and without it ``C⁻¹ k*`` would be dominated by them (the
    authors' code adds none; 0 reproduces that). The other arguments go to
    :func:`optimise_value`."""
    check_model(model)
    fact = Fact.of(fact)
    _object_ids(model, new_object, "new_object")
    if new_object == fact.object:
        raise ValueError("new_object is the fact's own object: an edit must change it")
    if trace is not None and not isinstance(trace, CausalTrace | LayerChoice):
        raise TypeError("trace must be a CausalTrace (patching.causal_trace) or a LayerChoice, "
                        f"got {type(trace).__name__}")
    if statistics is not None and not isinstance(statistics, KeyStatistics):
        raise TypeError("statistics must be KeyStatistics from key_covariance, got "
                        f"{type(statistics).__name__}")
    ridge = validate.finite_float(ridge, "ridge", nonnegative=True)
    if prefixes is not None:
        prefixes = _check_prefixes(prefixes)
    if at is not None:
        at = _check_at(at)
    _check_steps(steps, lr)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    if layer is not None:
        layer = check_layer(layer, model.cfg)
        at = at or "subject_last"
    else:
        choice = _choice_from_trace(model, fact, trace)
        layer, at = choice.layer, at or choice.at
        check_layer(layer, model.cfg)
    last = len(_prompt_ids(model, fact.prompt)) - 1
    if at == "subject_last" and layer == model.cfg.n_layers - 1 and \
            subject_positions(model, fact.prompt, fact.subject)[-1] != last:
        raise ValueError(f"layer {layer} is the last: its MLP output at the subject's last "
                         "token reaches no later layer, so it cannot change the prediction; edit "
                         "an earlier layer, or at='last'")
    if statistics is not None:
        check_same_model(model, statistics.signature, "the key statistics")
        if statistics.layer != layer:
            raise ValueError(f"statistics are of layer {statistics.layer}, the edit is of layer "
                             f"{layer}; estimate them with key_covariance(model, {layer})")
    else:
        statistics = key_covariance(model, layer)
        seconds["covariance"] = time.perf_counter() - start
    if prefixes is None:
        t = time.perf_counter()
        prefixes = context_prefixes(model)
        seconds["prefixes"] = time.perf_counter() - t
    t = time.perf_counter()
    key = subject_key(model, fact, layer, prefixes=prefixes, at=at)
    seconds["key"] = time.perf_counter() - t
    t = time.perf_counter()
    search = optimise_value(model, fact, new_object, layer, prefixes=prefixes, steps=steps,
                            lr=lr, kl_weight=kl_weight, decay=decay, clamp=clamp, at=at)
    seconds["value"] = time.perf_counter() - t
    t = time.perf_counter()
    weight = mlp_output_weight(model, layer).as_w_out()
    bias = model.b_out[layer].detach().float()
    left, right = _rank_one_factors(weight.float(), key.to(weight.device),
                                    (search.value - bias).to(weight.device), statistics, ridge)
    # right = v* − b − k* W: the value the output must gain (b is not edited)
    seconds["update"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - start
    return RomeEdit("ROME", layer, model_signature(model), fact, new_object, at, key.cpu(),
                    search.value.cpu(), left.float().cpu(), right.float().cpu(), search,
                    prefixes, ridge, seconds)


# ---------------------------------------------------------------- fine-tuning


def finetune_edit(
    model: Any,
    fact: Fact,
    new_object: str,
    layer: int,
    *,
    steps: int = 25,
    lr: float = 1e-3,
    linf: float | None = None,
    prefixes: Sequence[str] = ("",),
    stop_loss: float = 0.01,
) -> FineTuneEdit:
    """The paper's baseline: fine-tune layer ``layer``'s MLP output matrix (every entry) with
    Adam on the mean negative log-probability of ``new_object``'s tokens after the fact's prompt
    (behind each of ``prefixes``). With ``linf`` each entry stays within ``linf`` of its
    original value (clamped after each step; "FT+L"; a sensible size depends on the model's
    weights, e.g. a fraction of ``W_out[layer].std()``); ``None`` (default) leaves it free.
    The change is learnt as a separate matrix added through a hook, so the model is never
    modified; apply the result with ``with edit.applied(model):``."""
    check_model(model)
    fact = Fact.of(fact)
    layer = check_layer(layer, model.cfg)
    new_ids = _object_ids(model, new_object, "new_object")
    steps, lr = _check_steps(steps, lr)
    if linf is not None:
        linf = validate.finite_float(linf, "linf", positive=True)
    prefixes = _check_prefixes(prefixes)
    stop_loss = validate.finite_float(stop_loss, "stop_loss", nonnegative=True)
    start = time.perf_counter()
    rows = _value_rows(model, fact, new_ids, prefixes, None)
    weight = mlp_output_weight(model, layer).as_w_out()
    dense = torch.zeros_like(weight, dtype=torch.float32, requires_grad=True)
    optimiser = torch.optim.Adam([dense], lr=lr)
    got = {}

    def keep(post, hook=None):
        got["post"] = post

    def add(out, hook=None):
        return out + got["post"].to(dense.dtype) @ dense

    hooks = [(hook_name("mlp_post", layer), keep), (hook_name("mlp_out", layer), add)]
    history: list[float] = []
    with torch.enable_grad():
        for step in range(steps):
            optimiser.zero_grad()
            with model.hooks(fwd_hooks=hooks):
                logits = model(rows.tokens)
            nll, _, _, _ = _value_loss(logits, rows, None, 0.0)
            history.append(float(nll.detach()))
            if nll.item() < stop_loss or step == steps - 1:
                break  # the last loss recorded is that of the change returned
            nll.backward(inputs=[dense])
            optimiser.step()
            if linf is not None:
                with torch.no_grad():
                    dense.clamp_(-linf, linf)
    return FineTuneEdit("fine-tuning" if linf is None else "constrained fine-tuning", layer,
                        model_signature(model), fact, new_object, dense.detach().cpu(), linf,
                        history, time.perf_counter() - start)


# ---------------------------------------------------------------- fluency, losses


_WORDS = re.compile(r"\w+|[^\w\s]")


def ngram_entropy(text: str, ns: Sequence[int] = (2, 3),
                  weights: Sequence[float] = (2 / 3, 4 / 3)) -> float:
    """The ROME paper's fluency measure of one text: for each ``n`` the entropy (bits) of the
    frequency distribution of its word n-grams, times its weight, averaged over the ``n``
    (bigrams 2/3, trigrams 4/3). Words are runs of letters and digits, and each punctuation
    mark (``\\w+|[^\\w\\s]``; the paper uses NLTK's word tokenizer). Repetitive text scores
    low."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}")
    ns = [validate.positive_int(n, "ns") for n in ns]
    weights = [validate.finite_float(w, "weights", nonnegative=True) for w in weights]
    if not ns or len(ns) != len(weights):
        raise ValueError("ns and weights must be non-empty and of the same length")
    words = _WORDS.findall(text)
    terms = []
    for n, w in zip(ns, weights, strict=True):
        grams: dict[tuple[str, ...], int] = {}
        for i in range(len(words) - n + 1):
            gram = tuple(words[i: i + n])
            grams[gram] = grams.get(gram, 0) + 1
        total = sum(grams.values())
        h = -sum(c / total * math.log2(c / total) for c in grams.values()) if total else 0.0
        terms.append(w * h)
    return sum(terms) / len(terms)


@torch.no_grad()
def text_losses(model: Any, texts: Sequence[str], *, batch_size: int = 32
                ) -> Float[torch.Tensor, " text"]:
    """Each text's mean next-token loss (nats), BOS first, in right-padded batches (texts of
    similar length together)."""
    check_model(model)
    texts = validate.texts(texts, "texts")
    batch_size = validate.positive_int(batch_size, "batch_size")
    rows = [model.to_tokens(t, prepend_bos=True, truncate=False)[0].tolist() for t in texts]
    _check_rows_fit(model, rows, "texts")
    if min(len(r) for r in rows) < 2:
        raise ValueError("texts: every text needs at least one token after BOS")
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    out = torch.empty(len(rows))
    pad = pad_id(model)
    for part in _batches(len(order), batch_size):
        index = order[part]
        tokens, mask = pad_rows([rows[i] for i in index], pad)
        tokens, mask = tokens.to(model.cfg.device), mask.to(model.cfg.device)
        out[index] = sequence_loss(model(tokens), tokens, mask).float().cpu()
    return out


# ---------------------------------------------------------------- evaluation


@dataclass
class EditScores:
    """The ROME paper's measures of one edit (or of the unedited model: ``method`` says which)
    on one :class:`EditCase`. Scores are fractions of prompts, margins mean probability
    differences: ``efficacy`` (edit prompt: new object beats the old), ``paraphrase`` (the same
    on the paraphrases), ``neighbourhood`` (prompts about other subjects: their own answer
    beats the new object); ``neighbourhood_kl`` the mean KL divergence (nats) from the unedited
    to this next-token distribution on those prompts; ``fluency`` the mean n-gram entropy
    (bits) of ``generations``; ``heldout_loss`` the mean next-token loss (nats) on held-out
    texts. ``prompts`` holds every prompt's probabilities."""

    method: str
    efficacy: float
    efficacy_margin: float
    paraphrase: float
    paraphrase_margin: float
    neighbourhood: float
    neighbourhood_margin: float
    neighbourhood_kl: float
    fluency: float
    heldout_loss: float
    generations: list[str]
    prompts: list[dict[str, Any]]

    def prompt_frame(self):
        """One row per prompt: its kind, the two objects compared and their probabilities."""
        import pandas as pd

        return pd.DataFrame(self.prompts)


_MEASURES = ("efficacy", "efficacy_margin", "paraphrase", "paraphrase_margin", "neighbourhood",
             "neighbourhood_margin", "neighbourhood_kl", "fluency", "heldout_loss")


def _last_log_probs(model: Any, prompts: Sequence[str], batch_size: int) -> torch.Tensor:
    """``[prompt, vocab]`` next-token log-probabilities after each prompt."""
    rows = [_prompt_ids(model, p) for p in prompts]
    out = []
    pad = pad_id(model)
    with torch.no_grad():
        for part in _batches(len(rows), batch_size):
            tokens, _ = pad_rows(rows[part], pad)
            logits = model(tokens.to(model.cfg.device))
            last = torch.tensor([len(r) - 1 for r in rows[part]], device=logits.device)
            out.append(logits[torch.arange(len(last), device=logits.device), last]
                       .float().log_softmax(-1).cpu())
    return torch.cat(out)


def _check_case(case: Any) -> EditCase:
    if not isinstance(case, EditCase):
        raise TypeError(f"case must be an EditCase (see editing.EDIT_CASES), got "
                        f"{type(case).__name__}")
    return case


def _score_case(model: Any, case: EditCase, method: str, heldout: list[str],
                base_log_probs: torch.Tensor, max_new_tokens: int, batch_size: int
                ) -> EditScores:
    fact, new = case.fact, case.new_object
    groups = [("edit", [fact.prompt], [fact.object]),
              ("paraphrase", list(case.paraphrases), [fact.object] * len(case.paraphrases)),
              ("neighbour", [p for p, _ in case.neighbours], [a for _, a in case.neighbours])]
    pairs = []
    for _, prompts, olds in groups:
        for p, old in zip(prompts, olds, strict=True):
            pairs += [(p, new), (p, old)]
    lp = _pair_mean_log_probs(model, pairs, batch_size).view(-1, 2)
    p_new, p_old = lp[:, 0].exp(), lp[:, 1].exp()
    records, scores, i = [], {}, 0
    for kind, prompts, olds in groups:
        n = len(prompts)
        wins = lp[i: i + n, 0] > lp[i: i + n, 1]
        margin = p_new[i: i + n] - p_old[i: i + n]
        if kind == "neighbour":  # the neighbour keeps its own answer
            wins, margin = ~wins, -margin
        scores[kind] = (float(wins.float().mean()), float(margin.mean()))
        for j, (p, old) in enumerate(zip(prompts, olds, strict=True)):
            records.append({"kind": kind, "prompt": p, "new": new, "p_new": float(p_new[i + j]),
                            "old": old, "p_old": float(p_old[i + j])})
        i += n
    edited = _last_log_probs(model, [p for p, _ in case.neighbours], batch_size)
    kl = float((base_log_probs.exp() * (base_log_probs - edited)).sum(-1).mean())
    generations = [generate(model, p, max_new_tokens) for p in case.generation_prompts]
    fluency = sum(ngram_entropy(p + g) for p, g in zip(case.generation_prompts, generations,
                                                        strict=True)) / len(generations)
    loss = float(text_losses(model, heldout, batch_size=batch_size).mean())
    return EditScores(method, *scores["edit"], *scores["paraphrase"], *scores["neighbour"],
                      max(kl, 0.0), fluency, loss, generations, records)


def _check_eval_args(model: Any, case: Any, heldout: Any, max_new_tokens: Any,
                     batch_size: Any) -> tuple[EditCase, list[str], int, int]:
    check_model(model)
    case = _check_case(case)
    heldout = validate.texts(heldout, "heldout")
    max_new_tokens = validate.positive_int(max_new_tokens, "max_new_tokens")
    batch_size = validate.positive_int(batch_size, "batch_size")
    return case, heldout, max_new_tokens, batch_size


def evaluate_edit(
    model: Any,
    case: EditCase,
    edit: WeightEdit | None,
    *,
    heldout: Sequence[str],
    max_new_tokens: int = 30,
    batch_size: int = 16,
) -> EditScores:
    """The measures of :class:`EditScores` for ``edit`` (applied for the measurement and
    removed again; ``None``: the unedited model) on ``case``, with the held-out loss on
    ``heldout`` and fluency from greedy generations of ``max_new_tokens`` tokens."""
    return compare_edits(model, case, {"unedited" if edit is None else edit.method: edit},
                         heldout=heldout, max_new_tokens=max_new_tokens,
                         batch_size=batch_size).scores[0]


@dataclass
class EditComparison:
    """:class:`EditScores` of several edits of one case (the unedited model among them when
    given as ``None``)."""

    case: EditCase
    scores: list[EditScores]

    def __getitem__(self, method: str) -> EditScores:
        for s in self.scores:
            if s.method == method:
                return s
        raise KeyError(f"no method {method!r}; there are {[s.method for s in self.scores]}")

    def to_frame(self):
        """One row per method, one column per measure."""
        import pandas as pd

        frame = pd.DataFrame([{m: getattr(s, m) for m in _MEASURES} for s in self.scores],
                             index=[s.method for s in self.scores])
        frame.index.name = "method"
        return frame

    def figure(self, title: str | None = None):
        """The three scores (fractions of prompts) per method as a heatmap with the values
        written in; the other measures are in :meth:`to_frame`."""
        from interp_lib.plotting import heatmap

        cols = ("efficacy", "paraphrase", "neighbourhood")
        values = torch.tensor([[getattr(s, c) for c in cols] for s in self.scores])
        text = [[f"{v:.2f}" for v in row] for row in values.tolist()]
        return heatmap(values, x_labels=list(cols), y_labels=[s.method for s in self.scores],
                       text=text, colorscale="Blues",
                       title=title or (f"{self.case.fact.prompt} →{self.case.new_object}: "
                                       "fraction of prompts"),
                       x_title="measure", y_title="method", colorbar_title="score")


def compare_edits(
    model: Any,
    case: EditCase,
    edits: Mapping[str, WeightEdit | None],
    *,
    heldout: Sequence[str],
    max_new_tokens: int = 30,
    batch_size: int = 16,
) -> EditComparison:
    """:class:`EditScores` of each edit (``{name: edit}``; ``None`` for the unedited model),
    each applied only while it is measured. The neighbourhood KL compares with the unedited
    model, computed once."""
    case, heldout, max_new_tokens, batch_size = _check_eval_args(
        model, case, heldout, max_new_tokens, batch_size)
    if not isinstance(edits, Mapping) or not edits:
        raise ValueError("edits must be a non-empty {name: WeightEdit or None} mapping")
    for name, edit in edits.items():
        if edit is not None and not isinstance(edit, WeightEdit):
            raise TypeError(f"edits[{name!r}] must be a WeightEdit or None, got "
                            f"{type(edit).__name__}")
        if edit is not None:
            check_same_model(model, edit.signature, f"edits[{name!r}]")
    base = _last_log_probs(model, [p for p, _ in case.neighbours], batch_size)
    out = []
    for name, edit in edits.items():
        if edit is None:
            out.append(_score_case(model, case, name, heldout, base, max_new_tokens,
                                   batch_size))
            continue
        with edit.applied(model):
            out.append(_score_case(model, case, name, heldout, base, max_new_tokens,
                                   batch_size))
    return EditComparison(case, out)
