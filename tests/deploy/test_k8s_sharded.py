"""deploy/k8s/sharded: the bot as a StatefulSet whose pods, by ordinal, cover every shard exactly once."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml
from deploy_files import DEPLOY, load_yaml_documents, settings_env

from captionbot.settings import load_settings
from captionbot.sharding import ShardSettingsError, plan

SHARDED = DEPLOY / "k8s" / "sharded"
[SERVICE, STATEFULSET] = load_yaml_documents(SHARDED / "bot-statefulset.yaml")
[BOT] = STATEFULSET["spec"]["template"]["spec"]["containers"]


def env_of(container: dict[str, Any], pod_name: str) -> dict[str, str]:
    """The container's plain env values, with the downward-API pod name filled in as Kubernetes does."""
    out = {}
    for e in container["env"]:
        if "value" in e:
            out[e["name"]] = e["value"]
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            out[e["name"]] = pod_name
    return out


def shards_of_pod(ordinal: int) -> tuple[int, ...]:
    env = env_of(BOT, f"{STATEFULSET['metadata']['name']}-{ordinal}")
    fields = settings_env()
    p = plan(load_settings(**{fields[k]: v for k, v in env.items() if k in fields}))
    assert p is not None
    return p.ids


def test_the_pods_of_the_statefulset_cover_every_shard_exactly_once() -> None:
    env = env_of(BOT, "captionbot-bot-0")
    count, replicas = int(env["CAPTIONBOT_SHARD_COUNT"]), STATEFULSET["spec"]["replicas"]
    covered = [i for pod in range(replicas) for i in shards_of_pod(pod)]
    assert covered == list(range(count))
    with pytest.raises(ShardSettingsError, match="run 2 process"):
        shards_of_pod(replicas)  # one pod too many refuses to start


def test_the_statefulset_is_probed_gets_the_token_and_starts_pods_in_order() -> None:
    spec = STATEFULSET["spec"]
    assert spec["serviceName"] == SERVICE["metadata"]["name"] and SERVICE["spec"]["clusterIP"] == "None"
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert BOT["readinessProbe"]["httpGet"]["path"] == "/readyz" and BOT["args"] == ["captionbot", "bot"]
    names = {e["name"] for e in BOT["env"]}
    assert {"DISCORD_TOKEN", "CAPTIONBOT_REDIS_URL", "CAPTIONBOT_PROCESS_INDEX"} <= names
    assert names - {"DISCORD_TOKEN"} <= set(settings_env()), "only settings the code reads"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_sharded_kustomization_replaces_the_bot_deployment() -> None:
    out = subprocess.run(["kubectl", "kustomize", str(SHARDED)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    objs = [d for d in yaml.safe_load_all(out.stdout) if d]
    bots = [(o["kind"], o["metadata"]["name"]) for o in objs
            if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "bot"]
    assert sorted(bots) == [("Service", "captionbot-bot"), ("StatefulSet", "captionbot-bot")]
    assert all(o["metadata"].get("namespace") == "captionbot" for o in objs if o["kind"] != "Namespace")
