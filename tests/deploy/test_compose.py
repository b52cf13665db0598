"""docker-compose.yml (and the extra-worker-host file) checked as Compose would read them, without a Docker engine."""

from __future__ import annotations

import pytest
from deploy_files import (
    DEPLOY,
    MissingVariable,
    exec_form,
    load_compose,
    load_yaml,
    passthrough_keys,
    read_dockerfile,
    read_env_file,
    service_environment,
    settings_env,
)

from captionbot.settings import Settings

COMPOSE = load_compose("docker-compose.yml")
WORKERS = load_compose("docker-compose.workers.yml")
SERVICES = COMPOSE["services"]
OURS = {name: s for name, s in SERVICES.items() if "build" in s}  # the services built from deploy/Dockerfile.*
WORKER_SERVICES = ("worker", "worker-gpu")
EXAMPLE_SECRETS = {"DISCORD_TOKEN": "example-token", "REDIS_PASSWORD": "0123456789abcdef"}


def dotenv(**changes: str) -> dict[str, str]:
    """deploy/.env as an operator makes it from the example: the secrets filled in, plus ``changes``."""
    return {**read_env_file(DEPLOY / ".env.example").active, **EXAMPLE_SECRETS, **changes}


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings a process started with exactly ``env`` would read."""
    for name in settings_env():
        monkeypatch.delenv(name, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return Settings()


def test_every_service_has_an_image_or_build_and_a_healthcheck() -> None:
    for name, service in {**SERVICES, **WORKERS["services"]}.items():
        assert "image" in service or "build" in service, f"service {name} has neither image nor build"
        assert service.get("healthcheck", {}).get("test"), f"service {name} has no healthcheck"


def test_every_service_that_needs_configuration_declares_its_environment() -> None:
    # Prometheus is configured by its mounted prometheus.yml and needs no environment; all others do.
    for name, service in SERVICES.items():
        if name != "prometheus":
            assert service.get("environment"), f"service {name} declares no environment"


def test_bot_and_workers_get_every_setting_and_only_the_bot_gets_the_token() -> None:
    all_settings = set(settings_env())
    for compose in (COMPOSE, WORKERS):
        for name, service in compose["services"].items():
            if "build" not in service:
                continue
            keys = set(service["environment"])
            expected = all_settings if name == "bot" else all_settings - {"DISCORD_TOKEN"}
            assert expected - keys == set(), f"{name} does not pass {sorted(expected - keys)}"
            assert keys - all_settings == set(), f"{name} sets what captionbot never reads: {keys - all_settings}"
            if name != "bot":
                assert "DISCORD_TOKEN" not in keys, f"{name} must not see the bot token"


def test_compose_never_unsets_what_an_image_sets() -> None:
    """A bare key left unset removes the image's ENV of that name, e.g. the worker's baked-in bundle path."""
    for compose in (COMPOSE, WORKERS):
        for name, service in compose["services"].items():
            if "build" not in service:
                continue
            image_env = read_dockerfile(service["build"]["dockerfile"].removeprefix("deploy/"))[-1].env()
            clash = passthrough_keys(service) & set(image_env)
            assert clash == set(), f"{name}: {sorted(clash)} would unset the image's ENV when .env leaves them out"


def test_the_example_env_gives_each_process_a_working_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    env = dotenv()
    bot = settings_from(service_environment(SERVICES["bot"], env), monkeypatch)
    assert bot.discord_token is not None and bot.discord_token.get_secret_value() == "example-token"
    assert bot.redis_url is not None
    assert bot.redis_url.get_secret_value() == "redis://:0123456789abcdef@redis:6379/0"
    assert bot.metrics_port == 9100
    worker = settings_from(service_environment(SERVICES["worker"], env), monkeypatch)
    assert (worker.provider, str(worker.bundle), worker.metrics_port) == ("cpu", "/app/models/default", 9100)
    assert worker.redis_url == bot.redis_url and (worker.stream, worker.group) == (bot.stream, bot.group)
    gpu = settings_from(service_environment(SERVICES["worker-gpu"], dotenv(CAPTIONBOT_PROVIDER="cpu")), monkeypatch)
    assert gpu.provider == "cuda", "the GPU worker must use CUDA whatever .env says"


def test_settings_in_dotenv_reach_the_containers(monkeypatch: pytest.MonkeyPatch) -> None:
    env = dotenv(CAPTIONBOT_BATCH_SIZE="64", CAPTIONBOT_REDIS_URL="rediss://:pw@managed.example:6380/0")
    worker = settings_from(service_environment(SERVICES["worker"], env), monkeypatch)
    assert worker.batch_size == 64
    assert worker.redis_url is not None and worker.redis_url.get_secret_value().startswith("rediss://:pw@managed")


def test_missing_secrets_stop_compose_with_a_clear_message() -> None:
    for secret, service in (("REDIS_PASSWORD", "redis"), ("DISCORD_TOKEN", "bot")):
        with pytest.raises(MissingVariable, match=secret):
            service_environment(SERVICES[service], dotenv(**{secret: ""}))
    with pytest.raises(MissingVariable, match="CAPTIONBOT_REDIS_URL"):
        service_environment(WORKERS["services"]["worker"], dotenv())


def test_workers_can_be_scaled() -> None:
    for compose in (COMPOSE, WORKERS):
        for name in WORKER_SERVICES:
            service = compose["services"][name]
            assert "container_name" not in service, f"{name}: a fixed container_name breaks --scale"
            assert not service.get("ports"), f"{name}: a published host port breaks --scale"


def test_gpu_workers_reserve_nvidia_gpus_in_the_gpu_profile() -> None:
    for compose in (COMPOSE, WORKERS):
        gpu = compose["services"]["worker-gpu"]
        assert gpu["profiles"] == ["gpu"]
        devices = gpu["deploy"]["resources"]["reservations"]["devices"]
        assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
        assert gpu["build"]["dockerfile"] == "deploy/Dockerfile.worker-gpu"
        assert "profiles" not in compose["services"]["worker"], "CPU workers run by default"


def test_redis_requires_a_password_and_persists_with_aof() -> None:
    redis = SERVICES["redis"]
    script = " ".join(redis["command"])
    assert "requirepass" in script and "$$REDIS_PASSWORD" in script
    assert "--appendonly yes" in script and "--dir /data" in script
    assert "--maxmemory-policy noeviction" in script, "Redis must never evict a job"
    assert any(v.split(":")[1] == "/data" for v in redis["volumes"]), "AOF must live on a volume"
    assert COMPOSE["volumes"] is not None and "redis-data" in COMPOSE["volumes"]
    assert "REDISCLI_AUTH" in " ".join(redis["healthcheck"]["test"])
    assert not redis.get("ports"), "Redis must not be published on the host by default"
    for name in OURS:
        assert SERVICES[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_healthchecks_ask_the_metrics_port_like_the_images_do() -> None:
    for compose in (COMPOSE, WORKERS):
        for name, service in compose["services"].items():
            if "build" not in service:
                continue
            final = read_dockerfile(service["build"]["dockerfile"].removeprefix("deploy/"))[-1]
            assert service["healthcheck"]["test"] == ["CMD", *exec_form(final.last("HEALTHCHECK") or "")], name
            assert service["environment"]["CAPTIONBOT_METRICS_PORT"] == final.env()["CAPTIONBOT_METRICS_PORT"]


def test_prometheus_scrapes_every_bot_and_worker() -> None:
    config = load_yaml(DEPLOY / "prometheus.yml")
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in SERVICES["prometheus"]["volumes"]
    scraped: dict[str, int] = {}
    for job in config["scrape_configs"]:
        for sd in job.get("dns_sd_configs", []):
            for host in sd["names"]:
                scraped[host] = sd["port"]
    for name, service in OURS.items():
        assert name in scraped, f"Prometheus does not scrape {name}"
        assert scraped[name] == int(service["environment"]["CAPTIONBOT_METRICS_PORT"]), name
    assert set(scraped) <= set(SERVICES), f"Prometheus scrapes unknown services {set(scraped) - set(SERVICES)}"


def test_extra_worker_hosts_run_the_same_workers() -> None:
    for name in WORKER_SERVICES:
        main, extra = SERVICES[name], WORKERS["services"][name]
        for key in ("build", "image", "command", "healthcheck", "stop_grace_period", "read_only"):
            assert main[key] == extra[key], f"{name}.{key} differs between the two compose files"
        assert set(main["environment"]) == set(extra["environment"]), name
