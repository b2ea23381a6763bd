"""The job message: one request, as the client sends it and a worker runs it.

On the wire (Celery, JSON only) a job is a plain dict; :meth:`Job.to_wire` and :meth:`Job.from_wire` are
the only places that know its keys. Every default lives here, once: a field missing from a message (one
queued by an older client) reads as its default, and the worker never re-applies its own.

    {"v": 1, "kind": "generate" | "speech", "model": str,
     "pool": {"pool": str, "keys": [key ids], "rate_window": seconds},
     "policy": {"processor_id", "max_workers", "worker_cooldown", "api_call_interval", "spacing_scope",
                "retries", "max_wait", "return_response", "strip", "flex_fallback_after", "shed_backoff"},
     "request": prompt_data in wire form (generate) | "speech": {"prompt", "voice" | "speakers"} (speech)
       | "image": {"prompt", "aspect_ratio", "image_size"[, "input_ref", "input_mime"]} (image),
     "metadata": {...}, "deadline": epoch seconds | None, "tier": service tier,
     "state": {"first_seen", "errors", "rate_limited", "shed", "flex_since", "tier_now", "fallback"}}
     # "state" is written by the worker when it re-queues a job

Secrets never appear: the pool travels as key ids.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from gemini_tasks.gemini.tiers import check_fallback, check_tier

#: The Celery task each (kind, queue) is sent to. The names are part of the wire contract: messages already
#: queued must still find their task, so they never change.
TASK_NAMES: dict[tuple[str, str], str] = {
    ("generate", "batch"): "gemini_tasks.generate_batch",
    ("generate", "interactive"): "gemini_tasks.generate_interactive",
    ("speech", "batch"): "gemini_tasks.speech_batch",
    ("speech", "interactive"): "gemini_tasks.speech_interactive",
    ("image", "interactive"): "gemini_tasks.image_interactive",
    ("stream", "interactive"): "gemini_tasks.generate_stream",
}
#: the task that drives one part of a batch-tier group (its arguments are a group id and a part number)
BATCH_TIER_STEP = "gemini_tasks.batch_tier_step"
VERSION = 1
#: a job with a caller waiting on it (streaming, single TTS) carries ``deadline``: the caller's own deadline
#: plus this grace, after which the worker never calls (the caller's cancel flag normally stops it first)
DEADLINE_GRACE = 2.0
Kind = Literal["generate", "speech", "image"]
KINDS = ("generate", "speech", "image")


def task_name(kind: str, queue: str) -> str:
    return TASK_NAMES[(kind, queue)]


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def _whole(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


@dataclass(frozen=True)
class CallPolicy:
    """The processor settings that travel with each job (the original's constructor arguments)."""

    worker_cooldown_seconds: float = 20.0
    api_call_interval: float = 2.0
    max_workers: int = 4
    api_call_retries: int = 3
    max_wait_seconds: float = 3600.0
    spacing_scope: str = "fleet"
    return_response: bool = False
    strip: bool = True
    #: the default tier of this processor's prompts (a prompt's own "service_tier" overrides it; client only)
    service_tier: str = "standard"
    #: seconds after which a Flex request that keeps being shed is sent at standard tier (None: never)
    flex_fallback_after: float | None = None
    #: base of the exponential backoff (full jitter) between tries of a shed Flex request
    flex_retry_backoff: float = 2.0
    processor_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        _non_negative("worker_cooldown_seconds", self.worker_cooldown_seconds)
        _non_negative("api_call_interval", self.api_call_interval)
        _non_negative("max_wait_seconds", self.max_wait_seconds)
        _whole("max_workers", self.max_workers)
        _whole("api_call_retries", self.api_call_retries)
        object.__setattr__(self, "service_tier", check_tier(self.service_tier))
        object.__setattr__(self, "flex_fallback_after", check_fallback(self.flex_fallback_after))
        _non_negative("flex_retry_backoff", self.flex_retry_backoff)
        if self.spacing_scope not in ("fleet", "host"):
            raise ValueError(f"spacing_scope must be 'fleet' or 'host', got {self.spacing_scope!r}")

    def to_wire(self) -> dict[str, Any]:
        return {
            "processor_id": self.processor_id, "max_workers": self.max_workers,
            "worker_cooldown": self.worker_cooldown_seconds, "api_call_interval": self.api_call_interval,
            "spacing_scope": self.spacing_scope, "retries": self.api_call_retries,
            "max_wait": self.max_wait_seconds, "return_response": self.return_response, "strip": self.strip,
            "flex_fallback_after": self.flex_fallback_after, "shed_backoff": self.flex_retry_backoff,
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> CallPolicy:
        """Inverse of :meth:`to_wire`; a missing field reads as its default (and ``processor_id`` as none)."""
        d = cls.__dataclass_fields__
        return cls(
            worker_cooldown_seconds=float(data.get("worker_cooldown", d["worker_cooldown_seconds"].default)),
            api_call_interval=float(data.get("api_call_interval", d["api_call_interval"].default)),
            max_workers=int(data.get("max_workers", d["max_workers"].default)),
            api_call_retries=int(data.get("retries", d["api_call_retries"].default)),
            max_wait_seconds=float(data.get("max_wait", d["max_wait_seconds"].default)),
            spacing_scope=str(data.get("spacing_scope", d["spacing_scope"].default)),
            return_response=bool(data.get("return_response", d["return_response"].default)),
            strip=bool(data.get("strip", d["strip"].default)),
            flex_fallback_after=data.get("flex_fallback_after", d["flex_fallback_after"].default),
            flex_retry_backoff=float(data.get("shed_backoff", d["flex_retry_backoff"].default)),
            processor_id=str(data.get("processor_id", "")),
        )


@dataclass(frozen=True)
class PoolSpec:
    """Which key pool a job draws from: ids and names only, never a secret or a URL."""

    pool: str
    keys: list[str]
    rate_window: float = 60.0

    def to_wire(self) -> dict[str, Any]:
        return {"pool": self.pool, "keys": list(self.keys), "rate_window": self.rate_window}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> PoolSpec:
        return cls(pool=str(data["pool"]), keys=[str(k) for k in data.get("keys") or []],
                   rate_window=float(data.get("rate_window") or 60.0))


@dataclass(frozen=True)
class SpeechSpec:
    """A TTS request: the prompt, and one voice or two ``[speaker, voice]`` pairs (in speaking order)."""

    prompt: str
    voice: str | None = None
    speakers: list[list[str]] | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "speakers": self.speakers} if self.speakers else \
            {"prompt": self.prompt, "voice": self.voice}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> SpeechSpec:
        speakers = data.get("speakers")
        return cls(prompt=str(data["prompt"]), voice=data.get("voice"),
                   speakers=[[str(s), str(v)] for s, v in speakers] if speakers else None)

    def describe(self) -> str:
        return self.voice or ",".join(f"{s}={v}" for s, v in self.speakers or [])


@dataclass(frozen=True)
class ImageSpec:
    """An image request: the prompt, the model's options, and the image to edit as a blob reference."""

    prompt: str
    aspect_ratio: str | None = None
    image_size: str | None = None
    #: the image to edit, stored by the caller as a short-lived blob (:mod:`.blobs`), and its mime type
    input_ref: str | None = None
    input_mime: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"prompt": self.prompt, "aspect_ratio": self.aspect_ratio,
                                "image_size": self.image_size}
        if self.input_ref is not None:
            wire.update(input_ref=self.input_ref, input_mime=self.input_mime)
        return wire

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> ImageSpec:
        return cls(prompt=str(data["prompt"]), aspect_ratio=data.get("aspect_ratio"),
                   image_size=data.get("image_size"), input_ref=data.get("input_ref"),
                   input_mime=data.get("input_mime"))


