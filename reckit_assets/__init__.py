"""reckit pipeline: the Dagster asset graph and its framework-free core."""

import os

# Polars' allocator (jemalloc, environment prefix ``_RJEM_``) keeps freed pages for ~10 s by
# default, so a step's resident memory grows with the sum of its transients rather than their
# peak. Returning them after 0.3 s keeps the per-step peak at 10M rows a day under 4 GB; 0 (at
# once) gave the same peak 20% slower (every transient faulted in afresh), 1 s crossed 4 GB
# (docs/benchmarks.md, "Data layer"). Read when polars loads, hence here, before any import of
# it; ``setdefault``: an operator's own setting wins.
ALLOCATOR_DECAY = "dirty_decay_ms:300,muzzy_decay_ms:300"
os.environ.setdefault("_RJEM_MALLOC_CONF", ALLOCATOR_DECAY)
