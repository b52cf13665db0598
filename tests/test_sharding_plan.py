"""Shard settings -> this process's shards (captionbot.sharding.plan)."""

from __future__ import annotations

import pytest

from captionbot.settings import load_settings
from captionbot.sharding import ShardPlan, ShardSettingsError, plan


def test_no_shard_settings_means_one_unsharded_process() -> None:
    assert plan(load_settings(shard_count=None)) is None


@pytest.mark.parametrize(("given", "count", "ids"), [
    ({"shard_count": 3}, 3, (0, 1, 2)),
    ({"shard_count": 4, "shard_ids": "3, 1"}, 4, (1, 3)),
    ({"shard_count": 8, "shard_ids": "0-2,6"}, 8, (0, 1, 2, 6)),
    ({"shard_count": 5, "shards_per_process": 2, "process_index": "captionbot-bot-0"}, 5, (0, 1)),
    ({"shard_count": 5, "shards_per_process": 2, "process_index": "captionbot-bot-2"}, 5, (4,)),
    ({"shard_count": 2, "shards_per_process": 1, "process_index": "1"}, 2, (1,)),
])
def test_each_process_takes_its_shards(given: dict[str, object], count: int, ids: tuple[int, ...]) -> None:
    assert plan(load_settings(**given)) == ShardPlan(count, ids)


def test_pods_of_a_statefulset_cover_every_shard_once() -> None:
    count, per = 10, 3
    covered: list[int] = []
    for pod in range(4):  # ceil(10 / 3) pods
        p = plan(load_settings(shard_count=count, shards_per_process=per, process_index=f"captionbot-bot-{pod}"))
        assert p is not None
        covered.extend(p.ids)
    assert covered == list(range(count))


def test_only_the_process_with_shard_0_syncs_commands() -> None:
    assert ShardPlan(4, (0, 1)).syncs_commands and not ShardPlan(4, (2, 3)).syncs_commands


@pytest.mark.parametrize(("given", "says"), [
    ({"shard_ids": "0"}, "need(s) CAPTIONBOT_SHARD_COUNT"),
    ({"shard_count": 2, "shard_ids": "0,0"}, "named twice"),
    ({"shard_count": 2, "shard_ids": "1-0"}, "backwards"),
    ({"shard_count": 2, "shard_ids": "zero"}, "like 0,1 or 0-3"),
    ({"shard_count": 2, "shard_ids": "0", "shards_per_process": 1, "process_index": "0"}, "not both"),
    ({"shard_count": 2, "shards_per_process": 1}, "go together"),
    ({"shard_count": 2, "shards_per_process": 1, "process_index": "bot"}, "ending in -N"),
    ({"shard_count": 3, "shards_per_process": 2, "process_index": "captionbot-bot-2"}, "run 2 process(es)"),
])
def test_settings_that_do_not_fit_are_refused_with_what_to_set(given: dict[str, object], says: str) -> None:
    with pytest.raises(ShardSettingsError, match=says.replace("(", r"\(").replace(")", r"\)")):
        plan(load_settings(**given))
