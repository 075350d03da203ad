"""Server-side features for a ranking request, from the online snapshot, with no train/serve skew.

``assemble_features`` (reckit_assets.core.features) is the one feature implementation. Calling it
per request costs ~5-10 ms of pandas merges for 100 candidates, most of the latency budget, so
:class:`OnlineFeatures` calls it at snapshot load time, on synthetic rows, to precompute

* one row per item (every item with statistics or in the catalog, plus the unknown-item row),
* one row per user (every user with statistics or a profile, plus the unknown-user row), taken
  with an item of a category no user has seen: its (user, category) columns are the fallback,
* one row per (user, category) pair with window statistics, taken with an item of that category,

and a request only gathers those rows and multiplies the two cross features. Unknown users and
items therefore get exactly what ``assemble_features`` gives them: the spec defaults and the
window priors, flagged ``is_new_user`` / ``is_new_item``. ``serving/tests/test_features.py``
proves the gathered frame equals ``assemble_features`` column for column; if a future feature
does not fit the split below, the fast path switches itself off (and that test fails) rather
than serve a feature computed differently.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from reckit_assets.core.features.compute import assemble_features
from reckit_assets.core.features.online import OnlineSnapshot

# Which columns of assemble_features' output depend on what (see the module docstring).
ITEM_COLUMNS = (
    "item_impressions_7d",
    "item_ctr",
    "item_cvr",
    "item_category",
    "item_price",
    "is_new_item",
    "item_ctr_28d",
    "item_cvr_28d",
    "item_impressions_28d",
)
USER_COLUMNS = (
    "user_impressions_7d",
    "user_ctr",
    "user_age",
    "user_region",
    "user_gender",
    "is_new_user",
    "user_ctr_28d",
    "user_impressions_28d",
)
# Keyed by (user_id, the item's category), with a per-user fallback for unseen categories.
PAIR_COLUMNS = ("user_category_ctr", "user_category_impressions_7d", "user_category_ctr_28d")
CROSS_COLUMNS = {
    "cross_age_x_ctr": ("user_age", "item_ctr"),
    "cross_gender_x_price": ("user_gender", "item_price"),
}
REQUEST_COLUMNS = ("user_id", "item_id", "device", "position")
SERVING_POSITION = 0  # ranking decides the slot; features are computed as if shown first


class OnlineFeatures:
    """Feature rows of one online snapshot, indexed by user, item and (user, category)."""

    def __init__(self, snapshot: OnlineSnapshot) -> None:
        self.snapshot = snapshot
        self.dt = snapshot.dt
        self.data_version = snapshot.data_version
        tables, users, items = snapshot.features, snapshot.users, snapshot.items
        item_ids = _unique_ids(tables.items["item_id"], items["item_id"])
        user_ids = _unique_ids(tables.users["user_id"], users["user_id"])
        pairs = getattr(tables, "user_categories", None)
        categories = _unique_ids(
            items["category"], *([pairs["item_category"]] if pairs is not None else [])
        )
        self._unknown_item = _absent(item_ids, "\x00unknown-item")
        self._unknown_user = _absent(user_ids, "\x00unknown-user")
        # An item of a category nobody has seen, for the per-user fallback rows only.
        self._unseen_item = _absent([*item_ids, self._unknown_item], "\x00unseen-category-item")
        unseen_category = _absent(categories, "\x00unseen-category")
        catalog_plus = pd.concat(
            [
                items[["item_id", "category", "price"]],
                pd.DataFrame(
                    {
                        "item_id": [self._unseen_item],
                        "category": [unseen_category],
                        "price": [np.nan],
                    }
                ).astype(items[["item_id", "category", "price"]].dtypes.to_dict()),
            ],
            ignore_index=True,
        )

        by_item = self._reference(
            [self._unknown_user] * (len(item_ids) + 1), [*item_ids, self._unknown_item]
        )
        by_user = self._reference(
            [*user_ids, self._unknown_user], [self._unseen_item] * (len(user_ids) + 1), catalog_plus
        )
        self.columns: list[str] = list(by_item.columns)
        self.dtypes = by_item.dtypes.to_dict()
        self._item_index = {item: i for i, item in enumerate(item_ids)}
        self._user_index = {user: i for i, user in enumerate(user_ids)}
        self._item_values = {c: by_item[c].to_numpy() for c in ITEM_COLUMNS if c in by_item}
        self._user_values = {c: by_user[c].to_numpy() for c in USER_COLUMNS if c in by_user}
        self._pair_fallback = {c: by_user[c].to_numpy() for c in PAIR_COLUMNS if c in by_user}
        self._pair_values: dict[str, np.ndarray] = {}
        self._pair_index: dict[str, dict[str, int]] = {}  # user -> category -> row
        if pairs is not None and len(pairs) and self._pair_fallback:
            self._index_pairs(pairs, by_item)

        covered = {*ITEM_COLUMNS, *USER_COLUMNS, *PAIR_COLUMNS, *CROSS_COLUMNS, *REQUEST_COLUMNS}
        self.uncovered = sorted(set(self.columns) - covered)
        # A column the split does not know: serve through assemble_features itself (slow, right).
        self.fast = not self.uncovered

    def _index_pairs(self, pairs: pd.DataFrame, by_item: pd.DataFrame) -> None:
        """One assemble_features row per (user, category) with statistics, through an item of
        that category (the unknown item stands for the unknown category)."""
        representative: dict[str, str] = {}
        for item, category in zip(by_item["item_id"], by_item["item_category"], strict=True):
            representative.setdefault(str(category), str(item))
        keys = pairs[["user_id", "item_category"]].astype("string").dropna()
        keys = keys[keys["item_category"].isin(list(representative))]  # only categories served
        rows = self._reference(
            keys["user_id"].tolist(), [representative[c] for c in keys["item_category"]]
        )
        self._pair_values = {c: rows[c].to_numpy() for c in PAIR_COLUMNS}
        for k, (user, category) in enumerate(
            zip(keys["user_id"], keys["item_category"], strict=True)
        ):
            self._pair_index.setdefault(str(user), {})[str(category)] = k

    def _reference(
        self, user_ids: list[str], item_ids: list[str], catalog: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        s = self.snapshot
        frame = pd.DataFrame(
            {
                "user_id": user_ids,
                "item_id": item_ids,
                "device": [""] * len(item_ids),
                "position": [SERVING_POSITION] * len(item_ids),
            }
        )
        return assemble_features(
            frame, s.features, s.users, s.items if catalog is None else catalog
        )

    @property
    def n_items(self) -> int:
        return len(self._item_index)

    @property
    def n_users(self) -> int:
        return len(self._user_index)

    def novelty(self, user_id: str, item_ids: Sequence[str]) -> tuple[bool, int]:
        """(is the user new, how many items are new): who got the fallback features."""
        rows, user_row = self._rows(user_id, item_ids)
        new_user = bool(self._user_values["is_new_user"][user_row])
        return new_user, int(self._item_values["is_new_item"][rows].sum())

    def assemble(
        self,
        user_id: str,
        item_ids: Sequence[str],
        device: str | None,
        columns: Sequence[str] | None = None,
    ) -> pd.DataFrame:
        """The feature frame for one request: assemble_features' output for (user_id, item,
        device, position 0) rows, restricted to ``columns`` (default: all, in its order)."""
        wanted = list(columns) if columns is not None else self.columns
        if not self.fast:
            return self.reference(user_id, item_ids, device)[wanted]
        rows, user_row = self._rows(user_id, item_ids)
        data: dict[str, object] = {}
        for col in wanted:
            values = self._values(col, user_id, rows, user_row)
            if values is None:  # the request's own columns
                values = {
                    "user_id": [user_id] * len(item_ids),
                    "item_id": list(item_ids),
                    "device": [device or ""] * len(item_ids),
                    "position": np.full(len(item_ids), float(SERVING_POSITION)),
                }[col]
            dtype = self.dtypes[col]
            ok = isinstance(values, np.ndarray) and values.dtype == dtype
            data[col] = values if ok else pd.array(values, dtype=dtype)
        return pd.DataFrame(data, copy=False)

    def dense_matrix(
        self, user_id: str, item_ids: Sequence[str], columns: Sequence[str]
    ) -> np.ndarray:
        """``assemble(...)[columns].to_numpy(float32)`` for numeric columns, without building a
        DataFrame (pandas' per-frame overhead is most of a request's feature cost)."""
        if not self.fast:
            frame = self.reference(user_id, item_ids, None)
            return frame.loc[:, list(columns)].to_numpy(dtype=np.float32, na_value=np.nan)
        rows, user_row = self._rows(user_id, item_ids)
        out = np.empty((len(item_ids), len(columns)), dtype=np.float32)
        for j, col in enumerate(columns):
            if col == "position":
                out[:, j] = SERVING_POSITION
                continue
            values = self._values(col, user_id, rows, user_row)
            if values is None or values.dtype == object:
                raise KeyError(f"{col} is not a numeric feature column")
            out[:, j] = values  # float64 -> float32: the same rounding as the frame's path
        return out

    def _values(self, col: str, user_id: str, rows: np.ndarray, user_row: int) -> np.ndarray | None:
        """The column for the request's items, or None for a request column."""
        if col in self._item_values:
            return self._item_values[col][rows]
        if col in self._user_values:
            value = self._user_values[col]
            return np.full(len(rows), value[user_row], dtype=value.dtype)
        if col in self._pair_fallback:
            fallback = self._pair_fallback[col][user_row]
            by_category = self._pair_index.get(user_id)
            if not by_category:
                return np.full(len(rows), fallback, dtype=self._pair_fallback[col].dtype)
            categories = self._item_values["item_category"][rows]
            idx = np.fromiter(
                (by_category.get(c, -1) for c in categories), dtype=np.intp, count=len(rows)
            )
            return np.where(idx >= 0, self._pair_values[col][idx], fallback)
        if col in CROSS_COLUMNS:
            user_col, item_col = CROSS_COLUMNS[col]
            return self._user_values[user_col][user_row] * self._item_values[item_col][rows]
        return None

    def _rows(self, user_id: str, item_ids: Sequence[str]) -> tuple[np.ndarray, int]:
        unknown = len(self._item_index)
        rows = np.fromiter(
            (self._item_index.get(i, unknown) for i in item_ids), dtype=np.intp, count=len(item_ids)
        )
        return rows, self._user_index.get(user_id, len(self._user_index))

    def reference(self, user_id: str, item_ids: Sequence[str], device: str | None) -> pd.DataFrame:
        """assemble_features itself on the request's rows (the slow path, and the yardstick)."""
        s = self.snapshot
        frame = pd.DataFrame(
            {
                "user_id": [user_id] * len(item_ids),
                "item_id": list(item_ids),
                "device": [device] * len(item_ids),
                "position": [SERVING_POSITION] * len(item_ids),
            }
        )
        return assemble_features(frame, s.features, s.users, s.items)


def _unique_ids(*columns: pd.Series) -> list[str]:
    ids = pd.concat([c.astype("string") for c in columns], ignore_index=True).dropna()
    return [str(i) for i in pd.unique(ids)]


def _absent(ids: list[str], base: str) -> str:
    """An id none of ``ids`` uses: stands for "not in the snapshot"."""
    taken = set(ids)
    candidate, k = base, 0
    while candidate in taken:
        k += 1
        candidate = f"{base}-{k}"
    return candidate
