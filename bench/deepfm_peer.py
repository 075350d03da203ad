"""Benchmark: our DeepFM against deepctr-torch's DeepFM on the same split, same seeds.

The split is `bench/models.py`'s: the simulator at its defaults (9 days), holdout = day 9,
validation = day 8, training = days 2-7, each sample with every feature of the spec. Both
models get the same inputs: the spec's sparse fields (ids and categories, vocabularies fitted on
the training days, unseen values to one bucket) and its dense features (standardized with the
training days' mean and std). deepctr-torch keeps its own defaults (DNN 256x128, Adam 1e-3,
batch 256) with our embedding size (10); it is trained one epoch at a time and the epoch with
the best validation logloss is scored on the holdout, which is what its docs' early stopping
does. Ours runs with its defaults (step-level early stopping, learning-rate decay).

    pip install --no-deps deepctr-torch==0.3.0     # its only imports are torch, numpy, sklearn, tqdm
    python bench/deepfm_peer.py                    # seeds 7 8 9
    python bench/deepfm_peer.py --root DIR         # reuse (or keep) the prepared warehouse
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.models import FIRST, HOLDOUT, prepare  # noqa: E402


def split(root: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    from reckit_assets.core.io import warehouse
    from reckit_assets.core.io.storage import LocalStorage
    from reckit_assets.core.steps import data as steps

    store = LocalStorage(f"{root}/warehouse")
    days = warehouse.window(HOLDOUT, 7, FIRST)
    frames = [warehouse.read(store, steps.SAMPLES, d) for d in days]
    return (
        pd.concat(frames[:-1], ignore_index=True),
        frames[-1],
        warehouse.read(store, steps.SAMPLES, HOLDOUT),
    )


def ours(train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame, seed: int) -> dict:
    from reckit_assets.core.evaluation import metrics
    from reckit_assets.core.training.deepfm import DeepFMParams, train_deepfm

    started = time.perf_counter()
    model, report = train_deepfm(train, valid, DeepFMParams(seed=seed, device="cpu"))
    best = report.history[report.best_iteration]
    return {
        "auc": metrics.auc(test["label"], model.predict(test)),
        "logloss": metrics.logloss(test["label"], model.predict(test)),
        "seconds": time.perf_counter() - started,
        "best": f"epoch {best['epoch']} step {best['step']}",
    }


def peer(train: pd.DataFrame, valid: pd.DataFrame, test: pd.DataFrame, seed: int) -> dict:
    import torch
    from deepctr_torch.inputs import DenseFeat, SparseFeat
    from deepctr_torch.models import DeepFM

    from reckit_assets.core.evaluation import metrics
    from reckit_assets.core.features.spec import DENSE_COLUMNS, SPARSE_COLUMNS

    torch.manual_seed(seed)
    np.random.seed(seed)
    torch.set_num_threads(2)
    started = time.perf_counter()
    inputs = {}
    for name in ("train", "valid", "test"):
        inputs[name] = {}
    vocab = {}
    for col in SPARSE_COLUMNS:
        values = sorted(set(train[col].astype(str)))
        vocab[col] = {v: k + 1 for k, v in enumerate(values)}  # 0: unseen
    mean = train[list(DENSE_COLUMNS)].mean()
    std = train[list(DENSE_COLUMNS)].std().replace(0, 1.0)
    frames = {"train": train, "valid": valid, "test": test}
    for name, frame in frames.items():
        for col in SPARSE_COLUMNS:
            inputs[name][col] = frame[col].astype(str).map(vocab[col]).fillna(0).to_numpy("int64")
        for col in DENSE_COLUMNS:
            inputs[name][col] = ((frame[col] - mean[col]) / std[col]).to_numpy("float32")
    columns = [SparseFeat(c, len(vocab[c]) + 1, embedding_dim=10) for c in SPARSE_COLUMNS] + [
        DenseFeat(c, 1) for c in DENSE_COLUMNS
    ]
    model = DeepFM(columns, columns, task="binary", seed=seed, device="cpu")
    model.compile("adam", "binary_crossentropy")
    best = (np.inf, None, -1)
    for epoch in range(10):
        model.fit(inputs["train"], train["label"].to_numpy(), batch_size=256, epochs=1, verbose=0)
        p_valid = model.predict(inputs["valid"], batch_size=4096).ravel()
        loss = metrics.logloss(valid["label"], p_valid)
        if loss < best[0]:
            best = (loss, model.predict(inputs["test"], batch_size=4096).ravel(), epoch)
        elif epoch - best[2] >= 2:
            break
    return {
        "auc": metrics.auc(test["label"], best[1]),
        "logloss": metrics.logloss(test["label"], best[1]),
        "seconds": time.perf_counter() - started,
        "best": f"epoch {best[2]}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    args = parser.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="reckit-deepfm-peer-")
    if not Path(root, "warehouse").exists():
        prepare(root)
    train, valid, test = split(root)
    print(f"split: {len(train)} train / {len(valid)} valid / {len(test)} holdout rows")
    rows = []
    for seed in args.seeds:
        for name, fn in (("ours", ours), ("deepctr-torch", peer)):
            out = {"model": name, "seed": seed, **fn(train, valid, test, seed)}
            rows.append(out)
            print(json.dumps(out), flush=True)
    table = pd.DataFrame(rows)
    print(table.groupby("model")[["auc", "logloss", "seconds"]].mean().round(4).to_string())


if __name__ == "__main__":
    main()
