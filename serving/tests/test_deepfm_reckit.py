"""Our DeepFM against reckit's: what can and cannot be compatible (serving/README.md, *DeepFM and
reckit*), shown on the demo registry's DeepFM and reckit's own ``DeepFM`` class.

``fixtures/reckit/python/service/deepfm_model_loader.py.txt`` is reckit's
``python/service/deepfm_model_loader.py`` verbatim (rushteam/reckit@3f2cabd, Apache-2.0: see
``fixtures/reckit/go/LICENSE``; the file has no header of its own). It is stored as ``.txt`` so
that ruff neither lints nor reformats it; the test takes its ``DeepFM`` class out of it with
``ast`` (importing the module would put reckit's project root on ``sys.path``)."""

from __future__ import annotations

import ast
import io
import json
import pickle
import re
from pathlib import Path

import pytest
import torch

from reckit_assets.core.training.deepfm import DeepFMRanker, _network_class

LOADER = (
    Path(__file__).parent / "fixtures" / "reckit" / "python" / "service"
) / "deepfm_model_loader.py.txt"


def reckit_deepfm_class() -> type:
    source = LOADER.read_text(encoding="utf-8")
    (node,) = [
        n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "DeepFM"
    ]
    namespace: dict = {"torch": torch, "nn": torch.nn}
    exec(compile(ast.get_source_segment(source, node), str(LOADER), "exec"), namespace)
    return namespace["DeepFM"]


@pytest.fixture(scope="module")
def ours(demo) -> tuple[dict[str, bytes], DeepFMRanker]:
    files = demo.registry.load_files("deepfm", demo.versions["deepfm"][0])
    return files, DeepFMRanker.from_files(files)


def _reckit_for(model: DeepFMRanker) -> torch.nn.Module:
    """reckit's DeepFM as its loader would build it for the same fields and sizes (every field
    one number: num_features = sparse + dense fields)."""
    params = model.params()
    n_fields = len(model.pre.sparse_fields) + len(model.pre.dense_fields)
    return reckit_deepfm_class()(
        num_features=n_fields,
        embedding_dim=params["embedding_dim"],
        deep_layers=list(params["hidden"]),
        dropout=params["dropout"],
    )


def test_reckits_deepfm_cannot_load_our_state_dict(ours):
    files, model = ours
    from safetensors.torch import load

    state = load(files["model.safetensors"])
    reckit = _reckit_for(model)
    theirs = {k: tuple(v.shape) for k, v in reckit.state_dict().items()}
    mine = {k: tuple(v.shape) for k, v in state.items()}
    n_fields = len(model.pre.sparse_fields) + len(model.pre.dense_fields)
    n_layers = len(model.params()["hidden"])
    vocab_total = sum(model.pre.vocab_sizes)
    k = model.params()["embedding_dim"]
    # exactly the keys the README names
    assert set(mine) - set(theirs) == {
        "embedding.weight",
        "dense_embedding",
        "dense_linear",
        *(f"mlp.{3 * i}.{p}" for i in range(n_layers + 1) for p in ("weight", "bias")),
    }
    assert set(theirs) - set(mine) == {
        *(f"fm_embeddings.{i}.{p}" for i in range(n_fields) for p in ("weight", "bias")),
        "linear.bias",
        *(f"deep.{3 * i}.{p}" for i in range(n_layers) for p in ("weight", "bias")),
        "deep_output.weight",
        "deep_output.bias",
    }
    assert set(mine) & set(theirs) == {"linear.weight", "bias"}
    assert mine["linear.weight"] == (vocab_total, 1)  # one first-order weight per id value
    assert theirs["linear.weight"] == (1, n_fields)  # one per field, times its number
    assert mine["bias"] == theirs["bias"] == (1,)
    with pytest.raises(RuntimeError) as strict:
        reckit.load_state_dict(state)
    message = str(strict.value)
    assert "Missing key(s)" in message and "Unexpected key(s)" in message
    assert "size mismatch for linear.weight" in message
    # Not a naming problem: renamed to reckit's names, the deep input still has the wrong width
    # (ours reads the field embeddings, F * k; reckit's reads the raw numbers, F).
    renamed = {
        re.sub(r"^mlp\.(\d+)\.", lambda m: f"deep.{m[1]}.", key): value
        for key, value in state.items()
    }
    last = f"deep.{3 * n_layers}."
    renamed = {
        (key.replace(last, "deep_output.") if key.startswith(last) else key): value
        for key, value in renamed.items()
    }
    assert tuple(renamed["deep.0.weight"].shape) == (model.params()["hidden"][0], n_fields * k)
    assert theirs["deep.0.weight"] == (model.params()["hidden"][0], n_fields)
    with pytest.raises(RuntimeError, match=re.escape("size mismatch for deep.0.weight")):
        reckit.load_state_dict(renamed, strict=False)


