"""One configuration object, read from a TOML file and the environment, passed down explicitly.

Sections: ``[kafka]``, ``[topics]``, ``[worker]``, ``[validation]``, ``[store]``, ``[policy]``,
``[aitext]`` (how workers serve the AI-text detector) and ``[coordinator]`` (``chorus coordinator`` /
``chorus graph-stage``: :class:`CoordinatorSettings`); ``[review]`` (how the console measures its queues)
and ``[console]`` (who the one local-mode analyst is) are the review console's.
Precedence, lowest to highest: the defaults below, the TOML file (``--config`` or ``CHORUS_CONFIG``),
environment variables ``CHORUS_<SECTION>__<FIELD>`` (e.g. ``CHORUS_KAFKA__BOOTSTRAP_SERVERS``), and
finally command-line flags, which the CLI applies with :func:`dataclasses.replace`. Nothing reads
the environment after :meth:`ChorusConfig.load`, so a worker's behaviour is fully described by the
object it was given.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from detectors.coordination.coaction import KNOWN_NETWORK_TYPES, CoActionConfig
from detectors.coordination.graph import (
    DEFAULT_MIN_CAMPAIGN_SIZE,
    DEFAULT_MIN_CO_ACTIONS,
    DEFAULT_MIN_STRENGTH,
    CampaignConfig,
)
from detectors.coordination.incremental import (
    DEFAULT_HORIZON_S,
    DEFAULT_MAX_POSTS_PER_OBJECT,
    INCREMENTAL_NETWORK_TYPES,
    STREAM_NETWORK_TYPES,
    IncrementalConfig,
)

ENV_PREFIX = "CHORUS_"
#: Older, documented variables for some fields, read here like every other variable (section, field);
#: ``CHORUS_<SECTION>__<FIELD>`` wins when both are set.
ENV_ALIASES = {
    "CHORUS_AITEXT_QUANTIZE": ("aitext", "quantize_default"),
    "CHORUS_CACHE": ("aitext", "cache_dir"),
    "CHORUS_TORCH_THREADS": ("aitext", "torch_threads"),
    "CHORUS_ORT_THREADS": ("aitext", "ort_threads"),
    "CHORUS_SLA_HOURS": ("review", "sla_hours"),
    "CHORUS_REVIEWER": ("console", "reviewer"),
    "CHORUS_REVIEWER_ROLE": ("console", "reviewer_role"),
}
#: Posts re-keyed by shared object (``chorus rekey``): what ``input = "actions"`` reads by default.
BY_OBJECT_TOPIC = "chorus.posts.by-object"
#: Where coordination workers (``chorus coordinator --input actions --emit-edges``) send their
#: per-object match rows, and what ``chorus graph-stage`` reads.
EDGES_TOPIC = "chorus.coordination.edges"


#: What a coordinator can read (``coordinator.input``).
COORDINATOR_INPUTS = ("posts", "embedded", "actions", "edges")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type; the message names it."""