@dataclass
class JobState:
    """What a worker keeps across re-queues of one job (rate-limit waits, backoffs)."""

    first_seen: float | None = None
    #: transient errors so far (the error-retry budget)
    errors: int = 0
    #: rate-limited calls so far
    rate_limited: int = 0
    #: Flex calls the API shed, since when the job has been tried on Flex, the tier of the next call once it
    #: fell back to standard, and whether it did
    shed: int = 0
    flex_since: float | None = None
    tier_now: str | None = None
    fallback: bool = False

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"first_seen": self.first_seen, "errors": self.errors, "rate_limited": self.rate_limited}
        if self.shed or self.flex_since is not None or self.tier_now or self.fallback:
            wire.update(shed=self.shed, flex_since=self.flex_since, tier_now=self.tier_now, fallback=self.fallback)
        return wire

    @classmethod
    def from_wire(cls, data: Mapping[str, Any] | None) -> JobState:
        data = data or {}
        first_seen, flex_since = data.get("first_seen"), data.get("flex_since")
        return cls(first_seen=None if first_seen is None else float(first_seen), errors=int(data.get("errors", 0)),
                   rate_limited=int(data.get("rate_limited", 0)), shed=int(data.get("shed", 0)),
                   flex_since=None if flex_since is None else float(flex_since), tier_now=data.get("tier_now"),
                   fallback=bool(data.get("fallback", False)))


