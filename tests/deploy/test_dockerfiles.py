"""The Dockerfiles, read as Docker would: multi-stage, non-root, health-checked, each image with only what it runs."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest
from deploy_files import DEPLOY, DOCKERFILES, REPO_ROOT, exec_form, free_port, read_dockerfile

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
# What each image must never contain, and the extra it installs.
IMAGES = {
    "Dockerfile.bot": ("bot", ("torch", "torchvision", "onnxruntime", "onnxruntime-gpu")),
    "Dockerfile.worker": ("worker", ("torch", "torchvision", "discord.py", "onnxruntime-gpu")),
    "Dockerfile.worker-gpu": ("gpu", ("torch", "torchvision", "discord.py", "onnxruntime")),
}


def requirement_name(req: str) -> str:
    return re.split(r"[\s<>=!~\[;]", req, maxsplit=1)[0].lower()


def installed_requirements(dockerfile: str) -> set[str]:
    """Distributions the image's `pip install ".[extra,...]"` pulls in directly (base + its extras)."""
    names = {requirement_name(r) for r in PYPROJECT["project"]["dependencies"]}
    for run in (ins for stage in read_dockerfile(dockerfile) for ins in stage.all("RUN")):
        for extras in re.findall(r'pip install [^&]*"\.\[([^\]]+)\]"', run):
            for extra in extras.split(","):
                names |= {requirement_name(r) for r in PYPROJECT["project"]["optional-dependencies"][extra.strip()]}
    return names


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_images_are_multi_stage_non_root_and_health_checked(dockerfile: str) -> None:
    stages = read_dockerfile(dockerfile)
    assert len(stages) >= 2, "build tools must stay in a build stage"
    final = stages[-1]
    assert any(args.startswith("--from=") for args in final.all("COPY")), "the final stage takes the built venv"
    assert final.all("RUN") == [] or all("pip install" not in r for r in final.all("RUN")), "no pip in the runtime"
    user = final.last("USER")
    assert user is not None, "the image must set a USER"
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: numeric and non-root (Kubernetes runAsNonRoot checks it)"
    health = final.last("HEALTHCHECK")
    assert health and exec_form(health) == ["captionbot-healthcheck", "/healthz"]
    assert any("deploy/healthcheck.py /usr/local/bin/captionbot-healthcheck" in c for c in final.all("COPY"))
    assert final.env()["CAPTIONBOT_METRICS_PORT"].isdigit(), "the health endpoint is on by default in containers"
    assert exec_form(final.last("ENTRYPOINT") or "")[0] == "tini", "PID 1 must forward SIGTERM"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_each_image_installs_only_what_its_process_needs(dockerfile: str) -> None:
    extra, forbidden = IMAGES[dockerfile]
    installed = installed_requirements(dockerfile)
    assert installed >= {requirement_name(r) for r in PYPROJECT["project"]["optional-dependencies"][extra]}
    assert installed.isdisjoint(forbidden), f"{dockerfile} installs {sorted(installed & set(forbidden))}"
    pip_runs = [r for stage in read_dockerfile(dockerfile) for r in stage.all("RUN") if "pip install" in r]
    assert pip_runs and not any("torch" in r.split("&&")[0] for r in pip_runs), "no torch in any pip install"


def test_the_bot_image_has_no_model_and_the_workers_bake_one_in() -> None:
    bot = read_dockerfile("Dockerfile.bot")[-1]
    assert not any("models" in c for c in bot.all("COPY"))
    for name in ("Dockerfile.worker", "Dockerfile.worker-gpu"):
        final = read_dockerfile(name)[-1]
        assert any(c.endswith("/app/models/default") for c in final.all("COPY")), name
        assert final.env()["CAPTIONBOT_BUNDLE"] == "/app/models/default"


