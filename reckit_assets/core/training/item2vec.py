"""item2vec: skip-gram word2vec over click sessions (Barkan & Koenigstein, 2016), via gensim.

Artifact: ``vectors.npy`` (float32, one row per item), ``items.json`` (item ids in row order),
``params.json`` and ``item2vec.json`` (reckit's export, ``{item_id: [floats]}``). The npy is read
with ``allow_pickle=False``; nothing is pickled, so gensim is needed only for training.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from pydantic import ConfigDict

from reckit_assets.core.training.base import (
    ArtifactError,
    Log,
    TrainReport,
    json_bytes,
    no_log,
    read_json,
    require_file,
)

KIND = "item2vec"
VECTORS_FILE = "vectors.npy"
ITEMS_FILE = "items.json"
COUNTS_FILE = "item_counts.json"  # training clicks per item, in row order (popularity prior)
PARAMS_FILE = "params.json"
RECKIT_FILE = "item2vec.json"
RECKIT_DECIMALS = 6  # reckit's JSON: six decimals keep cosine ranks, at a third of the size


@dataclass
class Item2VecParams:
    # Validated from reckit.yaml by pydantic (reckit_assets.config): unknown keys are errors.
    __pydantic_config__ = ConfigDict(extra="forbid")

    # Defaults tuned on the simulator's 2026-10-07 sessions (corpus: the 6 days before), then
    # checked on 2026-10-08: with ~2k sessions / ~5k clicks a week, 15 epochs leave the vectors
    # half-trained (HR@10 0.10 vs 0.29-0.34 at 50); window 10 = whole sessions.
    vector_size: int = 32
    window: int = 10
    min_count: int = 2
    sg: int = 1  # skip-gram: better than CBOW for rare items (Caselles-Dupre et al., 2018)
    negative: int = 10
    # The negative-sampling exponent decides how much popular items are pushed apart; 0.75 is
    # word2vec's default for text; 0.5..1.0 were within noise here, below 0 clearly worse.
    ns_exponent: float = 1.0
    sample: float = 1e-3
    epochs: int = 50
    seed: int = 7
    # One worker thread: with more, gensim's result depends on thread scheduling. (Initial
    # vectors come from ``seed``, not Python's per-process str hash, so processes agree.)
    workers: int = 1
    # Ranking only, not training: score = cosine + popularity_weight * log(1 + clicks), and
    # anchors the model never saw fall back to the most clicked items. 0 keeps pure cosine,
    # which is what reckit computes from item2vec.json. The service uses 0.1: on the simulator
    # it lifts next-item hit rate@10 from ~1.4x to ~2.1x popularity's (docs/benchmarks.md).
    popularity_weight: float = 0.1

    @classmethod
    def from_dict(cls, values: dict) -> Item2VecParams:
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})


class Item2Vec:
    kind = KIND

    def __init__(
        self, items: list[str], vectors: np.ndarray, counts: list[int], params: Item2VecParams
    ) -> None:
        if vectors.ndim != 2 or vectors.shape[0] != len(items) or len(counts) != len(items):
            raise ArtifactError(
                f"{KIND}: {len(items)} items, {len(counts)} counts but vectors of shape "
                f"{tuple(vectors.shape)}"
            )
        self.items = list(items)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.counts = [int(c) for c in counts]
        self._params = params
        self._prior = params.popularity_weight * np.log1p(np.asarray(self.counts, dtype=np.float64))
        self._index = {item: i for i, item in enumerate(self.items)}
        norms = np.linalg.norm(self.vectors, axis=1, keepdims=True)
        self._unit = self.vectors / np.where(norms > 0, norms, 1.0)

    def params(self) -> dict:
        return asdict(self._params)

    def __contains__(self, item_id: str) -> bool:
        return item_id in self._index

    def vector(self, item_id: str) -> np.ndarray | None:
        i = self._index.get(item_id)
        return None if i is None else self.vectors[i]

    def similar(self, item_id: str, k: int = 10) -> list[tuple[str, float]]:
        """The ``k`` items most similar to ``item_id`` (itself excluded), best first, with their
        score: the cosine, plus the popularity prior when ``popularity_weight`` > 0. Empty for an
        item the model has never seen."""
        i = self._index.get(item_id)
        if i is None:
            return []
        scores = self._unit @ self._unit[i] + self._prior
        scores[i] = -np.inf
        top = _top_indices(scores[None, :], k)[0]
        return [(self.items[j], float(scores[j])) for j in top if np.isfinite(scores[j])]

    def top_k(self, anchors: Sequence[str], k: int) -> list[list[str]]:
        """``similar`` for many anchors with one matrix product; [] for unknown anchors."""
        known = [(pos, self._index[a]) for pos, a in enumerate(anchors) if a in self._index]
        out: list[list[str]] = [[] for _ in anchors]
        if self._params.popularity_weight > 0:
            # Cold anchors get the most clicked items instead of nothing.
            popular = [self.items[j] for j in _top_indices(self._prior[None, :], k)[0]]
            out = [list(popular) for _ in anchors]
        if not known:
            return out
        rows = np.array([i for _, i in known])
        scores = self._unit[rows] @ self._unit.T + self._prior
        scores[np.arange(len(rows)), rows] = -np.inf  # never recommend the anchor itself
        top = _top_indices(scores, min(k, len(self.items) - 1))
        for (pos, _), idx in zip(known, top, strict=True):
            out[pos] = [self.items[j] for j in idx]
        return out

    def files(self) -> dict[str, bytes]:
        buf = io.BytesIO()
        np.save(buf, self.vectors, allow_pickle=False)
        reckit = {
            item: [round(float(x), RECKIT_DECIMALS) for x in row]
            for item, row in zip(self.items, self.vectors, strict=True)
        }
        return {
            VECTORS_FILE: buf.getvalue(),
            ITEMS_FILE: json_bytes(self.items),
            COUNTS_FILE: json_bytes(self.counts),
            PARAMS_FILE: json_bytes(self.params()),
            RECKIT_FILE: json.dumps(reckit, separators=(",", ":")).encode(),
        }

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> Item2Vec:
        vectors = np.load(io.BytesIO(require_file(files, VECTORS_FILE, KIND)), allow_pickle=False)
        items = read_json(files, ITEMS_FILE, KIND)
        if not isinstance(items, list):
            raise ArtifactError(f"{KIND} {ITEMS_FILE}: expected a list of item ids")
        counts = read_json(files, COUNTS_FILE, KIND) if COUNTS_FILE in files else [0] * len(items)
        params = read_json(files, PARAMS_FILE, KIND) if PARAMS_FILE in files else {}
        return cls([str(i) for i in items], vectors, counts, Item2VecParams.from_dict(params))


def _top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Row-wise indices of the ``k`` largest scores, best first (ties: lower index first)."""
    k = max(0, min(k, scores.shape[1]))
    if k == 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
    return np.take_along_axis(part, order, axis=1)


