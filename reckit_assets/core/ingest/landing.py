"""The landing-zone contract: the interface a data-warehouse export must meet.

Layout (Hive style) under the landing root::

    <table>/dt=YYYY-MM-DD/<any name>.parquet   (or .csv with the same columns)
    <table>/dt=YYYY-MM-DD/_SUCCESS             (written last: the partition is complete)

for the tables ``events``, ``users`` and ``items``; a day is ready when all three carry ``_SUCCESS``.
Landed files are read, never modified or deleted. See docs/landing_zone.md.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import polars as pl

from reckit_assets.core.io.frames import (
    frame_to_parquet_bytes,
    parquet_bytes_to_polars,
    read_csv_bytes,
)
from reckit_assets.core.io.storage import ObjectInfo, Storage, sha256_bytes

TABLES = ("events", "users", "items")
SUCCESS_MARKER = "_SUCCESS"
EVENT_TYPES = ("impression", "click", "conversion")
_DT_RE = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})$")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "str" | "int" | "float" | "timestamp"
    required: bool = True
    is_id: bool = False


SCHEMAS: dict[str, tuple[Column, ...]] = {
    "events": (
        Column("event_id", "str", is_id=True),
        Column("ts", "timestamp"),
        Column("user_id", "str", is_id=True),
        Column("item_id", "str", is_id=True),
        Column("event_type", "str"),
        Column("request_id", "str", is_id=True),
        Column("position", "int"),
        Column("device", "str"),
        Column("model_version", "str", required=False),
    ),
    "users": (
        Column("user_id", "str", is_id=True),
        Column("age", "float"),
        Column("gender", "str"),
        Column("region", "str"),
    ),
    "items": (
        Column("item_id", "str", is_id=True),
        Column("category", "str"),
        Column("price", "float"),
    ),
}


@dataclass(frozen=True)
class ContractIssue:
    """One violation of the contract, precise enough to act on."""

    table: str
    file: str
    column: str
    problem: str
    count: int

    def __str__(self) -> str:
        return f"{self.file}: column `{self.column}` {self.problem} ({self.count} rows)"


@dataclass
class LandedTable:
    """One table's partition as landed: the rows (typed), the files, and what was wrong.

    ``data`` holds the rows as a Polars frame in file-name order (then row order within a file),
    with the contract's columns typed plus ``_file``; ``frame`` is the same rows as pandas.
    """

    table: str
    dt: str
    data: pl.DataFrame
    files: list[dict] = field(default_factory=list)  # key, rows, sha256
    issues: list[ContractIssue] = field(default_factory=list)
    missing_optional: list[str] = field(default_factory=list)

    @property
    def frame(self) -> pd.DataFrame:
        """The rows as pandas, with the dtypes of the contract (``string``, ``Int64``, ...)."""
        out = self.data.to_pandas()
        for col in SCHEMAS[self.table]:
            if col.kind == "str":
                out[col.name] = out[col.name].astype("string")
            elif col.kind == "int":
                out[col.name] = out[col.name].astype("Int64")
        out["_file"] = out["_file"].astype("string")
        return out

    @property
    def fingerprint(self) -> str:
        """Content hash of the landed files (names and bytes): the raw data version."""
        h = hashlib.sha256()
        for f in sorted(self.files, key=lambda f: f["key"]):
            h.update(f"{f['key']}:{f['sha256']}\n".encode())
        return h.hexdigest()[:16]


def partition_prefix(table: str, dt: str) -> str:
    return f"{table}/dt={dt}"


def marker_key(table: str, dt: str) -> str:
    return f"{partition_prefix(table, dt)}/{SUCCESS_MARKER}"


def write_partition(
    storage: Storage, table: str, dt: str, df: pd.DataFrame, part: str = "part-00000"
) -> str:
    """Land ``df`` as one Parquet file and mark the partition complete (marker last)."""
    key = f"{partition_prefix(table, dt)}/{part}.parquet"
    storage.write_bytes(key, frame_to_parquet_bytes(df))
    storage.write_bytes(marker_key(table, dt), b"")
    return key


def _partition_files(storage: Storage, table: str, dt: str) -> tuple[list[ObjectInfo], list[str]]:
    """(data files, other files) of a partition. Anything under a name starting with ``_`` or
    ``.`` (markers, Spark's ``_temporary/``, in-flight uploads) is neither."""
    base = partition_prefix(table, dt)
    data, other = [], []
    for info in storage.list(base):
        relative = info.key[len(base) + 1 :].split("/")
        if any(part.startswith(("_", ".")) for part in relative):
            continue
        (data if info.key.endswith((".parquet", ".csv")) else other).append(info)
    return data, [o.key for o in other]


def data_files(storage: Storage, table: str, dt: str) -> list[ObjectInfo]:
    return _partition_files(storage, table, dt)[0]


def ready_days(storage: Storage) -> dict[str, str]:
    """Days whose three tables all carry ``_SUCCESS`` -> a signature of their markers.

    The signature changes when any marker is rewritten (a re-landed day), so the arrival sensor
    can tell a new landing from one it has already processed.
    """
    markers: dict[str, dict[str, str]] = {}
    for table in TABLES:
        for info in storage.list(table):
            parts = info.key.split("/")
            if len(parts) == 3 and parts[2] == SUCCESS_MARKER:
                match = _DT_RE.match(parts[1])
                if match:
                    markers.setdefault(match.group(1), {})[table] = f"{info.version}:{info.size}"
    out = {}
    for dt, by_table in markers.items():
        if len(by_table) == len(TABLES):
            out[dt] = _signature(by_table)
    return dict(sorted(out.items()))


def _signature(by_table: dict[str, str]) -> str:
    raw = "|".join(f"{t}={by_table[t]}" for t in TABLES)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def landed_days_after(storage: Storage, after: str | None) -> list[str]:
    """Days with a ``dt=`` folder in any table that sort after ``after`` (all if None).

    One child listing per table (``list_prefixes``), not a walk of every landed file: the cost
    grows with the number of days, not with the files under them.
    """
    start = f"dt={after}" if after else ""
    days = set()
    for table in TABLES:
        for name in storage.list_prefixes(table, start_after=start):
            match = _DT_RE.match(name)
            if match:
                days.add(match.group(1))
    return sorted(days)


def day_signature(storage: Storage, dt: str) -> str | None:
    """The marker signature of dt (equal to ``ready_days(storage)[dt]``), None if not ready.

    Three stats, one per table's ``_SUCCESS``.
    """
    by_table = {}
    for table in TABLES:
        info = storage.stat(marker_key(table, dt))
        if info is None:
            return None
        by_table[table] = f"{info.version}:{info.size}"
    return _signature(by_table)


def is_ready(storage: Storage, dt: str) -> bool:
    return all(storage.exists(marker_key(t, dt)) for t in TABLES)


def _coerce(df: pd.DataFrame, col: Column, file: str, table: str) -> tuple[pd.Series, list]:
    raw = df[col.name]
    issues = []
    was_null = raw.isna()
    if col.kind == "str":
        out = raw.astype("string").str.strip()
        out = out.mask(out == "")
    elif col.kind == "timestamp":
        textual = pd.api.types.is_object_dtype(raw) or pd.api.types.is_string_dtype(raw)
        if pd.api.types.is_numeric_dtype(raw) or (
            textual
            and raw.notna().any()
            and raw.dropna().astype("string").str.strip().str.fullmatch(r"-?\d+").all()
        ):
            # Epoch milliseconds, as numbers or (from CSV) as digit strings.
            out = pd.to_datetime(
                pd.to_numeric(raw, errors="coerce"), unit="ms", utc=True, errors="coerce"
            )
        else:
            out = pd.to_datetime(raw, utc=True, errors="coerce", format="mixed")
        bad = int((out.isna() & ~was_null).sum())
        if bad:
            issues.append(ContractIssue(table, file, col.name, "is not a UTC timestamp", bad))
    else:
        out = pd.to_numeric(raw, errors="coerce")
        bad = int((out.isna() & ~was_null).sum())
        if bad:
            issues.append(ContractIssue(table, file, col.name, f"is not {col.kind}", bad))
        if col.kind == "int":
            frac = out.notna() & (out != np.floor(out.fillna(0)))
            if frac.any():
                issues.append(ContractIssue(table, file, col.name, "is not int", int(frac.sum())))
            out = out.round().astype("Int64")
        else:
            out = out.astype("float64")
    if col.is_id:
        nulls = int(out.isna().sum())
        if nulls:
            issues.append(ContractIssue(table, file, col.name, "has null IDs", nulls))
    return out, issues


# A string that ``_coerce_native`` would change: blank, or with leading/trailing whitespace
# (``\s`` is Unicode White_Space, the set ``str.strip_chars`` strips).
_NEEDS_STRIP = r"^\s|\s$|^$"


def _strings_to_clean(df: pl.DataFrame, schema: tuple[Column, ...]) -> set[str]:
    """String columns with at least one value to strip or null (usually none: then the column is
    kept as read, zero-copy, instead of rebuilt; at 10M rows a rebuilt id column costs ~0.3 GB)."""
    names = [
        c.name
        for c in schema
        if c.kind == "str" and c.name in df.columns and df.schema[c.name] == pl.String
    ]
    if not names:
        return set()
    found = df.select(pl.col(n).str.contains(_NEEDS_STRIP).any() for n in names).row(0)
    return {n for n, dirty in zip(names, found, strict=True) if dirty}


def _coerce_native(dtype: pl.DataType, col: Column, clean: bool = True) -> pl.Expr | None:
    """The contract's type for a column already stored with a matching Arrow type (the common
    case: typed Parquet), as a Polars expression; None when the pandas rules of :func:`_coerce`
    must decide (text numbers and timestamps from CSV, numbers as ids, epoch numbers)."""
    c = pl.col(col.name)
    if col.kind == "str" and dtype == pl.String:
        if not clean:
            return c  # nothing to strip or null: the column as read
        stripped = c.str.strip_chars()
        return pl.when(stripped == "").then(None).otherwise(stripped).alias(col.name)
    if col.kind == "timestamp" and isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:
            return c.dt.replace_time_zone("UTC")
        return c.dt.convert_time_zone("UTC")
    if col.kind == "int" and dtype.is_integer():
        return c.cast(pl.Int64)
    if col.kind == "float" and (dtype.is_float() or dtype.is_integer()):
        return c.cast(pl.Float64)
    return None


def _typed_file(
    df: pl.DataFrame, schema: tuple[Column, ...], file: str, table: str
) -> tuple[pl.DataFrame, list[ContractIssue]]:
    """The contract's columns of one file, typed, in schema order, plus ``_file``."""
    exprs: list[pl.Expr] = []
    issues: list[ContractIssue] = []
    fallback: dict[str, pl.Series] = {}
    dirty = _strings_to_clean(df, schema)
    for col in schema:
        if col.name not in df.columns:
            exprs.append(pl.lit(None, dtype=pl.String).alias(col.name))
            continue
        native = _coerce_native(df.schema[col.name], col, clean=col.name in dirty)
        if native is None:
            coerced, found = _coerce(df.select(col.name).to_pandas(), col, file, table)
            issues.extend(found)
            series = pl.from_pandas(coerced).alias(col.name)
            fallback[col.name] = series.cast(pl.String) if col.kind == "str" else series
            exprs.append(pl.lit(fallback[col.name]).alias(col.name))
        else:
            exprs.append(native)
    # A categorical: 4 bytes a row instead of the file name repeated.
    out = df.select(*exprs, pl.lit(file, dtype=pl.String).cast(pl.Categorical).alias("_file"))
    # Issues are reported column by column, in schema order, like the pandas rules do.
    ordered: list[ContractIssue] = []
    for col in schema:
        if col.name not in df.columns:
            if col.required:
                ordered.append(ContractIssue(table, file, col.name, "is missing", df.height))
            continue
        ordered.extend(i for i in issues if i.column == col.name)
        if col.is_id and col.name not in fallback:
            nulls = out[col.name].null_count()
            if nulls:
                ordered.append(ContractIssue(table, file, col.name, "has null IDs", nulls))
    return out, ordered


def read_landed(storage: Storage, table: str, dt: str) -> LandedTable:
    """Read every data file of one table's partition, coerce the contract's types, list issues.

    Rows are never dropped here; the issues say which file and column broke the contract and how
    many rows are affected. Extra columns are ignored; missing optional ones are added as nulls.
    Typed Parquet columns are coerced in Polars; text columns (CSV) follow the pandas rules of
    :func:`_coerce`, so both kinds of file give the same values.
    """
    schema = SCHEMAS[table]
    result = LandedTable(table=table, dt=dt, data=_empty(table))
    frames = []
    missing_optional: set[str] = set()
    files, unknown = _partition_files(storage, table, dt)
    for key in unknown:
        # Silently skipping e.g. Hive's 000000_0 or .csv.gz would look like a day of no traffic.
        result.issues.append(
            ContractIssue(
                table, key, "*", "is not .parquet or .csv: not read (convert or remove it)", 0
            )
        )
    for info in files:
        data = storage.read_bytes(info.key)
        file = f"{table}/dt={dt}/{info.key.rsplit('/', 1)[-1]}"
        try:
            df = (
                parquet_bytes_to_polars(data)
                if info.key.endswith(".parquet")
                else pl.from_pandas(read_csv_bytes(data))
            )
        except Exception as exc:  # a torn or foreign file: say which one
            result.issues.append(ContractIssue(table, file, "*", f"is unreadable: {exc}", 0))
            continue
        result.files.append({"key": file, "rows": df.height, "sha256": sha256_bytes(data)})
        typed, issues = _typed_file(df, schema, file, table)
        result.issues.extend(issues)
        missing_optional.update(
            c.name for c in schema if not c.required and c.name not in df.columns
        )
        if all(c.name in df.columns for c in schema if c.required):
            frames.append(typed)
    if frames:
        result.data = _concat(frames)
    result.missing_optional = sorted(missing_optional)
    return result


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """Files in order; a timestamp column takes the finest unit any file has (as pandas does)."""
    units = {"ms": 0, "us": 1, "ns": 2}
    casts = {}
    for name, dtype in frames[0].schema.items():
        if isinstance(dtype, pl.Datetime):
            finest = max((f.schema[name].time_unit for f in frames), key=units.__getitem__)
            casts[name] = pl.Datetime(finest, "UTC")
    return pl.concat([f.cast(casts) for f in frames], how="vertical", rechunk=True)


def _empty(table: str) -> pl.DataFrame:
    dtypes = {
        "str": pl.String,
        "int": pl.Int64,
        "float": pl.Float64,
        "timestamp": pl.Datetime("ns", "UTC"),
    }
    schema = {c.name: dtypes[c.kind] for c in SCHEMAS[table]}
    schema["_file"] = pl.Categorical
    return pl.DataFrame(schema=schema)
