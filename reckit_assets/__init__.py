"""reckit pipeline: the Dagster asset graph and its framework-free core."""

import os

# Polars' allocator (jemalloc, environment prefix ``_RJEM_``) keeps freed pages for ~10 s by
# default, so a step's resident memory grows with the sum of its transients rather than their
# peak. Returning them at once lowers the per-step peak at 10M rows a day (docs/benchmarks.md,
# "Data layer"). Read when polars loads, hence here, before any import of it; ``setdefault``:
# an operator's own setting wins.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
