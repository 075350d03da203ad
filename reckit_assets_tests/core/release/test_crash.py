"""Crash safety of a release, shown by killing real registering processes (SIGKILL).

A worker process (``release_worker``) runs the real release code and kills itself right after
its N-th write to the registry, for every N. Afterwards ``reckit registry verify`` must pass and
a retry must complete the release. Then real processes race for the same alias.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reckit_assets import cli
from reckit_assets.core.io import warehouse
from reckit_assets.core.io.storage import LocalStorage
from reckit_assets.core.release.registry import CANARY, PRODUCTION, Registry
from reckit_assets.core.steps import models

ROOT = Path(__file__).resolve().parents[3]
KIND = "item2vec"
D1, D2 = "2026-10-08", "2026-10-09"


def _stage(store: LocalStorage, dt: str, production: str | None) -> str:
    """A candidate for dt plus a passing evaluation of it against ``production``."""
    version = f"{KIND}-{dt}-0123456789"
    info = {
        "version": version,
        "training_window": [dt],
        "input_data_versions": {dt: "abc"},
        "code_version": "1",
        "params": {"dim": 8},
    }
    files = {"embeddings.json": json.dumps({"i1": [0.1, 0.2], "dt": dt}).encode()}
    published = warehouse.publish(
        store, models.candidate_asset(KIND), dt, warehouse.Artifact(blobs=files, info=info)
    )
    report = {
        "candidate": {"version": version, "artifact_data_version": published["data_version"]},
        "production": {"version": production} if production else None,
        "gate": [{"name": "beats_production", "passed": True, "description": "ok"}],
        "passed": True,
    }
    warehouse.publish(
        store,
        models.evaluation_asset(KIND),
        dt,
        warehouse.Artifact(blobs={"report.json": json.dumps(report).encode()}),
    )
    return version


def _worker(*args: str, env: dict | None = None, wait: bool = True):
    cmd = [sys.executable, "-m", "reckit_assets_tests.core.release.release_worker", *args]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, text=True)
    return subprocess.run(cmd, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120)


def _verify(registry_root: str, capsys) -> tuple[int, str]:
    code = cli.main(["registry", "--registry", str(registry_root), "verify"])
    return code, capsys.readouterr().out


class Scenario:
    """A lake with a registry; ``first``: no production yet (dt=D1), else production = D1's
    version and dt=D2's candidate goes to canary."""

    def __init__(self, root: Path, first: bool, s3: tuple[str, dict] | None = None) -> None:
        from reckit_assets.core.io.uri import storage_from_uri

        self.wh = LocalStorage(root / "warehouse")
        self.env = s3[1] if s3 else {}
        self.registry_root = f"s3://{s3[0]}/{root.name}" if s3 else str(root / "registry")
        self.registry = Registry(storage_from_uri(self.registry_root))
        v1 = _stage(self.wh, D1, None)
        self.dt, self.alias, self.expected = D1, PRODUCTION, v1
        if not first:
            models.register(self.wh, self.registry, KIND, D1, "setup")
            self.dt, self.alias = D2, CANARY
            self.expected = _stage(self.wh, D2, v1)

    def args(self) -> list[str]:
        return ["register", "--registry", self.registry_root, "--warehouse"]

    def run(self, *extra: str):
        return _worker(*self.args(), str(self.wh.root), "--dt", self.dt, *extra, env=self.env)

    def retry(self) -> dict:
        """The same registration again, in this process (the code a rerun of the step runs)."""
        return models.register(self.wh, self.registry, KIND, self.dt, "retry")

    def released(self) -> bool:
        moves = [m for m in self.registry.history(KIND) if m.to_version == self.expected]
        return self.registry.alias(KIND, self.alias) == self.expected and len(moves) == 1


def _write_points(tmp_path: Path, first: bool, s3) -> list[str]:
    scenario = Scenario(tmp_path / "trace", first, s3)
    done = scenario.run("--trace")
    assert done.returncode == 0, done.stderr
    assert scenario.released()
    return [line for line in done.stderr.splitlines() if line.startswith("write ")]


@pytest.mark.parametrize(
    ("first", "backend"),
    [(True, "local"), (False, "local"), (True, "s3")],
    ids=["first-version", "canary", "first-version-s3"],
)
def test_registration_killed_at_every_write_point_verifies_and_retry_completes(
    tmp_path, capsys, first, backend, request
):
    s3 = request.getfixturevalue("s3_bucket") if backend == "s3" else None
    points = _write_points(tmp_path, first, s3)
    # files, then the manifest (create-if-absent), then one ledger write for the alias move
    assert len(points) == 3
    assert "create-if-absent" in points[-2] and "manifest.json" in points[-2]
    assert "ledger.json" in points[-1]
    for n in range(len(points) + 1):  # 0: killed before its first write
        scenario = Scenario(tmp_path / f"kill-{n}", first, s3)
        before = scenario.registry.history(KIND)
        killed = scenario.run("--kill-after", str(n))
        assert killed.returncode == -signal.SIGKILL, (n, killed.stderr)
        code, out = _verify(scenario.registry_root, capsys)
        assert code == 0, (n, out)
        # the alias moved exactly when its write (the last point) happened, log entry included
        moved = n == len(points)
        assert scenario.released() is moved, n
        assert len(scenario.registry.history(KIND)) == len(before) + moved
        scenario.retry()
        assert scenario.released(), n
        assert _verify(scenario.registry_root, capsys)[0] == 0
        # and a rerun after the release is a no-op
        assert scenario.retry()["alias_move"] is None
        assert len(scenario.registry.history(KIND)) == len(before) + 1


