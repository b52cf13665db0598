"""deploy/README.md names only metrics, settings and files that exist, and documents every queue metric."""

from __future__ import annotations

import re

from deploy_files import DEPLOY, REPO_ROOT, settings_env

GUIDE = (DEPLOY / "README.md").read_text()


def defined_metrics() -> set[str]:
    """Names of the Prometheus metrics the runtime code defines (first argument of Counter/Gauge/Histogram)."""
    names: set[str] = set()
    for pkg in ("captionbot", "bot", "inference"):
        for path in (REPO_ROOT / pkg).rglob("*.py"):
            names |= set(re.findall(r"(?:Counter|Gauge|Histogram|Summary)\(\s*\"(captionbot_\w+)\"", path.read_text()))
    return names


def test_the_guide_documents_every_metric_and_only_real_ones() -> None:
    mentioned = {m.removesuffix("_bucket") for m in re.findall(r"\bcaptionbot_[a-z_]+\b", GUIDE)}
    defined = defined_metrics()
    assert defined, "no metrics found in the code"
    assert mentioned - defined == set(), f"the guide names metrics the code does not define: {mentioned - defined}"
    assert defined - mentioned == set(), f"metrics the guide does not explain: {defined - mentioned}"


def test_the_guide_names_only_real_settings() -> None:
    mentioned = set(re.findall(r"\bCAPTIONBOT_[A-Z_]+\b", GUIDE))
    assert mentioned - set(settings_env()) == set()


def test_the_files_the_guide_points_to_exist() -> None:
    for path in re.findall(r"`((?:deploy/|k8s/|captionbot/|tests/deploy/)[\w./-]+)`", GUIDE):
        path = path.rstrip(".")
        if path == "deploy/.env":  # the operator makes it from .env.example
            continue
        candidates = [REPO_ROOT / path, DEPLOY / path, REPO_ROOT / "tests" / "deploy" / path]
        assert any(c.exists() for c in candidates), f"deploy/README.md points to {path}, which does not exist"