@dataclass
class Job:
    """One request. Its kind's payload is set: ``request`` (generate: prompt_data in wire form), ``speech`` or
    ``image``."""

    kind: Kind
    model: str
    pool: PoolSpec
    policy: CallPolicy
    request: dict[str, Any] | None = None
    speech: SpeechSpec | None = None
    image: ImageSpec | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    #: epoch seconds after which no call may start (streaming callers that give up); None for batches
    deadline: float | None = None
    #: the service tier the request asked for (generate; ``standard`` for jobs from before tiers existed)
    tier: str = "standard"
    state: JobState = field(default_factory=JobState)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown job kind {self.kind!r}")
        payloads = {"request": self.request, "speech": self.speech, "image": self.image}
        needed = "request" if self.kind == "generate" else self.kind
        if any((name == needed) != (value is not None) for name, value in payloads.items()):
            raise ValueError(f"a {self.kind} job needs {needed} only")

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"v": VERSION, "kind": self.kind, "model": self.model, "pool": self.pool.to_wire(),
                                "policy": self.policy.to_wire()}
        if self.request is not None:
            wire["request"] = self.request
        if self.speech is not None:
            wire["speech"] = self.speech.to_wire()
        if self.image is not None:
            wire["image"] = self.image.to_wire()
        wire["metadata"] = self.metadata
        wire["deadline"] = self.deadline
        wire["tier"] = self.tier
        if self.state.first_seen is not None:  # the client never sends one; a re-queued job carries it
            wire["state"] = self.state.to_wire()
        return wire

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Job:
        kind = data.get("kind")
        if kind not in KINDS:
            raise ValueError(f"not a job message: kind {kind!r}")
        speech, image = data.get("speech"), data.get("image")
        deadline = data.get("deadline")
        return cls(
            kind=kind, model=str(data["model"]), pool=PoolSpec.from_wire(data["pool"]),
            policy=CallPolicy.from_wire(data.get("policy") or {}),
            request=data.get("request") if kind == "generate" else None,
            speech=SpeechSpec.from_wire(speech) if kind == "speech" and speech is not None else None,
            image=ImageSpec.from_wire(image) if kind == "image" and image is not None else None,
            metadata=dict(data.get("metadata") or {}),
            deadline=None if deadline is None else float(deadline),
            tier=str(data.get("tier") or "standard"),
            state=JobState.from_wire(data.get("state")),
        )

    def describe(self) -> str:
        """A short, secret-free, bytes-free description for Flower's task list (argsrepr)."""
        meta = json.dumps(self.metadata or {}, default=str)[:200]
        if self.image is not None:
            return f"image model={self.model} prompt={self.image.prompt[:80]!r} metadata={meta}"
        if self.speech is not None:
            return (f"speech model={self.model} voice={self.speech.describe()} text={self.speech.prompt[:80]!r} "
                    f"metadata={meta}")
        req = self.request or {}
        prompt = (req.get("prompt") or "")[:80]
        try:
            from gemini_tasks.gemini.content import plan_media
            from gemini_tasks.gemini.validation import from_wire

            items = [i.label for i in plan_media(from_wire(req))]
        except Exception:  # noqa: BLE001 - a description must never fail a submission
            items = []
        media = f" media=[{'; '.join(items)[:200]}]" if items else ""
        return f"generate model={self.model} prompt={prompt!r}{media} metadata={meta}"


def describe(wire: Mapping[str, Any]) -> str:
    """:meth:`Job.describe` of a wire message; a kind this module does not type (images, ...) gets a short line."""
    try:
        return Job.from_wire(wire).describe()
    except (KeyError, TypeError, ValueError):
        meta = json.dumps(wire.get("metadata") or {}, default=str)[:200]
        return f"{wire.get('kind')} model={wire.get('model')} metadata={meta}"
