"""Imported by a test's main script: records each process that imports it (test_isolation.py)."""

import os

with open(os.environ["RECKIT_TEST_IMPORTED"], "a") as _f:
    _f.write(f"{os.getpid()}\n")