def test_our_files_are_not_reckits_checkpoint_and_weights_only_is_not_the_obstacle(ours):
    files, model = ours
    assert set(files) == {"model.safetensors", "config.json", "vocab.json", "scaler.json"}
    assert "deepfm_model.pt" not in files
    # reckit's loader: checkpoint = torch.load(path); safetensors bytes are no torch pickle/zip
    with pytest.raises(pickle.UnpicklingError):
        torch.load(io.BytesIO(files["model.safetensors"]), weights_only=True)
    # its scaler is two lists in feature_columns order; ours is per dense field by name, and the
    # id fields have none (they are looked up, not scaled)
    scaler = json.loads(files["scaler.json"])
    assert set(scaler) == set(model.pre.dense_fields)
    assert not set(scaler) & set(model.pre.sparse_fields)
    # reckit's own layout (train_deepfm.py's torch.save) holds only tensors, dicts, lists,
    # numbers and strings, so torch.load(weights_only=True) reads it: the layout is not the
    # obstacle, the network is.
    reckit = _reckit_for(model)
    buffer = io.BytesIO()
    config = {
        "num_features": reckit.num_features,
        "embedding_dim": reckit.embedding_dim,
        "deep_layers": list(model.params()["hidden"]),
        "dropout": model.params()["dropout"],
    }
    torch.save(
        {
            "model_state_dict": reckit.state_dict(),
            "model_config": config,
            "scaler_mean": [0.0] * reckit.num_features,
            "scaler_scale": [1.0] * reckit.num_features,
            "model_version": "v",
        },
        buffer,
    )
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    rebuilt = reckit_deepfm_class()(**checkpoint["model_config"])
    rebuilt.load_state_dict(checkpoint["model_state_dict"])


def test_dense_fields_map_exactly_id_fields_cannot(ours):
    """The dense half of our network is reckit's DeepFM with different names: each dense field's
    FM vector is value x vector (reckit: Linear(1, k), bias 0), its first-order weight a column
    of reckit's ``linear``, and the MLP's first layer on ``value x vector`` folds into a layer on
    the value. An id field is different: reckit gives each field one number and an embedding
    affine in it (W x + b), so all of a field's id vectors would have to lie on one line; ours
    are free (the demo's item_id vectors are not collinear)."""
    _, model = ours
    params = model.params()
    k, hidden = params["embedding_dim"], tuple(params["hidden"])
    n_dense = len(model.pre.dense_fields)
    torch.manual_seed(0)
    dense_only = _network_class()(1, 0, n_dense, k, hidden, 0.0).eval()
    with torch.no_grad():
        for p in dense_only.parameters():
            p.normal_(0, 0.3)
    reckit = reckit_deepfm_class()(n_dense, k, list(hidden), 0.0).eval()
    ours_state = dense_only.state_dict()
    mapped = {}
    v = ours_state["dense_embedding"]  # (D, k)
    for j in range(n_dense):
        mapped[f"fm_embeddings.{j}.weight"] = v[j].reshape(k, 1)
        mapped[f"fm_embeddings.{j}.bias"] = torch.zeros(k)
    mapped["linear.weight"] = ours_state["dense_linear"].reshape(1, n_dense)
    mapped["linear.bias"] = torch.zeros(1)
    w1 = ours_state["mlp.0.weight"].reshape(hidden[0], n_dense, k)
    mapped["deep.0.weight"] = torch.einsum("hjk,jk->hj", w1, v)
    mapped["deep.0.bias"] = ours_state["mlp.0.bias"]
    for i in range(1, len(hidden)):
        for p in ("weight", "bias"):
            mapped[f"deep.{3 * i}.{p}"] = ours_state[f"mlp.{3 * i}.{p}"]
    for p in ("weight", "bias"):
        mapped[f"deep_output.{p}"] = ours_state[f"mlp.{3 * len(hidden)}.{p}"]
    mapped["bias"] = ours_state["bias"]
    reckit.load_state_dict(mapped, strict=True)
    x = torch.empty(64, n_dense).uniform_(-6, 6)  # standardized and within our clip
    with torch.no_grad():
        expected = torch.sigmoid(dense_only(torch.zeros(64, 0, dtype=torch.int64), x))
        got = reckit(x).squeeze(1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)

    # id fields: three item ids' vectors in the trained demo model span a plane, not a line
    field = model.pre.sparse_fields.index("item_id")
    offset = model.pre.offsets[field]
    table = model.network.embedding.weight.detach()[offset + 1 : offset + 4].double()
    assert torch.linalg.matrix_rank(table[1:] - table[0], tol=1e-9) == 2