def test_the_gpu_image_runs_cuda() -> None:
    stages = read_dockerfile("Dockerfile.worker-gpu")
    text = (DEPLOY / "Dockerfile.worker-gpu").read_text()
    cuda_image = re.search(r"ARG CUDA_IMAGE=(\S+)", text)
    assert cuda_image and cuda_image.group(1).startswith("nvidia/cuda:") and "runtime" in cuda_image.group(1)
    assert all(s.base == "${CUDA_IMAGE}" for s in stages), "build and runtime share the CUDA base (same python)"
    assert stages[-1].env()["CAPTIONBOT_PROVIDER"] == "cuda"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_what_the_images_copy_exists_and_passes_the_dockerignore(dockerfile: str) -> None:
    ignore = [line for line in (DEPLOY / f"{dockerfile}.dockerignore").read_text().splitlines()
              if line and not line.startswith("#")]
    assert ignore[0] == "**", "the context ignores everything first, then allows what the image copies"
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    build_args = dict(re.findall(r"^ARG (\w+)=(\S+)$", (DEPLOY / dockerfile).read_text(), re.M))
    for stage in read_dockerfile(dockerfile):
        for args in stage.all("COPY"):
            if args.startswith("--from="):
                continue
            for src in [a for a in args.split() if not a.startswith("--")][:-1]:
                src = re.sub(r"\$\{(\w+)\}", lambda m: build_args[m.group(1)], src).rstrip("/")
                assert (REPO_ROOT / src).exists() or src.startswith("models/"), f"{dockerfile} copies missing {src}"
                assert any(src == a or src.startswith(a + "/") for a in allowed), \
                    f"{dockerfile} copies {src}, but {dockerfile}.dockerignore keeps it out of the build context"


def _cli_help_without(command: str, blocked: tuple[str, ...],
                      modules: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """Import ``modules`` and run `captionbot <command> --help` in a Python that cannot import ``blocked``."""
    code = (
        "import importlib.abc, sys\n"
        f"BLOCKED = {blocked!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if any(name == b or name.startswith(b + '.') for b in BLOCKED):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (not in this image)', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for m in {modules!r}: __import__(m)\n"
        "from captionbot.cli import main\n"
        f"sys.exit(main([{command!r}, '--help']))\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


# The modules each process loads at run time (not only its CLI), and what its image does not contain.
ENTRY_POINTS = [
    ("bot", ("torch", "torchvision", "onnxruntime", "fakeredis", "captionbot.inference", "captionbot.training",
             "captionbot.export"),
     ("captionbot.bot.bot_cli", "captionbot.bot.runner", "captionbot.bot.captions", "captionbot.bot.services",
      "captionbot.queue.client", "captionbot.queue.worker", "captionbot.queue.connection", "captionbot.queue.health")),
    ("worker", ("torch", "torchvision", "discord", "fakeredis", "captionbot.training", "captionbot.export",
                "captionbot.bot"),
     ("captionbot.inference.worker_cli", "captionbot.queue.worker", "captionbot.inference.captioner",
      "captionbot.queue.consumer", "captionbot.queue.connection", "captionbot.queue.health")),
]


@pytest.mark.parametrize(("command", "blocked", "modules"), ENTRY_POINTS)
def test_the_image_entry_points_start_without_what_their_image_lacks(command: str, blocked: tuple[str, ...],
                                                                     modules: tuple[str, ...]) -> None:
    result = _cli_help_without(command, blocked, modules)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"captionbot {command}" in result.stdout


def test_healthcheck_script_reports_alive_and_ready_from_the_health_server() -> None:
    from captionbot.queue.health import HealthServer

    ready = False
    server = HealthServer(free_port(), lambda: ready, host="127.0.0.1")
    script = [sys.executable, str(DEPLOY / "healthcheck.py")]
    env = {"CAPTIONBOT_METRICS_PORT": str(server.port), "PATH": "/usr/bin:/bin"}
    try:
        def probe(*args: str, environ: dict[str, str] = env) -> int:
            return subprocess.run([*script, *args], env=environ, capture_output=True, timeout=30).returncode

        assert probe() == 0 and probe("/healthz") == 0
        assert probe("/readyz") == 1, "not ready yet: the container must not count as ready"
        ready = True
        assert probe("/readyz") == 0
    finally:
        server.close()
    assert probe("/healthz") == 1, "nothing listening: unhealthy"
    assert probe("/healthz", environ={"PATH": "/usr/bin:/bin"}) == 1, "no metrics port: unhealthy, not a crash"
