"""The Kubernetes manifests: they parse, every pod is probed and sized, GPUs are requested, KEDA watches our stream."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_files import DEPLOY, load_yaml, load_yaml_documents, settings_env

from captionbot.formats import Priority, RedisKeys
from captionbot.settings import Settings

K8S = DEPLOY / "k8s"
KUSTOMIZATIONS = ("base", "gpu", "managed-redis")
DEFAULTS = Settings()


def resources(*dirs: str) -> list[dict[str, Any]]:
    """Every object in the manifests of ``dirs`` (kustomization files and the example Secret excluded)."""
    docs: list[dict[str, Any]] = []
    for d in dirs:
        for path in sorted((K8S / d).glob("*.yaml")):
            if path.name != "kustomization.yaml":
                docs.extend(load_yaml_documents(path))
    return docs


ALL = resources("base", "gpu")


def of_kind(kind: str, docs: list[dict[str, Any]] = ALL) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


DEPLOYMENTS = of_kind("Deployment")
CONFIG = of_kind("ConfigMap")["captionbot-settings"]["data"]


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return workload["spec"]["template"]["spec"]["containers"]


def env_names(container: dict[str, Any]) -> set[str]:
    return {e["name"] for e in container.get("env", [])}


def batch_size(deployment: dict[str, Any]) -> int:
    """CAPTIONBOT_BATCH_SIZE of a Deployment's container: its own env, else the shared ConfigMap's."""
    own = {e["name"]: e.get("value") for e in containers(deployment)[0].get("env", [])}
    return int(own.get("CAPTIONBOT_BATCH_SIZE") or CONFIG["CAPTIONBOT_BATCH_SIZE"])


def test_every_manifest_parses_and_names_its_kind() -> None:
    for path in [*K8S.rglob("*.yaml")]:
        for doc in load_yaml_documents(path):
            assert doc.get("kind") and doc.get("apiVersion"), f"{path}: object without kind/apiVersion"
    assert set(DEPLOYMENTS) == {"captionbot-bot", "captionbot-worker", "captionbot-worker-gpu"}
    assert {"StatefulSet", "PodDisruptionBudget", "ScaledObject", "TriggerAuthentication"} <= {d["kind"] for d in ALL}


@pytest.mark.parametrize("name", sorted(DEPLOYMENTS))
def test_every_deployment_is_probed_sized_and_non_root(name: str) -> None:
    deployment = DEPLOYMENTS[name]
    pod = deployment["spec"]["template"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    metrics_port = int(CONFIG["CAPTIONBOT_METRICS_PORT"])
    for c in containers(deployment):
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["metrics"] == metrics_port, "probes and Prometheus use CAPTIONBOT_METRICS_PORT"
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        assert {"cpu", "memory"} <= set(c["resources"]["requests"]), f"{name}: requests cpu and memory"
        assert "memory" in c["resources"]["limits"], f"{name}: a memory limit"
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert "command" not in c, "use args: command would replace the image's tini entrypoint"
        assert c["args"][0] == "captionbot"
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(metrics_port)


def test_the_gpu_worker_requests_a_gpu_and_uses_cuda() -> None:
    gpu = containers(DEPLOYMENTS["captionbot-worker-gpu"])[0]
    assert gpu["resources"]["requests"]["nvidia.com/gpu"] == 1
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1, "extended resources must be in limits too"
    assert {"name": "CAPTIONBOT_PROVIDER", "value": "cuda"} in gpu["env"]
    assert gpu["args"] == ["captionbot", "worker"]
    for name in ("captionbot-bot", "captionbot-worker"):
        assert "nvidia.com/gpu" not in str(containers(DEPLOYMENTS[name])[0]["resources"])


def test_only_the_bot_gets_the_token_and_everyone_gets_the_queue() -> None:
    secret = load_yaml(K8S / "secret.example.yaml")
    for name, deployment in DEPLOYMENTS.items():
        c = containers(deployment)[0]
        assert "CAPTIONBOT_REDIS_URL" in env_names(c)
        assert ("DISCORD_TOKEN" in env_names(c)) == (name == "captionbot-bot")
        assert {"configMapRef": {"name": "captionbot-settings"}} in c["envFrom"]
        for e in c["env"]:
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]


def test_every_setting_named_in_the_manifests_is_one_the_code_reads() -> None:
    known = set(settings_env())
    named = set(CONFIG) | {n for d in DEPLOYMENTS.values() for c in containers(d) for n in env_names(c)}
    assert named - known == set(), f"manifests set what captionbot never reads: {named - known}"
    assert int(CONFIG["CAPTIONBOT_METRICS_PORT"]) > 0


def test_disruption_budgets_cover_the_workers() -> None:
    budgets = of_kind("PodDisruptionBudget")
    covered = set()
    for pdb in budgets.values():
        selector = pdb["spec"]["selector"]["matchLabels"]
        matched = [n for n, d in DEPLOYMENTS.items()
                   if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert matched, f"PodDisruptionBudget {pdb['metadata']['name']} selects no Deployment"
        covered |= set(matched)
        assert "maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"]
    assert {"captionbot-worker", "captionbot-worker-gpu"} <= covered


def test_keda_scales_workers_on_the_lag_of_our_stream_and_group() -> None:
    auths = of_kind("TriggerAuthentication")
    services = of_kind("Service")
    namespace = load_yaml(K8S / "base" / "kustomization.yaml")["namespace"]
    scaled = of_kind("ScaledObject")
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled.values()} == {"captionbot-worker",
                                                                               "captionbot-worker-gpu"}
    for obj in scaled.values():
        assert obj["spec"]["scaleTargetRef"]["name"] in DEPLOYMENTS
        triggers = obj["spec"]["triggers"]
        assert {t["type"] for t in triggers} == {"redis-streams"}
        lag = [t for t in triggers if "lagCount" in t["metadata"]]
        lanes = {RedisKeys(DEFAULTS.stream).lane(p) for p in Priority}
        assert DEFAULTS.stream == CONFIG["CAPTIONBOT_STREAM"]
        assert {t["metadata"]["stream"] for t in lag} == lanes and len(lag) == len(lanes), \
            "one trigger per lane (automation and commands) scales on the consumer group's lag"
        for trigger in lag:
            assert trigger["metadata"]["consumerGroup"] == DEFAULTS.group == CONFIG["CAPTIONBOT_GROUP"]
            assert int(trigger["metadata"]["lagCount"]) > 0 and "activationLagCount" in trigger["metadata"]
        for trigger in triggers:
            meta = trigger["metadata"]
            assert meta["stream"] in lanes
            if "streamLength" in meta:  # XLEN mode only without a consumer group; must exceed one worker's batch
                assert "consumerGroup" not in meta
                assert int(meta["streamLength"]) > batch_size(DEPLOYMENTS[obj["spec"]["scaleTargetRef"]["name"]])
            assert trigger["authenticationRef"]["name"] in auths
            host, port = meta["address"].rsplit(":", 1)
            assert host == f"redis.{namespace}.svc.cluster.local" and int(port) == 6379
        assert "redis" in services, "the address names the in-cluster Redis Service"
        assert obj["spec"]["minReplicaCount"] <= obj["spec"]["maxReplicaCount"]


def test_in_cluster_redis_persists_with_aof_and_requires_the_password() -> None:
    redis = of_kind("StatefulSet")["redis"]
    (c,) = containers(redis)
    script = " ".join(c["command"])
    assert "--appendonly yes" in script and "requirepass" in script and "--maxmemory-policy noeviction" in script
    assert "--dir /data" in script and {"name": "data", "mountPath": "/data"} in c["volumeMounts"]
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data" and claim["spec"]["resources"]["requests"]["storage"]
    assert c["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "redis-password"
    assert c["readinessProbe"] and c["livenessProbe"] and c["resources"]["requests"]


def _kustomize(directory: str) -> list[dict[str, Any]]:
    out = subprocess.run(["kubectl", "kustomize", str(K8S / directory)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed (the YAML checks above ran)")
def test_the_kustomizations_build() -> None:
    built = {d: _kustomize(d) for d in KUSTOMIZATIONS}
    kinds = {d: {o["kind"] for o in objs} for d, objs in built.items()}
    assert "StatefulSet" in kinds["base"] and "StatefulSet" not in kinds["managed-redis"]
    assert "captionbot-worker-gpu" in {o["metadata"]["name"] for o in built["gpu"]}
    for objs in built.values():
        assert all(o["metadata"].get("namespace") == "captionbot" for o in objs if o["kind"] != "Namespace")
    (managed,) = [o for o in built["managed-redis"] if o["kind"] == "ScaledObject"]
    assert all(t["metadata"]["enableTLS"] == "true" for t in managed["spec"]["triggers"])
    assert not any("svc.cluster.local" in t["metadata"]["address"] for t in managed["spec"]["triggers"])


def test_the_example_secret_is_not_applied() -> None:
    for d in KUSTOMIZATIONS:
        listed = load_yaml(K8S / d / "kustomization.yaml").get("resources", [])
        assert not any(Path(r).name == "secret.example.yaml" for r in listed)
