"""Every gate's false-block rate and catch rate, in one run: the data gate, then the release gate.

    python bench/gates.py            # full: ~30 min data gate + release gate trials (2 cores)
    python bench/gates.py --quick    # one seed of the data gate, a few release trials

The data gate's table (bench/gates_data.py): clean days at 10k and 100k impressions over 3
seeds plus the realistic variations (false blocks, target 0) and every defect class injected
(catch rate, target 100%, each by the check that names it). The release gate's table
(bench/gates_release.py): A/A pass rate, degraded candidates (shuffled labels, a strong feature
dropped, AUC -0.01 / -0.02), worse than the trivial baseline. Figures: docs/benchmarks.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    quick = "--quick" in sys.argv[1:]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    runs = [
        (
            "data gate",
            [sys.executable, str(HERE / "gates_data.py"), *(["--quick"] if quick else [])],
            {},
        ),
        (
            "release gate",
            [sys.executable, str(HERE / "gates_release.py")],
            {"BENCH_TRIALS": "4", "BENCH_SIM": '{"impressions_per_day": 10000}'} if quick else {},
        ),
    ]
    status = 0
    for title, cmd, extra in runs:
        print(f"\n=== {title}: {' '.join(Path(c).name for c in cmd[1:])}", flush=True)
        status |= subprocess.run(cmd, env={**env, **extra}, check=False).returncode
    return status


if __name__ == "__main__":
    raise SystemExit(main())