def test_alias_move_killed_before_and_after_its_write(tmp_path, capsys):
    scenario = Scenario(tmp_path / "s", first=False)
    registry, v1 = scenario.registry, scenario.registry.alias(KIND, PRODUCTION)
    registry.register(KIND, "v2", {"m": b"2"}, {"kind": KIND, "partition": D2})
    args = ["move", "--registry", str(scenario.registry_root), "--kind", KIND]
    args += ["--alias", PRODUCTION, "--version", "v2", "--expected", v1, "--by", "oncall"]
    for n, moved in ((0, False), (1, True)):
        killed = _worker(*args, "--kill-after", str(n))
        assert killed.returncode == -signal.SIGKILL
        assert _verify(scenario.registry_root, capsys)[0] == 0
        assert (registry.alias(KIND, PRODUCTION) == "v2") is moved
        last = registry.history(KIND, PRODUCTION)[-1]
        assert (last.to_version == "v2") is moved  # alias and log never diverge
        if moved:
            assert last.from_version == v1 and registry.previous_production(KIND) == v1
    retry = _worker(*args)  # the same command again: the move is there, nothing doubles
    assert retry.returncode == 0, retry.stderr
    assert [m.to_version for m in registry.history(KIND, PRODUCTION)] == [v1, "v2"]


def test_two_concurrent_first_registrations_one_wins_the_other_gets_a_conflict(tmp_path):
    wh = LocalStorage(tmp_path / "warehouse")
    registry_root = tmp_path / "registry"
    versions = {dt: _stage(wh, dt, None) for dt in (D1, D2)}
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = {
        dt: _worker(
            "register", "--registry", str(registry_root), "--warehouse", str(wh.root),
            "--dt", dt, "--barrier", f"{barrier}:2", wait=False,
        )
        for dt in versions
    }  # fmt: skip
    out = {dt: (p.wait(timeout=120), p.stdout.read()) for dt, p in procs.items()}
    codes = sorted(code for code, _ in out.values())
    assert codes == [0, 3], out
    winner = next(dt for dt, (code, _) in out.items() if code == 0)
    loser = next(dt for dt in versions if dt != winner)
    registry = Registry(LocalStorage(registry_root))
    assert registry.alias(KIND, PRODUCTION) == versions[winner]
    assert json.loads(out[loser][1])["lost_to"] == versions[winner]
    assert [m.to_version for m in registry.history(KIND)] == [versions[winner]]
    assert registry.verify() == []


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_concurrent_alias_moves_each_won_once_and_no_log_lost(tmp_path, backend, request):
    if backend == "s3":
        bucket, env = request.getfixturevalue("s3_bucket")
        uri = f"s3://{bucket}/registry"
    else:
        env, uri = {}, str(tmp_path / "registry")
    os.environ.update(env)
    from reckit_assets.core.io.uri import storage_from_uri

    registry = Registry(storage_from_uri(uri))
    for v in ("a", "b", "c"):
        registry.register(KIND, v, {"m": v.encode()}, {"kind": KIND, "partition": D1})
    start, workers, moves = tmp_path / "go", 3, 6
    procs = [
        _worker(
            "race", "--registry", uri, "--kind", KIND, "--alias", CANARY,
            "--version", "a", "--version", "b", "--version", "c", "--moves", str(moves),
            "--by", f"w{i}", "--start-file", str(start), env=env, wait=False,
        )
        for i in range(workers)
    ]  # fmt: skip
    time.sleep(2.5)
    start.touch()
    results = [json.loads(p.communicate(timeout=180)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    log = registry.history(KIND, CANARY)
    wins = sorted(seq for r in results for seq in r["wins"])
    # every successful move is in the log exactly once, at a unique sequence number
    assert wins == [m.seq for m in log] == list(range(1, workers * moves + 1))
    # each move starts where the previous one ended: no move was applied on a stale value
    assert all(b.from_version == a.to_version for a, b in itertools.pairwise(log))
    assert registry.alias(KIND, CANARY) == log[-1].to_version
    assert registry.verify() == []


@pytest.fixture
def s3_bucket():
    import uuid

    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    bucket = f"reckit-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    yield bucket, env
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    server.stop()
