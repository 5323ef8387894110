"""Create and check Chorus's topics with explicit partitions, so no cluster needs auto-creation."""

from __future__ import annotations

import contextlib
import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from stream.config import ChorusConfig
from stream.kafka.clients import make_admin


def topic_plan(config: ChorusConfig, partitions: int | None = None) -> dict[str, int]:
    """Topic name -> partitions. Dead letters are rare: one partition keeps them in order."""
    n = partitions or config.topics.partitions
    plan = {config.topics.posts: n, config.topics.flags: n, config.topics.dead_letter: 1}
    if config.policy.enabled:
        plan[config.policy.actions_topic] = n
    if config.worker.publish_embeddings:
        # Keyed by account as the posts are, so a coordinator reads them in the same order.
        plan[config.topics.embedded] = n
    return plan


def ensure_topics(
    config: ChorusConfig,
    plan: dict[str, int] | None = None,
    *,
    replication_factor: int = 1,
    timeout_s: float = 60.0,
) -> dict[str, int]:
    """Create missing topics and wait until each has a leader for every partition.

    Returns each topic's partition count as the cluster reports it. Waiting matters: a producer
    that races a fresh topic gets UNKNOWN_TOPIC_OR_PARTITION.
    """
    plan = plan or topic_plan(config)
    admin = make_admin(config)
    try:
        return create_topics_with(admin, plan, replication_factor=replication_factor, timeout_s=timeout_s)
    finally:
        admin.close()


def create_topics_with(
    admin: KafkaAdminClient, plan: dict[str, int], *, replication_factor: int = 1, timeout_s: float = 60.0
) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    # One request per topic: a batch request fails as a whole on the first TOPIC_ALREADY_EXISTS,
    # and another worker or host may create a topic first.
    for name, partitions in plan.items():
        with contextlib.suppress(TopicAlreadyExistsError):
            admin.create_topics(
                [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor)],
                timeout_ms=int(timeout_s * 1000),
            )
    while True:
        seen = partition_counts(admin, list(plan))
        if all(name in seen for name in plan):
            return seen
        if time.monotonic() >= deadline:
            missing = [name for name in plan if name not in seen]
            raise TimeoutError(f"topics {', '.join(missing)} have no leader after {timeout_s:.0f} s")
        time.sleep(0.2)


def partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partitions per topic whose every partition has a leader; unknown topics are left out."""
    counts: dict[str, int] = {}
    for topic in admin.describe_topics(names):
        if topic.get("error_code", 0) != 0:
            continue
        partitions = topic.get("partitions") or []
        if partitions and all(p.get("error_code", 0) == 0 and p.get("leader_id", -1) >= 0 for p in partitions):
            counts[topic["name"]] = len(partitions)
    return counts


def committed_offsets(config: ChorusConfig, group_id: str, topic: str) -> dict[int, int]:
    """Partition -> offset the group has committed on ``topic`` (absent: nothing committed yet)."""
    admin = make_admin(config, client_id="chorus-progress")
    try:
        offsets = admin.list_group_offsets({group_id: None}).get(group_id, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset >= 0}
