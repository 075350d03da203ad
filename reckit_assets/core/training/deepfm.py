"""DeepFM (Guo et al., 2017): first-order + FM second-order + deep MLP over shared field embeddings.

Fields are the spec's sparse columns (ids and categoricals, one embedding table each, packed into
one table with offsets) and its dense columns (standardized; each has a field vector scaled by
the value, so the FM also crosses dense features with ids). Index 0 of every sparse field is the
reserved out-of-vocabulary bucket: values seen fewer than ``Feature.min_count`` times in training
and values never seen (new users, new items) share it, so it is trained on exactly the kind of
rows serving will send for cold starts.

Artifact: ``model.safetensors`` (state_dict), ``config.json`` (params + field layout),
``vocab.json`` and ``scaler.json``. torch is imported inside functions only, so importing this
module (e.g. for the registry or the xgboost service) stays cheap.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from pydantic import ConfigDict

from reckit_assets.core.evaluation import metrics
from reckit_assets.core.features.spec import BY_NAME, DENSE_COLUMNS, LABEL_COLUMN, SPARSE_COLUMNS
from reckit_assets.core.training.base import (
    ArtifactError,
    Log,
    TrainReport,
    check_training_frame,
    json_bytes,
    no_log,
    read_json,
    require_columns,
    require_file,
)

KIND = "deepfm"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
SCALER_FILE = "scaler.json"
OOV_INDEX = 0
# Standardized dense values are clipped: the FM term is quadratic in them, so one absurd value
# at serving (a mistyped price) must not swing a score from 0 to 1.
DENSE_CLIP = 6.0
PREDICT_BATCH = 65_536


@dataclass
class DeepFMParams:
    # Validated from reckit.yaml by pydantic (reckit_assets.config): unknown keys are errors.
    __pydantic_config__ = ConfigDict(extra="forbid")

    embedding_dim: int = 10
    # FuxiCTR/BARS use 400x3 on Criteo/Avazu; on the simulator's ~200k rows 200x3 scored the
    # same holdout AUC (0.752 both) in about half the CPU time.
    hidden: tuple[int, ...] = (200, 200, 200)
    dropout: float = 0.1
    lr: float = 1e-3
    batch_size: int = 2048
    max_epochs: int = 10
    # Step-level early stopping: the validation logloss is measured ``evals_per_epoch`` times per
    # epoch; after ``lr_patience`` measurements without improvement the learning rate is
    # multiplied by ``lr_decay`` (torch's ReduceLROnPlateau), after ``patience`` without
    # improvement training stops; the best measurement's weights are kept. (Epoch-level stopping
    # kept the first epoch's weights on the simulator: the optimum lies inside an epoch.)
    patience: int = 4
    evals_per_epoch: int = 4
    lr_decay: float = 0.3
    lr_patience: int = 1
    weight_decay: float = 1e-6
    seed: int = 7
    device: str = "auto"  # "auto" (CUDA when available) | "cpu" | "cuda" | "cuda:N"
    num_threads: int = 2  # CPU threads; fixed so CPU training is reproducible bit for bit
    sparse_columns: tuple[str, ...] = field(default_factory=lambda: tuple(SPARSE_COLUMNS))
    dense_columns: tuple[str, ...] = field(default_factory=lambda: tuple(DENSE_COLUMNS))

    @classmethod
    def from_dict(cls, values: dict) -> DeepFMParams:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        if "hidden" in known:
            known["hidden"] = tuple(int(h) for h in known["hidden"])
        for name in ("sparse_columns", "dense_columns"):
            if name in known:
                known[name] = tuple(known[name])
        return cls(**known)

    def as_json(self) -> dict:
        values = asdict(self)
        values["hidden"] = list(self.hidden)
        values["sparse_columns"] = list(self.sparse_columns)
        values["dense_columns"] = list(self.dense_columns)
        return values


# ---------------------------------------------------------------------------------------------
# Preprocessing: vocabularies and scaler, both fitted on the training frame only.


@dataclass
class Preprocessor:
    sparse_fields: list[str]
    dense_fields: list[str]
    vocab: dict[str, list[str]]  # field -> values; value vocab[f][i] has index i + 1
    scaler: dict[str, dict[str, float]]  # field -> {"mean", "std"} (reckit's scaler format)

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        sparse_fields: list[str] | tuple[str, ...] = SPARSE_COLUMNS,
        dense_fields: list[str] | tuple[str, ...] = DENSE_COLUMNS,
    ) -> Preprocessor:
        vocab: dict[str, list[str]] = {}
        for f in sparse_fields:
            counts = _as_strings(frame[f], f).value_counts()
            min_count = BY_NAME[f].min_count if f in BY_NAME else 1
            # Sorted, not by frequency: the same set of values always gets the same indices.
            vocab[f] = sorted(counts.index[counts >= min_count].tolist())
        scaler: dict[str, dict[str, float]] = {}
        for f in dense_fields:
            values = _dense_values(frame[f], f)
            mean = float(np.mean(values)) if values.size else 0.0
            std = float(np.std(values)) if values.size else 1.0
            scaler[f] = {"mean": mean, "std": std if std > 1e-12 else 1.0}
        return cls(list(sparse_fields), list(dense_fields), vocab, scaler)

    @property
    def vocab_sizes(self) -> list[int]:
        return [len(self.vocab[f]) + 1 for f in self.sparse_fields]  # + the OOV bucket

    @property
    def offsets(self) -> list[int]:
        return [int(x) for x in np.cumsum([0, *self.vocab_sizes[:-1]])]

    def encode_sparse(self, frame: pd.DataFrame) -> np.ndarray:
        """(rows, sparse fields) int64 indices into the packed embedding table."""
        require_columns(frame, self.sparse_fields, "DeepFM")
        out = np.empty((len(frame), len(self.sparse_fields)), dtype=np.int64)
        for j, (f, offset) in enumerate(zip(self.sparse_fields, self.offsets, strict=True)):
            # Unknown values get code -1 -> index 0, the reserved bucket.
            codes = pd.Categorical(_as_strings(frame[f], f), categories=self.vocab[f]).codes
            out[:, j] = codes.astype(np.int64) + 1 + offset
        return out

    def encode_dense(self, frame: pd.DataFrame) -> np.ndarray:
        require_columns(frame, self.dense_fields, "DeepFM")
        out = np.empty((len(frame), len(self.dense_fields)), dtype=np.float32)
        for j, f in enumerate(self.dense_fields):
            s = self.scaler[f]
            z = (_dense_values(frame[f], f, keep_nan=True) - s["mean"]) / s["std"]
            # A missing value sits at the training mean (0 after standardizing).
            out[:, j] = np.clip(np.nan_to_num(z, nan=0.0), -DENSE_CLIP, DENSE_CLIP)
        return out

    def oov_rate(self, frame: pd.DataFrame) -> dict[str, float]:
        idx = self.encode_sparse(frame)
        offsets = np.asarray(self.offsets)
        return {
            f: float((idx[:, j] == offsets[j] + OOV_INDEX).mean()) if len(frame) else 0.0
            for j, f in enumerate(self.sparse_fields)
        }


def _as_strings(column: pd.Series, name: str) -> pd.Series:
    default = BY_NAME[name].default if name in BY_NAME else ""
    return column.astype("string").fillna(str(default))


def _dense_values(column: pd.Series, name: str, keep_nan: bool = False) -> np.ndarray:
    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    if keep_nan:
        return values
    return values[np.isfinite(values)]


# ---------------------------------------------------------------------------------------------
# The network. Built inside a function so torch is only imported when a DeepFM is used.


@functools.cache
def _network_class() -> type:
    import torch
    from torch import nn

    class DeepFMNet(nn.Module):
        def __init__(
            self,
            vocab_total: int,
            n_sparse: int,
            n_dense: int,
            embedding_dim: int,
            hidden: tuple[int, ...],
            dropout: float,
        ) -> None:
            super().__init__()
            k = embedding_dim
            # One packed table for every sparse field (offsets select the field's rows).
            self.embedding = nn.Embedding(vocab_total, k)
            self.linear = nn.Embedding(vocab_total, 1)  # first-order weights
            self.dense_embedding = nn.Parameter(torch.empty(n_dense, k))
            self.dense_linear = nn.Parameter(torch.zeros(n_dense))
            self.bias = nn.Parameter(torch.zeros(1))
            layers: list[nn.Module] = []
            width = (n_sparse + n_dense) * k
            for h in hidden:
                layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
                width = h
            layers.append(nn.Linear(width, 1))
            self.mlp = nn.Sequential(*layers)
            nn.init.normal_(self.embedding.weight, std=0.01)
            nn.init.zeros_(self.linear.weight)
            nn.init.normal_(self.dense_embedding, std=0.01)

        def forward(self, sparse: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
            e_sparse = self.embedding(sparse)  # (B, S, k)
            e_dense = dense.unsqueeze(-1) * self.dense_embedding  # (B, D, k): vector x value
            e = torch.cat([e_sparse, e_dense], dim=1)  # (B, F, k): shared by FM and MLP
            first = self.linear(sparse).sum(dim=(1, 2)) + dense @ self.dense_linear
            summed = e.sum(dim=1)
            fm = 0.5 * (summed.pow(2) - e.pow(2).sum(dim=1)).sum(dim=1)
            deep = self.mlp(e.flatten(start_dim=1)).squeeze(1)
            return self.bias + first + fm + deep  # logit

    return DeepFMNet


def _build_network(pre: Preprocessor, params: DeepFMParams) -> object:
    return _network_class()(
        vocab_total=sum(pre.vocab_sizes),
        n_sparse=len(pre.sparse_fields),
        n_dense=len(pre.dense_fields),
        embedding_dim=params.embedding_dim,
        hidden=tuple(params.hidden),
        dropout=params.dropout,
    )


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"DeepFMParams.device={name!r} but CUDA is not available here")
    return name


@contextlib.contextmanager
def _reproducible(seed: int, threads: int, device: str) -> Iterator[None]:
    """Seed, pin threads and require deterministic kernels; restore the caller's settings.

    The global RNG is forked, so training neither depends on nor disturbs the caller's random
    state. On CUDA some kernels have no deterministic variant (and cuBLAS needs an environment
    variable set before start-up), so there it only warns: CPU is the reproducible path.
    """
    import torch

    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    old_threads = torch.get_num_threads()
    cuda = device.startswith("cuda")
    fork_devices = [torch.device(device).index or 0] if cuda else []
    with torch.random.fork_rng(devices=fork_devices):
        try:
            torch.manual_seed(seed)
            torch.use_deterministic_algorithms(True, warn_only=cuda)
            torch.set_num_threads(threads)
            # Tiny embedding gradients otherwise hit denormal floats, which are 10x slower on
            # x86 (epochs varied 2 s..30 s); flushing them to zero changes no result we use.
            torch.set_flush_denormal(True)
            yield
        finally:
            torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)
            torch.set_num_threads(old_threads)
            torch.set_flush_denormal(False)


# ---------------------------------------------------------------------------------------------
# The model object.


class DeepFMRanker:
    kind = KIND

    def __init__(self, network: object, pre: Preprocessor, params: DeepFMParams) -> None:
        self.network = network  # a DeepFMNet on the CPU, in eval mode
        self.pre = pre
        self._params = params

    def params(self) -> dict:
        return self._params.as_json()

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        import torch

        sparse = torch.from_numpy(self.pre.encode_sparse(frame))
        dense = torch.from_numpy(self.pre.encode_dense(frame))
        return _sigmoid(_predict_logits(self.network, sparse, dense, "cpu"))

    def config(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "params": self.params(),
            "sparse_fields": [
                {"name": f, "vocab_size": size, "offset": offset, "oov_index": OOV_INDEX}
                for f, size, offset in zip(
                    self.pre.sparse_fields, self.pre.vocab_sizes, self.pre.offsets, strict=True
                )
            ],
            "dense_fields": self.pre.dense_fields,
            "dense_clip": DENSE_CLIP,
            "label_column": LABEL_COLUMN,
        }

    def files(self) -> dict[str, bytes]:
        from safetensors.torch import save

        state = {k: v.detach().cpu().contiguous() for k, v in self.network.state_dict().items()}
        return {
            WEIGHTS_FILE: save(state),
            CONFIG_FILE: json_bytes(self.config()),
            VOCAB_FILE: json_bytes(self.pre.vocab),
            SCALER_FILE: json_bytes(self.pre.scaler),
        }

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> DeepFMRanker:
        from safetensors.torch import load

        config = read_json(files, CONFIG_FILE, KIND)
        if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
            raise ArtifactError(
                f"{KIND} {CONFIG_FILE}: format_version "
                f"{config.get('format_version') if isinstance(config, dict) else None!r}, "
                f"this code reads {FORMAT_VERSION}"
            )
        params = DeepFMParams.from_dict(config["params"])
        vocab = read_json(files, VOCAB_FILE, KIND)
        scaler = read_json(files, SCALER_FILE, KIND)
        sparse_fields = [f["name"] for f in config["sparse_fields"]]
        pre = Preprocessor(sparse_fields, list(config["dense_fields"]), vocab, scaler)
        if pre.vocab_sizes != [f["vocab_size"] for f in config["sparse_fields"]]:
            raise ArtifactError(f"{KIND}: {VOCAB_FILE} does not match {CONFIG_FILE}'s vocab sizes")
        network = _build_network(pre, params)
        state = load(require_file(files, WEIGHTS_FILE, KIND))
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ArtifactError(
                f"{KIND}: {WEIGHTS_FILE} does not fit {CONFIG_FILE}: {exc}"
            ) from exc
        network.eval()
        return cls(network, pre, params)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def _predict_logits(network: object, sparse: object, dense: object, device: str) -> np.ndarray:
    import torch

    network.eval()
    out = []
    with torch.no_grad():
        for lo in range(0, sparse.shape[0], PREDICT_BATCH):
            s = sparse[lo : lo + PREDICT_BATCH].to(device)
            d = dense[lo : lo + PREDICT_BATCH].to(device)
            out.append(network(s, d).float().cpu().numpy())
    logits = np.concatenate(out) if out else np.zeros(0, dtype=np.float32)
    return logits.astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Training.


def train_deepfm(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    params: DeepFMParams | None = None,
    log: Log = no_log,
) -> tuple[DeepFMRanker, TrainReport]:
    """Fit with Adam on logloss, scoring the validation day ``evals_per_epoch`` times an epoch:
    the learning rate decays on a plateau, training stops after ``patience`` evaluations without
    improvement, and the best evaluation's weights are kept (``best_iteration`` indexes
    ``history``, one row per evaluation)."""
    import torch

    params = params or DeepFMParams()
    if min(params.max_epochs, params.batch_size, params.evals_per_epoch, params.patience) < 1:
        raise ValueError(
            "train_deepfm: max_epochs, batch_size, evals_per_epoch and patience must be >= 1, "
            f"got {params.max_epochs}, {params.batch_size}, {params.evals_per_epoch} and "
            f"{params.patience}"
        )
    columns = [*params.sparse_columns, *params.dense_columns]
    check_training_frame(train, columns, LABEL_COLUMN, "train_deepfm (train)")
    check_training_frame(valid, columns, LABEL_COLUMN, "train_deepfm (valid)")
    device = _resolve_device(params.device)
    started = time.perf_counter()
    pre = Preprocessor.fit(train, params.sparse_columns, params.dense_columns)
    x_sparse = torch.from_numpy(pre.encode_sparse(train))
    x_dense = torch.from_numpy(pre.encode_dense(train))
    y = torch.from_numpy(train[LABEL_COLUMN].to_numpy(dtype=np.float32))
    v_sparse = torch.from_numpy(pre.encode_sparse(valid))
    v_dense = torch.from_numpy(pre.encode_dense(valid))
    v_y = valid[LABEL_COLUMN].to_numpy(dtype=np.float64)
    n = len(train)
    log(
        f"deepfm: {n} train / {len(valid)} valid rows, vocab sizes "
        f"{dict(zip(pre.sparse_fields, pre.vocab_sizes, strict=True))}, device {device}"
    )

    history: list[dict] = []
    with _reproducible(params.seed, params.num_threads, device):
        network = _build_network(pre, params).to(device)
        # Start from the base rate: the first epochs then learn ranking, not the CTR level.
        rate = float(np.clip(train[LABEL_COLUMN].mean(), 1e-4, 1 - 1e-4))
        with torch.no_grad():
            network.bias.fill_(math.log(rate / (1 - rate)))
        optimizer = torch.optim.Adam(
            network.parameters(), lr=params.lr, weight_decay=params.weight_decay
        )
        loss_fn = torch.nn.BCEWithLogitsLoss()
        order_rng = torch.Generator().manual_seed(params.seed)  # shuffling, CPU-side
        if device != "cpu":
            x_sparse, x_dense, y = x_sparse.to(device), x_dense.to(device), y.to(device)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=params.lr_decay,
            patience=params.lr_patience,
            threshold=0.0,  # "better" as early stopping means it: strictly lower logloss
        )
        steps_per_epoch = max(1, math.ceil(n / params.batch_size))
        # The steps after which the validation set is scored (the last one ends the epoch).
        checkpoints = {
            min(steps_per_epoch, math.ceil(steps_per_epoch * (k + 1) / params.evals_per_epoch))
            for k in range(max(1, params.evals_per_epoch))
        }
        best_loss, best_eval, best_state = math.inf, -1, None
        stop, step = False, 0
        for epoch in range(params.max_epochs):
            epoch_start = time.perf_counter()
            perm = torch.randperm(n, generator=order_rng).to(device)
            total, seen = 0.0, 0
            for batch, lo in enumerate(range(0, n, params.batch_size), start=1):
                network.train()
                idx = perm[lo : lo + params.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(network(x_sparse[idx], x_dense[idx]), y[idx])
                loss.backward()
                optimizer.step()
                step += 1
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
                if batch not in checkpoints:
                    continue
                p_valid = _sigmoid(_predict_logits(network, v_sparse, v_dense, device))
                row = {
                    "epoch": epoch,
                    "step": step,
                    "lr": float(optimizer.param_groups[0]["lr"]),
                    "train_logloss": total / seen,
                    "valid_logloss": metrics.logloss(v_y, p_valid),
                    "valid_auc": _safe_auc(v_y, p_valid),
                    "seconds": time.perf_counter() - epoch_start,
                }
                history.append(row)
                log(
                    f"deepfm epoch {epoch} step {step}: train logloss {row['train_logloss']:.5f}, "
                    f"valid logloss {row['valid_logloss']:.5f} auc {row['valid_auc']:.4f}, "
                    f"lr {row['lr']:.2g} ({row['seconds']:.1f}s)"
                )
                if row["valid_logloss"] < best_loss:
                    best_loss, best_eval = row["valid_logloss"], len(history) - 1
                    best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
                elif len(history) - 1 - best_eval >= params.patience:
                    log(
                        f"deepfm: early stop at step {step}, no improvement in "
                        f"{params.patience} evaluations"
                    )
                    stop = True
                    break
                scheduler.step(row["valid_logloss"])
            if stop:
                break
        network.load_state_dict(best_state)
        best_epoch = best_eval
        network = network.cpu().eval()
    seconds = time.perf_counter() - started
    extra = {
        "train_rows": n,
        "valid_rows": len(valid),
        "device": device,
        "valid_logloss": history[best_epoch]["valid_logloss"],
        "valid_auc": history[best_epoch]["valid_auc"],
        "vocab_sizes": dict(zip(pre.sparse_fields, pre.vocab_sizes, strict=True)),
        "valid_oov_rate": pre.oov_rate(valid),
        "parameters": int(sum(p.numel() for p in network.parameters())),
    }
    log(
        f"deepfm done: best at epoch {history[best_epoch]['epoch']} step "
        f"{history[best_epoch]['step']}, valid logloss {best_loss:.5f}, {seconds:.1f}s"
    )
    model = DeepFMRanker(network, pre, params)
    return model, TrainReport(
        history=history, best_iteration=best_epoch, seconds=seconds, extra=extra
    )


def _safe_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    try:
        return metrics.auc(labels, scores)
    except ValueError:
        return float("nan")  # a one-class validation set (tiny test data)
