"""What the service serves, and how it changes: immutable state, swapped in one assignment.

A request reads ``manager.state`` once and uses only that object, so it sees one consistent set
of models and features even while a reload happens. A reload builds a complete new
:class:`ServingState` beside the old one (in a worker thread) and publishes it with a single
reference assignment; a version that fails to load never replaces the one being served.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from reckit_assets.core.features import online
from reckit_assets.core.io.storage import Storage
from reckit_assets.core.io.uri import storage_from_uri
from reckit_assets.core.monitoring.rollout_state import read_rollout
from reckit_assets.core.monitoring.salting import in_canary
from reckit_assets.core.release.registry import ALIASES, CANARY, PRODUCTION, SHADOW, Registry
from serving.config import ServingConfig
from serving.features import OnlineFeatures
from serving.models import LoadedModel, ModelLoadError, load_version

log = logging.getLogger("serving")

FALLBACK_ATTEMPTS = 3  # earlier production versions tried, newest first, by a fresh replica
FEATURES_SLOT = "online_features"


@dataclass(frozen=True)
class ServingState:
    models: Mapping[str, Mapping[str, LoadedModel]]  # model name -> alias -> loaded version
    features: OnlineFeatures | None
    generation: int = 0
    # model name -> (canary version, share) from the release stage's rollout state
    # (``<model>/rollout/canary.json`` in the registry): the share the judge has stepped to.
    rollouts: Mapping[str, tuple[str, float]] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, name: str | None, alias: str = PRODUCTION) -> LoadedModel | None:
        if name is None:
            return None
        return self.models.get(name, {}).get(alias)

    def canary_share(self, name: str, canary_version: str, default: float) -> float:
        """The rollout's share when the release stage runs one for this canary version; else
        ``default`` (``RECKIT_CANARY_SHARE``: registries without the release stage, and the
        moments between a canary's registration and the start of its rollout)."""
        rollout = self.rollouts.get(name)
        return rollout[1] if rollout is not None and rollout[0] == canary_version else default

    def route(
        self, name: str | None, user_id: str | None, canary_share: float
    ) -> tuple[LoadedModel | None, str]:
        """(model, alias): the canary for the users whose bucket, salted per model and release
        (``core.monitoring.salting``), is below the canary's share; production otherwise."""
        canary = self.get(name, CANARY)
        if canary is not None and user_id is not None and name is not None:
            share = self.canary_share(name, canary.version, canary_share)
            if in_canary(user_id, name, canary.version, share):
                return canary, CANARY
        return self.get(name, PRODUCTION), PRODUCTION

    def versions(self) -> dict[str, dict[str, str]]:
        return {
            name: {alias: m.version for alias, m in by_alias.items()}
            for name, by_alias in self.models.items()
        }


EMPTY_STATE = ServingState(models=MappingProxyType({}), features=None)


@dataclass
class ReloadReport:
    trigger: str
    started_at: float
    seconds: float = 0.0
    changed: list[str] = field(default_factory=list)  # "xgboost/production: a -> b"
    errors: dict[str, str] = field(default_factory=dict)  # slot -> message

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {
            "trigger": self.trigger,
            "seconds": round(self.seconds, 4),
            "changed": self.changed,
            "errors": self.errors,
        }


ReloadHook = Callable[[str, str, str, bool], None]  # model, alias, version, success


class ModelManager:
    """Polls the registry's aliases and the online snapshot pointer; loads and swaps."""

    def __init__(
        self,
        config: ServingConfig,
        registry: Registry | None = None,
        features_storage: Storage | None = None,
        on_reload: ReloadHook | None = None,
    ) -> None:
        self.config = config
        self.registry = registry or Registry(storage_from_uri(config.registry_uri))
        self.features_storage = features_storage or (
            storage_from_uri(config.features_uri) if config.features_uri else self.registry.storage
        )
        self.state: ServingState = EMPTY_STATE
        self._on_reload = on_reload or (lambda *_: None)
        self._lock = threading.Lock()  # one reload at a time; requests never take it
        # Versions are immutable: one that failed verification or its smoke test fails again,
        # so the poll skips it (a forced reload retries). Other errors (I/O) are retried.
        self._refused: dict[tuple[str, str], str] = {}
        self.failing: dict[str, str] = {}  # slot -> why it is not serving what the registry says
        # slot -> the version the registry names there that this server refused for its bytes
        # (hash mismatch, failed smoke test): what /health's "degraded" and a monitor care about.
        self.refusing: dict[str, str] = {}
        # slot -> the version the registry's alias names (as of the last poll that read it)
        self.wanted: dict[str, str | None] = {}
        # slot -> the verified earlier version served because the aliased one cannot be
        self.fallback: dict[str, str] = {}
        self.last_error: dict | None = None  # {"at", "slot", "error"}: the latest failure
        self.last_report: ReloadReport | None = None
        self.reloads = 0

    # -- the reload ---------------------------------------------------------------------------
    def refresh(self, trigger: str = "poll", force: bool = False) -> ReloadReport:
        """Bring the served state in line with the registry; blocking, run it in a thread."""
        with self._lock:
            report = ReloadReport(trigger=trigger, started_at=time.time())
            current = self.state
            models: dict[str, Mapping[str, LoadedModel]] = {}
            for name in self.config.models:
                models[name] = MappingProxyType(self._refresh_model(name, current, report, force))
            features = self._refresh_features(current, report)
            rollouts = self._refresh_rollouts(current, report)
            changed = (
                features is not current.features
                or rollouts != dict(current.rollouts)
                or any(not _same(models[n], current.models.get(n, {})) for n in models)
            )
            if changed:
                # The swap: one reference assignment; in-flight requests keep the old object.
                self.state = ServingState(
                    models=MappingProxyType(models),
                    features=features,
                    generation=current.generation + 1,
                    rollouts=MappingProxyType(rollouts),
                )
            report.seconds = time.time() - report.started_at
            self.last_report = report
            self.reloads += 1
            for slot, message in report.errors.items():
                self.last_error = {"at": report.started_at, "slot": slot, "error": message}
            return report

    def _refresh_rollouts(
        self, current: ServingState, report: ReloadReport
    ) -> dict[str, tuple[str, float]]:
        """Each model's canary rollout (version, share); an unreadable one keeps the last known."""
        out: dict[str, tuple[str, float]] = {}
        for name in self.config.models:
            slot = f"{name}/rollout"
            try:
                rollout = read_rollout(self.registry.storage, name)
            except Exception as exc:
                self._fail(report, slot, f"{slot}: cannot read the canary rollout: {exc}")
                if name in current.rollouts:
                    out[name] = current.rollouts[name]
                continue
            self.failing.pop(slot, None)
            if rollout is not None:
                out[name] = (rollout.version, float(rollout.share))
                if current.rollouts.get(name) != out[name]:
                    report.changed.append(f"{slot}: {rollout.version} at {rollout.share:.0%}")
        return out

    def _refresh_model(
        self, name: str, current: ServingState, report: ReloadReport, force: bool
    ) -> dict[str, LoadedModel]:
        served = dict(current.models.get(name, {}))
        try:
            aliases = self.registry.aliases(name)
        except Exception as exc:
            self._fail(report, f"{name}", f"{name}: cannot read aliases: {exc}")
            return served
        wanted = {alias: aliases.get(alias) for alias in ALIASES}
        if wanted[CANARY] == wanted[PRODUCTION]:
            wanted[CANARY] = None  # a canary of the production version is no canary
        if wanted[SHADOW] in (wanted[PRODUCTION], wanted[CANARY]):
            wanted[SHADOW] = None  # nor is a shadow of a version users are served
        for alias in ALIASES:
            self.wanted[f"{name}/{alias}"] = wanted[alias]
        out: dict[str, LoadedModel] = {}
        for alias in ALIASES:
            slot = f"{name}/{alias}"
            version, have = wanted[alias], served.get(alias)
            if version is None:
                if alias == PRODUCTION and have is not None:
                    # Serving nothing would be worse than serving the last good version.
                    out[alias] = have
                    self._fail(
                        report,
                        slot,
                        f"{slot}: alias cleared in the registry; still serving {have.version}",
                    )
                elif alias == PRODUCTION:
                    self._fail(report, slot, f"{slot}: no {alias} version in the registry")
                else:  # the canary (or shadow) ended, or never was
                    self._clear(slot)
                    if have is not None:
                        report.changed.append(f"{slot}: {have.version} -> none")
                continue
            if have is not None and have.version == version:
                out[alias] = have
                self._clear(slot)
                continue
            loaded = next((m for m in served.values() if m.version == version), None)
            if loaded is None:
                loaded = self._load(name, version, slot, have, report, force)
            if loaded is None:
                if have is not None:
                    out[alias] = have  # keep serving the old version
                elif alias == PRODUCTION:
                    # A fresh replica: serve the last verified production rather than nothing.
                    fallback = self._fallback(name, version, slot, report)
                    if fallback is not None:
                        out[alias] = fallback
                        why = self.failing[slot].replace(
                            "; nothing served in its place",
                            f"; serving {fallback.version}, the last verified production "
                            f"version (fallback)",
                        )
                        self.failing[slot] = report.errors[slot] = why
                        report.changed.append(f"{slot}: none -> {fallback.version} (fallback)")
                        self._on_reload(name, alias, fallback.version, True)
                continue
            out[alias] = loaded
            self._clear(slot)
            self.fallback.pop(slot, None)
            report.changed.append(f"{slot}: {have.version if have else 'none'} -> {version}")
            self._on_reload(name, alias, version, True)
        return out

    def _load(
        self,
        name: str,
        version: str,
        slot: str,
        have: LoadedModel | None,
        report: ReloadReport,
        force: bool,
    ) -> LoadedModel | None:
        """The loaded version, or None with the failure recorded (and the old one kept)."""
        key = (name, version)
        keeping = f"; still serving {have.version}" if have else "; nothing served in its place"
        if key in self._refused and not force:
            self._fail(report, slot, self._refused[key] + keeping, quiet=True)
            self.refusing[slot] = version
            return None
        try:
            loaded = load_version(self.registry, name, version, self.config.scoring_threads)
        except Exception as exc:
            message = str(exc) if isinstance(exc, ModelLoadError) else f"{name} {version}: {exc!r}"
            if isinstance(exc, ModelLoadError) and exc.permanent:
                self._refused[key] = message
                self.refusing[slot] = version
            self._fail(report, slot, message + keeping)
            self._on_reload(name, slot.split("/")[1], version, False)
            return None
        self._refused.pop(key, None)
        log.info("loaded %s %s in %.2fs", name, version, loaded.load_seconds)
        return loaded

    def _fallback(
        self, name: str, refused: str, slot: str, report: ReloadReport
    ) -> LoadedModel | None:
        """The most recent earlier production version (the registry's alias history, newest
        first) that passes verification (sha256) and the smoke test; None if none does."""
        try:
            moves = self.registry.history(name, PRODUCTION)
        except Exception as exc:
            self._fail(report, f"{slot}/fallback", f"{slot}: cannot read alias history: {exc}")
            return None
        tried = {refused}
        for move in reversed(moves):
            version = move.from_version
            if version is None or version in tried or (name, version) in self._refused:
                continue
            tried.add(version)
            if len(tried) > FALLBACK_ATTEMPTS + 1:
                break
            try:
                loaded = load_version(self.registry, name, version, self.config.scoring_threads)
            except Exception as exc:
                log.warning("%s: fallback %s %s refused too: %s", slot, name, version, exc)
                if isinstance(exc, ModelLoadError) and exc.permanent:
                    self._refused[(name, version)] = str(exc)
                continue
            log.warning(
                "%s: the registry's %s cannot be served; serving %s, the last verified "
                "production version, until it can (degraded)",
                slot,
                refused,
                version,
            )
            self.fallback[slot] = version
            return loaded
        return None

    def _refresh_features(
        self, current: ServingState, report: ReloadReport
    ) -> OnlineFeatures | None:
        try:
            pointer = online.current(self.features_storage)
            if pointer is None:
                self._fail(
                    report, FEATURES_SLOT, "no online feature snapshot has been published yet"
                )
                return current.features
            have = current.features
            if have is not None and (have.dt, have.data_version) == (
                pointer["dt"],
                pointer["data_version"],
            ):
                self.failing.pop(FEATURES_SLOT, None)
                return current.features
            features = OnlineFeatures(online.load(self.features_storage, pointer["dt"]))
            if not features.fast:
                log.warning(
                    "online features dt=%s: columns %s are not covered by serving.features; "
                    "every request now calls assemble_features (correct, but ~50x slower)",
                    features.dt,
                    features.uncovered,
                )
        except Exception as exc:
            self._fail(report, FEATURES_SLOT, f"online features: {type(exc).__name__}: {exc}")
            self._on_reload(FEATURES_SLOT, "current", "", False)
            return current.features
        old = current.features.data_version if current.features else "none"
        report.changed.append(
            f"{FEATURES_SLOT}: {old} -> {features.data_version} (dt={features.dt})"
        )
        self.failing.pop(FEATURES_SLOT, None)
        self._on_reload(FEATURES_SLOT, "current", features.data_version, True)
        return features

    def _clear(self, slot: str) -> None:
        self.failing.pop(slot, None)
        self.refusing.pop(slot, None)
        self.fallback.pop(slot, None)

    def _fail(self, report: ReloadReport, slot: str, message: str, quiet: bool = False) -> None:
        if not quiet and self.failing.get(slot) != message:  # once, not at every poll
            log.warning("reload: %s", message)
        report.errors[slot] = message
        self.failing[slot] = message

    # -- what /health says ---------------------------------------------------------------------
    def health(self) -> tuple[bool, dict]:
        state = self.state
        primary = state.get(self.config.primary)
        missing = [n for n in self.config.models if state.get(n) is None]
        # degraded (still 200: something serves) when a model or the features are missing, or
        # the registry names a version this server refuses or cannot load (failing).
        healthy = not missing and state.features is not None and not self.failing
        status = "ok" if healthy else "degraded"
        body = {
            "status": status if primary is not None else "unavailable",
            "model_loaded": primary is not None,
            "model_version": primary.version if primary else None,
            "models": state.versions(),
            "online_features": (
                {
                    "dt": state.features.dt,
                    "data_version": state.features.data_version,
                    "fast_path": state.features.fast,
                }
                if state.features
                else None
            ),
            "reloads": self.reloads,
            "last_reload_at": self.last_report.started_at if self.last_report else None,
            "last_reload_error": self.last_error,
            "failing": dict(self.failing),
            "refused": {slot: self.failing.get(slot, v) for slot, v in self.refusing.items()},
            "aliases": self.alias_states(state),
        }
        return primary is not None, body

    def alias_states(self, state: ServingState | None = None) -> dict[str, dict[str, dict]]:
        """Per model and alias: the version the registry names, the version served, and why
        they differ (None when they agree)."""
        state = state or self.state
        out: dict[str, dict[str, dict]] = {}
        for name in self.config.models:
            for alias in ALIASES:
                slot = f"{name}/{alias}"
                registry = self.wanted.get(slot)
                model = state.get(name, alias)
                served = model.version if model else None
                if registry is None and served is None:
                    continue
                why = None
                if registry != served:
                    why = self.failing.get(slot) or (
                        "not loaded yet" if registry is not None else "alias cleared"
                    )
                out.setdefault(name, {})[alias] = {
                    "registry": registry,
                    "served": served,
                    "agree": registry == served,
                    "fallback": self.fallback.get(slot) == served and served is not None,
                    "why": why,
                }
        return out


def _same(a: Mapping[str, LoadedModel], b: Mapping[str, LoadedModel]) -> bool:
    """The same loaded objects under the same aliases (identity: a reload that loads nothing
    new publishes no new state)."""
    return a.keys() == b.keys() and all(a[k] is b[k] for k in a)