@dataclass(frozen=True)
class KafkaConfig:
    """How to reach the cluster. Secrets never appear in ``repr`` or logs."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str | None = None  # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    client_id_prefix: str = "chorus"
    #: Idempotent producer (KIP-679); turn off only for brokers that lack InitProducerId.
    enable_idempotence: bool = True
    request_timeout_ms: int = 30_000

    def client_settings(self) -> dict[str, Any]:
        """Keyword arguments shared by every kafka-python client.

        This is where a password is handed to kafka-python, so it is also where its loggers are
        kept above DEBUG: kafka-python 3.0 logs its whole configuration and the SASL frames at
        DEBUG, password included.
        """
        if self.sasl_password:
            _keep_kafka_debug_logs_off()
        settings: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.bootstrap_servers.split(",") if s.strip()],
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.sasl_mechanism:
            settings["sasl_mechanism"] = self.sasl_mechanism
            settings["sasl_plain_username"] = self.sasl_username
            settings["sasl_plain_password"] = self.sasl_password
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(self, name):
                settings[name] = getattr(self, name)
        return settings


def _keep_kafka_debug_logs_off() -> None:
    kafka_logger = logging.getLogger("kafka")
    if kafka_logger.getEffectiveLevel() < logging.INFO:
        kafka_logger.setLevel(logging.INFO)
        logging.getLogger("chorus").warning(
            "kafka-python's DEBUG logs would show the SASL password: they stay off while one is configured"
        )


@dataclass(frozen=True)
class TopicsConfig:
    posts: str = "chorus.posts"
    flags: str = "chorus.flags"
    dead_letter: str = "chorus.posts.dead-letter"
    #: Valid posts with their sentence embeddings, republished by workers with
    #: ``worker.publish_embeddings`` (what a coordinator with ``input = "embedded"`` reads).
    embedded: str = "chorus.posts.embedded"
    #: Partitions used when Chorus creates the topics itself (demo, ``chorus topics``).
    partitions: int = 4


@dataclass(frozen=True)
class WorkerConfig:
    group_id: str = "chorus-workers"
    #: A micro-batch closes at this many posts or this many ms after its first post, whichever first.
    batch_max_posts: int = 500
    batch_max_latency_ms: int = 250
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    #: Names from ``stream.pipeline.detectors``; every post goes through each of them.
    detectors: tuple[str, ...] = ("llm_boilerplate",)
    #: Republish every valid post, with the sentence embedding a detector computed for it (the
    #: ``aitext`` detector's MiniLM vector), to ``topics.embedded``, in the same checkpoint as the
    #: flags: the coordination stage's paraphrase network reads them there (``coordinator.input =
    #: "embedded"``) instead of running the encoder a second time.
    publish_embeddings: bool = False
    #: How often a worker logs its throughput and lag line.
    log_interval_s: float = 10.0
    #: Back-off bounds when the broker or the store is unavailable (doubles up to the max).
    retry_backoff_initial_s: float = 0.5
    retry_backoff_max_s: float = 30.0


@dataclass(frozen=True)
class ValidationConfig:
    #: Posts longer than this are quarantined: no platform's post is 32 kB, so it is junk or abuse.
    max_text_bytes: int = 32_768
    #: Whole Kafka message limit, checked before parsing so a huge value costs nothing.
    max_message_bytes: int = 1_048_576
    #: Clocks drift; a post further in the future than this is a bug or a forgery.
    future_skew_s: float = 300.0


@dataclass(frozen=True)
class StoreConfig:
    #: SQLAlchemy URL; a bare path means SQLite. PostgreSQL when workers run on several hosts.
    url: str = "sqlite:///chorus-data/chorus.db"


@dataclass(frozen=True)
class PolicyConfig:
    """Automated actions from policies (see ``stream/policy`` and ``chorus policy --help``)."""

    #: Evaluate policies in the worker. Off: no policy stage at all (no store reads either).
    enabled: bool = True
    #: Pin the active / shadow policy to a file instead of the store's slots (which
    #: ``chorus policy activate|shadow|rollback`` switch, audited). Empty: use the slots.
    active_file: str | None = None
    shadow_file: str | None = None
    #: Where actions go (key = post id); the platform consumes it.
    actions_topic: str = "chorus.actions"
    #: How often a worker checks the store for a newly activated or shadowed policy.
    reload_interval_s: float = 10.0
    #: Circuit-breaker defaults for every rule (a policy file may override them per policy or rule):
    #: a rule matching more than ``breaker_max_share`` of the last ``breaker_window_posts`` posts
    #: (judged from ``breaker_min_posts`` on) stops acting until a fresh window is at or below
    #: ``breaker_recover_share``.
    breaker_window_posts: int = 2_000
    breaker_max_share: float = 0.2
    breaker_min_posts: int = 200
    breaker_recover_share: float = 0.1


@dataclass(frozen=True)
class ReviewConfig:
    """The review console (``chorus console``): how it measures its queues."""

    #: Hours a case may wait, from when it was flagged, before it counts as overdue (the queue's SLA
    #: column and the overview's "Past the SLA"); ``CHORUS_REVIEW__SLA_HOURS``.
    sla_hours: float = 24.0

    def __post_init__(self) -> None:
        if not self.sla_hours > 0:
            raise ConfigError(f"review.sla_hours = {self.sla_hours!r}: use a number of hours above 0")

    @property
    def sla(self) -> timedelta:
        """``sla_hours`` as the duration the queue reads take."""
        return timedelta(hours=self.sla_hours)


#: Reviewer roles, least to most privileged: :data:`stream.store.reviewers.ROLES`, repeated so that
#: reading a configuration imports nothing else of Chorus (a test keeps the two equal).
REVIEWER_ROLES = ("viewer", "reviewer", "lead")


@dataclass(frozen=True)
class ConsoleConfig:
    """The review console's **local mode** (no identity provider in the Streamlit secrets): who acts.

    One analyst on their own machine, the demo: the console signs nobody in and every action is
    audited under ``reviewer`` with ``reviewer_role``. Whoever can start the console is trusted, so
    local mode only ever listens on this machine (:func:`is_loopback`); several analysts sign in with
    OpenID Connect instead (``dashboards/README.md``), and then these settings are not used.
    ``CHORUS_REVIEWER`` / ``CHORUS_REVIEWER_ROLE`` set them too.
    """

    #: The name in the audit log; unset: the OS user name followed by " (local)".
    reviewer: str | None = None
    #: ``viewer``, ``reviewer`` (the default: claims and decides, but reverses only its own work) or ``lead``.
    reviewer_role: str = "reviewer"

    def __post_init__(self) -> None:
        object.__setattr__(self, "reviewer_role", self.reviewer_role.strip().lower())
        if self.reviewer_role not in REVIEWER_ROLES:
            raise ConfigError(
                f"console.reviewer_role = {self.reviewer_role!r} (CHORUS_REVIEWER_ROLE) is not a role: "
                f"use one of {', '.join(REVIEWER_ROLES)}"
            )
        if self.reviewer is not None and not self.reviewer.strip():
            object.__setattr__(self, "reviewer", None)


def is_loopback(address: str | None) -> bool:
    """True for an address only this machine can reach: ``127.0.0.0/8``, ``::1`` or ``localhost``.

    Empty or unset is False: a server without an address listens on every interface.
    """
    host = (address or "").strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_mode_refusal(address: str | None) -> str:
    """Why the console will not serve local mode on ``address``, and the two ways out."""
    where = f"on {address}" if address else "on every network interface"
    return (
        f"The review console would listen {where} without an identity provider. In local mode nobody "
        "signs in: whoever can reach the port would act as the configured local reviewer. Either bind it to "
        "this machine only (`chorus console` does by default, or `--address 127.0.0.1`; `streamlit run` needs "
        "`--server.address 127.0.0.1`) and reach it from elsewhere through an SSH tunnel, or configure OpenID "
        "Connect sign-in: an [auth] section (redirect_uri, cookie_secret, client_id, client_secret, "
        "server_metadata_url) in .streamlit/secrets.toml where the console starts, with `streamlit[auth]` "
        "installed; see dashboards/README.md."
    )


#: ``aitext.backend`` values: ``detectors.aitext.features.BACKENDS``, repeated so that reading a
#: configuration does not import torch (a test keeps the two equal).
AITEXT_BACKENDS = ("torch", "onnx")


@dataclass(frozen=True)
class AiTextConfig:
    """How a worker serves the ``aitext`` detector (when ``worker.detectors`` lists it).

    The same settings as :class:`detectors.aitext.detector.AiTextDetector`'s arguments, so a
    deployment picks its runtime in the configuration instead of in code.
    """

    #: ``torch`` (transformers; CUDA bf16 on a GPU) or ``onnx`` (ONNX Runtime: the CUDA provider on a
    #: GPU, the CPU provider otherwise; the exports are built into ``<cache_dir>/onnx`` on first use).
    backend: str = "torch"
    #: ``auto`` (the GPU when torch sees one, else the CPU), ``cpu``, or ``cuda`` / ``cuda:N``.
    device: str = "auto"
    #: With ``backend = "onnx"`` on a CPU: serve SmolLM2 in int8, scored by the head trained on int8
    #: statistics. Off here defers to ``quantize_default``.
    quantize: bool = False
    #: A head JSON to serve instead of the committed one (e.g. one retrained by ``chorus train-aitext``).
    artifact: str | None = None
    #: Also run SmolLM2 on the posts flagged at the default threshold, so their evidence lists the tokens
    #: the language model found most surprising (the scores do not change). Off by default: it halves a
    #: worker's rate (measured with the previous head: 114 -> 54 posts/s) and the words that drove the call are in the
    #: evidence anyway (``top_words``, from the head's own character n-grams, at no model cost).
    evidence_tokens: bool = False
    #: Score with the SmolLM2 second stage (``detectors/aitext/artifacts/aitext_lm_stage.json``, refit with
    #: ``chorus train-aitext-stage`` for the current head) over the
    #: modern head. Off by default: measured, it helps older and open models but not GPT-4o, Claude 3 or
    #: Gemini 1.5, and it reads ~80% of posts (~10 posts/s on 2 cores); see docs/eval/aitext-modern/stage.md.
    lm_stage: bool = False
    #: The stage file ``lm_stage`` serves instead of the committed one (it must be fitted over the served head).
    lm_stage_artifact: str | None = None
    #: The process-wide int8 switch (``$CHORUS_AITEXT_QUANTIZE=1``): int8 whenever the onnx backend runs on
    #: a CPU and ``quantize`` is off, ``chorus score --backend onnx`` included; torch ignores it. Off by
    #: default (:data:`detectors.aitext.onnx_backend.DEFAULT_QUANTIZE`).
    quantize_default: bool = False
    #: Root of Chorus's model cache (``$CHORUS_CACHE``); the ONNX exports live in its ``onnx`` folder.
    #: Unset: ``~/.cache/chorus``.
    cache_dir: str | None = None
    #: CPU threads per model call for torch and for ONNX Runtime (``$CHORUS_TORCH_THREADS``,
    #: ``$CHORUS_ORT_THREADS``); 0: :data:`detectors.aitext.models.DEFAULT_CPU_THREADS`. A command's
    #: ``--threads`` flag wins over ``torch_threads``.
    torch_threads: int = 0
    ort_threads: int = 0

    def __post_init__(self) -> None:
        if self.backend not in AITEXT_BACKENDS:
            raise ConfigError(f"aitext.backend = {self.backend!r}: use one of {', '.join(AITEXT_BACKENDS)}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"aitext.device = {self.device!r}: use auto, cpu, cuda or cuda:N")
        if self.quantize and self.backend != "onnx":
            raise ConfigError(
                "aitext.quantize serves SmolLM2 in int8 through ONNX Runtime: set aitext.backend = 'onnx'"
            )
        if self.torch_threads < 0 or self.ort_threads < 0:
            raise ConfigError("aitext.torch_threads and aitext.ort_threads: use 0 (the default) or more")


@dataclass(frozen=True)
class CoordinatorSettings:
    """The ``[coordinator]`` section: every knob of ``chorus coordinator`` and ``chorus graph-stage``.

    Flat and simply typed, like every section (``CHORUS_COORDINATOR__HORIZON_S=3600`` works).
    ``topic`` unset means the topic of the ``input``: the posts topic, the embedded-posts topic
    (``topics.embedded``, where workers with ``worker.publish_embeddings`` republish each post with
    its sentence embedding: needed by ``co_paraphrase``), ``chorus.posts.by-object`` or
    ``edges_topic``. ``windows`` are ``TYPE=SECONDS`` overrides of the co-action windows.
    ``max_posts_per_object`` 0 means no cap. ``graph_interval_s`` is the most time between graph
    runs while posts keep coming (the run happens at once when the stage is caught up and idle);
    ``graph_in_background`` runs it in a thread over a snapshot of the horizon while consumption
    goes on (off: the consumer loop waits for it). ``id_memory_s`` is how long a campaign that went
    quiet keeps its id for a comeback (in event time).

    Scale-out (``docs/coordination.md``): ``input = "actions"`` reads ``chorus.posts.by-object``
    (``chorus rekey``); with ``emit_edges`` such a coordination worker runs no graph stage and
    sends its per-object match rows and post activity to ``edges_topic``, which ONE ``chorus
    graph-stage`` (``input = "edges"``) reads.
    """

    group_id: str = "chorus-coordinator"
    topic: str | None = None
    #: ``posts`` (the posts topic), ``embedded`` (the same posts with their embeddings, for
    #: co_paraphrase), ``actions`` (``chorus.posts.by-object``, written by ``chorus rekey``) or
    #: ``edges`` (the coordination workers' match rows: the central graph stage).
    input: str = "posts"
    emit_edges: bool = False
    edges_topic: str = EDGES_TOPIC
    networks: tuple[str, ...] = STREAM_NETWORK_TYPES
    windows: tuple[str, ...] = ()
    horizon_s: float = DEFAULT_HORIZON_S
    max_posts_per_object: int = DEFAULT_MAX_POSTS_PER_OBJECT
    batch_max_posts: int = 20_000
    batch_max_latency_ms: int = 500
    graph_interval_s: float = 30.0
    graph_in_background: bool = True
    min_co_actions: int = DEFAULT_MIN_CO_ACTIONS
    min_strength: float = DEFAULT_MIN_STRENGTH
    min_size: int = DEFAULT_MIN_CAMPAIGN_SIZE
    resolution: float = 1.0
    seed: int = 0
    evidence_per_edge: int = 5
    summary_edges: int = 50
    #: Detector whose per-post probability (``detector_results``) gives campaigns their machine share;
    #: unset: none (the share stays null).
    machine_detector: str | None = None
    id_memory_s: float = 7 * 86_400.0
    log_interval_s: float = 10.0

    def __post_init__(self) -> None:
        if self.input not in COORDINATOR_INPUTS:
            raise ConfigError(
                f"coordinator.input = {self.input!r}: use 'posts' (the posts topic), 'embedded' (the workers' "
                "posts with embeddings), 'actions' (after chorus rekey) or 'edges' (the coordination workers' "
                "edges topic: the graph stage)"
            )
        if "co_paraphrase" in self.networks and self.input != "embedded":
            raise ConfigError(
                f"coordinator.networks: co_paraphrase needs each post's sentence embedding, which input = "
                f"{self.input!r} does not carry: set coordinator.input = 'embedded' (one coordinator reading "
                "topics.embedded) and worker.publish_embeddings = true with the aitext detector; "
                "chorus rekey does not route it"
            )
        if self.emit_edges and self.input == "edges":
            raise ConfigError("coordinator.emit_edges: a graph stage (input = 'edges') cannot emit edges itself")
        unsupported = [n for n in self.networks if n not in INCREMENTAL_NETWORK_TYPES]
        if unsupported:
            raise ConfigError(
                f"coordinator.networks: {unsupported} are not computed in the stream; use some of "
                f"{', '.join(INCREMENTAL_NETWORK_TYPES)}"
            )
        self.windows_s()

    def windows_s(self) -> dict[str, float]:
        """``windows`` parsed; a malformed entry is an error that names it."""
        parsed: dict[str, float] = {}
        for item in self.windows:
            network, sep, seconds = item.partition("=")
            try:
                value = float(seconds)
            except ValueError:
                value = float("nan")
            if not sep or network.strip() not in KNOWN_NETWORK_TYPES or not value >= 0:
                raise ConfigError(
                    f"coordinator.windows: {item!r}: expected TYPE=SECONDS (seconds >= 0) with TYPE one of "
                    f"{', '.join(KNOWN_NETWORK_TYPES)}"
                )
            parsed[network.strip()] = value
        return parsed

    def input_topic(self, topics: TopicsConfig) -> str:
        """The topic this stage reads."""
        if self.topic:
            return self.topic
        return {"posts": topics.posts, "embedded": topics.embedded, "actions": BY_OBJECT_TOPIC,
                "edges": self.edges_topic}[self.input]  # fmt: skip

    def incremental_config(self) -> IncrementalConfig:
        """The :class:`~detectors.coordination.incremental.IncrementalConfig` these settings describe."""
        coaction = CoActionConfig(windows_s=self.windows_s(), evidence_per_edge=self.evidence_per_edge)
        return IncrementalConfig(
            coaction=coaction,
            networks=tuple(self.networks),
            horizon_s=self.horizon_s,
            max_posts_per_object=self.max_posts_per_object or None,
        )

    def campaign_config(self) -> CampaignConfig:
        """The graph stage's :class:`~detectors.coordination.graph.CampaignConfig`."""
        return CampaignConfig(
            coaction=self.incremental_config().coaction,
            networks=tuple(self.networks),
            min_co_actions=self.min_co_actions,
            min_strength=self.min_strength,
            resolution=self.resolution,
            seed=self.seed,
            min_size=self.min_size,
        )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str = "coordinator settings") -> CoordinatorSettings:
        """From a parsed TOML table, as the main configuration reads its ``[coordinator]`` section."""
        return _build_section(cls, "coordinator", values, source)