def train_item2vec(
    corpus: list[list[str]], params: Item2VecParams | None = None, log: Log = no_log
) -> tuple[Item2Vec, TrainReport]:
    """Train on sessions (lists of item ids in click order); items are rows in vocabulary order."""
    from gensim.models import Word2Vec
    from gensim.models.callbacks import CallbackAny2Vec

    params = params or Item2VecParams()
    sentences = [[str(i) for i in s] for s in corpus if len(s) >= 2]
    if not sentences:
        raise ValueError(f"train_item2vec: no session with 2+ items among {len(corpus)} sessions")
    started = time.perf_counter()
    history: list[dict] = []

    class _EpochLog(CallbackAny2Vec):
        def __init__(self) -> None:
            self.epoch = 0
            self.previous = 0.0

        def on_epoch_end(self, model: object) -> None:
            total = float(model.get_latest_training_loss())
            history.append({"epoch": self.epoch, "loss": total - self.previous})
            self.previous = total
            self.epoch += 1

    model = Word2Vec(
        sentences=sentences,
        vector_size=params.vector_size,
        window=params.window,
        min_count=params.min_count,
        sg=params.sg,
        negative=params.negative,
        ns_exponent=params.ns_exponent,
        sample=params.sample,
        epochs=params.epochs,
        seed=params.seed,
        workers=params.workers,
        compute_loss=True,
        callbacks=[_EpochLog()],
    )
    if len(model.wv.index_to_key) == 0:
        raise ValueError(
            f"train_item2vec: no item occurs {params.min_count}+ times in {len(sentences)} sessions"
        )
    items = [str(i) for i in model.wv.index_to_key]
    counts = [int(model.wv.get_vecattr(i, "count")) for i in model.wv.index_to_key]
    result = Item2Vec(items, model.wv.vectors.astype(np.float32), counts, params)
    seconds = time.perf_counter() - started
    distinct = len({i for s in sentences for i in s})
    extra = {
        "sessions": len(sentences),
        "clicks": int(sum(len(s) for s in sentences)),
        "items": len(items),
        "items_below_min_count": distinct - len(items),
    }
    log(
        f"item2vec: {len(sentences)} sessions, {len(items)} items "
        f"({extra['items_below_min_count']} below min_count), {seconds:.1f}s"
    )
    return result, TrainReport(
        history=history, best_iteration=params.epochs - 1, seconds=seconds, extra=extra
    )
