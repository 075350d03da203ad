"""DeepFM on CUDA vs CPU: epoch time, determinism on the GPU, and CPU loading of a GPU model.

Run on a machine with a GPU (CI has none):  python bench/deepfm_cuda.py [rows]
Synthetic samples in the spec's layout; the same data and seed for every run.
"""

from __future__ import annotations

import hashlib
import sys
import time

import numpy as np
import pandas as pd

from reckit_assets.core.features.spec import DENSE_COLUMNS, LABEL_COLUMN, sample_columns
from reckit_assets.core.training.base import load_model
from reckit_assets.core.training.deepfm import DeepFMParams, train_deepfm


def samples(n: int, seed: int) -> pd.DataFrame:
    world = np.random.default_rng(1)
    users, items, cats = 5000, 2000, 20
    quality, affinity = world.normal(0, 1, items), world.normal(0, 1.2, (users, cats))
    rng = np.random.default_rng(seed)
    u, i = rng.integers(0, users, n), rng.integers(0, items, n)
    cat, device, position = i % cats, rng.integers(0, 3, n), rng.integers(0, 10, n)
    logit = -2.5 + quality[i] + affinity[u, cat] - 0.2 * position + 0.3 * (device == 0)
    frame = pd.DataFrame({c: rng.normal(0, 1, n) for c in DENSE_COLUMNS})
    frame["position"] = position.astype(float)
    frame["item_ctr"] = 1 / (1 + np.exp(-(quality[i] - 2.5)))
    frame = frame.assign(
        request_id=[f"r{k // 10}" for k in range(n)],
        ts=pd.Timestamp("2026-10-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="s"),
        converted=0,
        is_new_user=0,
        is_new_item=0,
        user_id=[f"u{x}" for x in u],
        item_id=[f"i{x}" for x in i],
        item_category=[f"c{x}" for x in cat],
        user_region=[f"r{x % 5}" for x in u],
        device=np.array(["ios", "android", "web"])[device],
    )
    frame[LABEL_COLUMN] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    return frame[sample_columns()]


def digest(files: dict[str, bytes]) -> str:
    return hashlib.sha256(b"".join(files[k] for k in sorted(files))).hexdigest()[:16]


def main() -> None:
    import torch

    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    train, valid, test = samples(rows, 1), samples(rows // 5, 2), samples(rows // 5, 3)
    print(
        f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}"
        + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
    )
    params = dict(max_epochs=3, patience=3, seed=7)
    results = {}
    for name, device in (("cpu", "cpu"), ("cuda-1", "cuda"), ("cuda-2", "cuda")):
        if device == "cuda" and not torch.cuda.is_available():
            continue
        t = time.perf_counter()
        model, report = train_deepfm(train, valid, DeepFMParams(device=device, **params))
        seconds = time.perf_counter() - t
        epoch = np.mean([h["seconds"] for h in report.history])
        results[name] = (model, digest(model.files()))
        print(
            f"{name:7} {seconds:6.1f} s total, {epoch:5.2f} s/epoch, valid AUC "
            f"{report.history[report.best_iteration]['valid_auc']:.4f}, files {results[name][1]}"
        )
    if "cuda-1" in results:
        print("cuda runs byte-identical:", results["cuda-1"][1] == results["cuda-2"][1])
        gpu_model = results["cuda-1"][0]
        on_cpu = load_model("deepfm", gpu_model.files())  # safetensors loads onto the CPU
        p_gpu, p_cpu = gpu_model.predict(test), on_cpu.predict(test)
        print(
            "GPU-trained model reloaded, max |diff| of predictions:",
            float(np.abs(p_gpu - p_cpu).max()),
        )


if __name__ == "__main__":
    main()