@dataclass(frozen=True)
class ChorusConfig:
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    aitext: AiTextConfig = field(default_factory=AiTextConfig)
    coordinator: CoordinatorSettings = field(default_factory=CoordinatorSettings)
    review: ReviewConfig = field(default_factory=ReviewConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)

    @classmethod
    def load(cls, path: str | Path | None = None, env: Mapping[str, str] | None = None) -> ChorusConfig:
        """Defaults, then the TOML file, then ``CHORUS_SECTION__FIELD`` environment variables."""
        env = os.environ if env is None else env
        path = path or env.get(f"{ENV_PREFIX}CONFIG")
        data: dict[str, dict[str, Any]] = {}
        if path:
            try:
                with open(path, "rb") as handle:
                    data = tomllib.load(handle)
            except FileNotFoundError:
                raise ConfigError(f"configuration file {path} does not exist") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"configuration file {path} is not valid TOML: {exc}") from None
        for key, (section, name) in ENV_ALIASES.items():
            if env.get(key, "").strip():  # "on"/"off": what CHORUS_AITEXT_QUANTIZE also accepted
                value = env[key].strip()
                data.setdefault(section, {})[name] = {"on": "true", "off": "false"}.get(value.lower(), value)
        for key, value in env.items():
            if not key.startswith(ENV_PREFIX) or "__" not in key:
                continue
            section, _, name = key[len(ENV_PREFIX) :].lower().partition("__")
            data.setdefault(section, {})[name] = value
        return cls.from_dict(data, source=str(path) if path else "environment")

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]], source: str = "configuration") -> ChorusConfig:
        sections: dict[str, Any] = {}
        known = {f.name: f for f in dataclasses.fields(cls)}
        for section, values in data.items():
            if section not in known:
                raise ConfigError(f"{source}: unknown section [{section}]; known: {', '.join(known)}")
            section_type = known[section].default_factory  # type: ignore[misc]
            sections[section] = _build_section(section_type, section, values, source)
        return cls(**sections)

    def with_overrides(self, **sections: Mapping[str, Any]) -> ChorusConfig:
        """A copy with some fields replaced, e.g. ``with_overrides(kafka={"bootstrap_servers": x})``."""
        changed = {
            name: dataclasses.replace(getattr(self, name), **dict(values))
            for name, values in sections.items()
            if values
        }
        return dataclasses.replace(self, **changed)

    def to_toml(self) -> str:
        """Serialise (secrets included) for handing to worker subprocesses via a private file."""
        lines: list[str] = []
        for section in dataclasses.fields(self):
            lines.append(f"[{section.name}]")
            for item in dataclasses.fields(getattr(self, section.name)):
                value = getattr(getattr(self, section.name), item.name)
                if value is not None:
                    lines.append(f"{item.name} = {_toml_value(value)}")
            lines.append("")
        return "\n".join(lines)


def _build_section(section_type: type, section: str, values: Mapping[str, Any], source: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(section_type)}
    kwargs: dict[str, Any] = {}
    for name, raw in values.items():
        if name not in fields:
            raise ConfigError(
                f"{source}: unknown setting {section}.{name}; known: {', '.join(sorted(fields))}"
            )
        default = getattr(section_type(), name)
        kwargs[name] = _coerce(raw, default, f"{section}.{name}", source)
    try:
        return section_type(**kwargs)
    except ValueError as exc:  # a section that checks its values together (e.g. [coordinator])
        raise ConfigError(f"{source}: {exc}") from None


def _coerce(raw: Any, default: Any, name: str, source: str) -> Any:
    """Environment values arrive as strings; convert them to the type of the default."""
    try:
        if isinstance(default, bool):
            if isinstance(raw, str):
                if raw.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                    raise ValueError(raw)
                return raw.lower() in {"1", "true", "yes"}
            return bool(raw)
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
        if isinstance(default, tuple):
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(str(item).strip() for item in items if str(item).strip())
        return None if raw == "" else str(raw)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{source}: {name} = {raw!r} is not a valid {type(default).__name__}"
        ) from None


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
