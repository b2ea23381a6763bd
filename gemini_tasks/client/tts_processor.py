"""``GeminiTTSProcessor`` and ``text_to_speech``: Gemini speech on the fleet, with the original's API.

Audio never travels through the broker or the result backend: the worker stores the raw audio once in a
short-lived Redis blob and returns a reference; this side fetches it, deletes it, and writes the WAV.
Methods return raw PCM bytes (as the original did) or ``None`` on failure; ``last_error`` says why.
Bad input (an unknown voice, three speakers, empty text) raises ``ValueError`` before anything is enqueued.
"""

from __future__ import annotations

import dataclasses

import io
import logging
import os
import uuid
import wave
from typing import Any, Iterable, Mapping

from celery import group
from celery.exceptions import TimeoutError as CeleryTimeoutError

from gemini_tasks.client.sending import task_ref
from gemini_tasks.messages import blobs
from gemini_tasks.gemini import tts as tts_lib
from gemini_tasks.gemini.tts import TTS_MODELS, TTS_VOICES  # noqa: F401 - re-exported
from gemini_tasks.client.jobs import CallPolicy, check_manager, check_model
from gemini_tasks.messages import Job, PoolSpec, SpeechSpec
from gemini_tasks.keys.manager import AdvancedApiKeyManager
from gemini_tasks.client.processors import GeminiStreamingProcessor, to_result_tuple
from gemini_tasks.client.aio import AsyncTTSMixin
from gemini_tasks.client import batch_api

log = logging.getLogger("gemini_tasks")


def _pcm_of(data: bytes) -> bytes:
    """Raw PCM frames of a complete WAV file (the API may return one), else the data unchanged."""
    if tts_lib.is_wav(data):
        with wave.open(io.BytesIO(data), "rb") as w:
            return w.readframes(w.getnframes())
    return data


def speech_argsrepr(speech: SpeechSpec) -> str:
    """A speech job's line in Flower's task list (argsrepr)."""
    return f"speech voice={speech.voice or speech.speakers} text={speech.prompt[:80]!r}"


class GeminiTTSProcessor(AsyncTTSMixin):
    """Text-to-speech through the fleet's shared key pool.

    ``output_sample_rate``/``output_channels``/``output_sample_width`` are the format you expect; the WAV
    header is always written from the format the API actually returned (its MIME type), never mislabelled.
    """

    def __init__(self, key_manager: AdvancedApiKeyManager | None = None, model: str = "flash",
                 default_voice: str = "Kore", output_sample_rate: int = 24000, output_channels: int = 1,
                 output_sample_width: int = 2, *, api_call_interval: float = 2.0, timeout: float = 300.0,
                 service_tier: str = "standard", flex_fallback_after: float | None = None,
                 batch_options: dict[str, Any] | None = None) -> None:
        if key_manager is None:
            key_manager = (AdvancedApiKeyManager(["GEMINI_API_KEY"]) if os.environ.get("GEMINI_API_KEY")
                           else AdvancedApiKeyManager("all"))
        self.key_manager = check_manager(key_manager)
        self.model = check_model(tts_lib.resolve_tts_model(model))
        self.default_voice = tts_lib.validate_voice(default_voice)
        self.output_sample_rate = output_sample_rate
        self.output_channels = output_channels
        self.output_sample_width = output_sample_width
        self.timeout = timeout
        # flex/priority go out as GenerateContentConfig.service_tier, like text (gemini/tiers.py); "batch"
        # sends the speech through the Gemini Batch API (Google lists it for its TTS models), batch_api.py
        self.batch_options = batch_api.check_options(batch_options)
        self.policy = CallPolicy(worker_cooldown_seconds=0, api_call_interval=api_call_interval, max_workers=4,
                                 max_wait_seconds=timeout, service_tier=service_tier,
                                 flex_fallback_after=flex_fallback_after)
        self.last_error: str | None = None

    @staticmethod
    def list_voices(style: str | None = None) -> dict[str, str]:
        return tts_lib.list_voices(style)

    # -- jobs ---------------------------------------------------------------------------------------------
    def _job(self, speech: SpeechSpec, metadata: Mapping[str, Any] | None, policy: CallPolicy,
             deadline: float | None = None) -> Job:
        return Job(kind="speech", model=self.model, pool=PoolSpec.from_wire(self.key_manager.spec()), policy=policy,
                   speech=speech, metadata=dict(metadata or {}), deadline=deadline, tier=policy.service_tier)

    def _single_speech(self, text: Any, voice: str | None, style_prompt: str | None) -> SpeechSpec:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text must be a non-empty string, got {text!r}")
        if style_prompt is not None and not isinstance(style_prompt, str):
            raise ValueError(f"style_prompt must be a string, got {style_prompt!r}")
        return SpeechSpec(prompt=tts_lib.speech_prompt(text, style_prompt),
                          voice=tts_lib.validate_voice(voice or self.default_voice))

    def _dialogue_speech(self, dialogue: Any, voices: Mapping[str, str], style_prompt: str | None) -> SpeechSpec:
        speakers = tts_lib.dialogue_speakers(dialogue)
        if len(speakers) != 2:
            raise ValueError(f"a multi-speaker dialogue needs exactly 2 speakers, got {len(speakers)}: {speakers}")
        if not isinstance(voices, Mapping):
            raise ValueError("voices must be a dict of speaker -> voice name")
        missing = [s for s in speakers if s not in voices]
        if missing:
            raise ValueError(f"no voice given for speaker(s) {missing}; voices has {sorted(voices)}")
        pairs = [[s, tts_lib.validate_voice(voices[s])] for s in speakers]  # order of first appearance
        return SpeechSpec(prompt=tts_lib.dialogue_prompt(dialogue, style_prompt), speakers=pairs)

    def _collect(self, value: Any, output_file: str | None) -> bytes | None:
        meta, result, error = to_result_tuple(value)
        if error is not None or not isinstance(value, dict):
            self.last_error = error or "TTS generation failed"
            log.error("TTS failed: %s", self.last_error)
            return None
        pool = self.key_manager.pool
        data = blobs.take(pool.client, pool.prefix, value["audio_ref"])
        if output_file:
            tts_lib.write_wav(output_file, data, value["mime_type"])
        pcm = _pcm_of(data)
        rate = value.get("sample_rate")
        if rate and rate != self.output_sample_rate:
            log.warning("the API returned %s Hz audio (expected %s Hz); the WAV says %s Hz", rate,
                        self.output_sample_rate, rate)
        self.last_error = None
        return pcm

    def _through_batch_api(self, jobs: list[Job], output_files: list[str | None]) -> list[tuple]:
        """Speech jobs through the Gemini Batch API (one job per project of the pool, polled by the fleet);
        ``(metadata, pcm, error)`` in input order, the same PCM and WAV files as the synchronous path."""
        for job in jobs:
            job.tier = "batch"
            job.deadline = None
        group_id = batch_api.submit(self, jobs, self.batch_options, model=self.model)
        # ``timeout`` is for synchronous calls: a Batch API job may take up to 24 h, so this waits for it
        # (as process_prompts does at batch tier); interrupting the wait cancels the remote jobs
        try:
            _, values = batch_api.collect_raw(group_id, timeout=None, wait_sync=None)
        except BaseException:
            batch_api.cancel(group_id)
            raise
        out = []
        for job, value, path in zip(jobs, values, output_files):
            audio = self._collect(value, path)
            error = None if audio is not None else (self.last_error or "TTS generation failed")
            out.append((dict(job.metadata), audio, error))
        return out

    def _run(self, speech: SpeechSpec, output_file: str | None) -> bytes | None:
        from gemini_tasks.client.processors import STREAM_DEADLINE_GRACE
        import time

        if self.policy.service_tier == "batch":
            [(_, audio, _)] = self._through_batch_api([self._job(speech, None, self.policy)], [output_file])
            return audio

        deadline = time.time() + self.timeout + STREAM_DEADLINE_GRACE
        job = self._job(speech, None, self.policy, deadline)
        res = task_ref("speech", "interactive").apply_async(
            args=[job.to_wire()], queue="interactive", expires=self.timeout + STREAM_DEADLINE_GRACE,
            argsrepr=speech_argsrepr(speech))
        try:
            value = res.get(timeout=self.timeout, propagate=False, interval=0.05)
        except CeleryTimeoutError:
            from gemini_tasks.client.collect import release_pending

            self.key_manager.pool.cancel(res.id)
            res.revoke()
            release_pending([res])
            self.last_error = f"TTS timed out after {self.timeout} seconds"
            return None
        res.forget()
        return self._collect(value, output_file)

    # -- the original's methods -----------------------------------------------------------------------
    def generate_speech(self, text: str, voice: str | None = None, output_file: str | None = None,
                        style_prompt: str | None = None) -> bytes | None:
        """Speak ``text`` with one voice. Returns raw PCM (16-bit mono 24 kHz from today's models) or None."""
        return self._run(self._single_speech(text, voice, style_prompt), output_file)

    def generate_multi_speaker_dialogue(self, dialogue: Mapping[str, str] | Iterable[tuple[str, str]],
                                        voices: Mapping[str, str], output_file: str | None = None,
                                        style_prompt: str | None = None) -> bytes | None:
        """A two-speaker conversation; speakers keep the order in which they first speak."""
        return self._run(self._dialogue_speech(dialogue, voices, style_prompt), output_file)

    def generate_from_prompt(self, model: str = "gemini-2.0-flash", prompt: str | None = None,
                             voice: str | None = None, output_file: str | None = None) -> bytes | None:
        """Generate a text with ``model``, then speak it."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("generate_from_prompt needs a non-empty prompt")
        speaker = tts_lib.validate_voice(voice or self.default_voice)
        streaming = GeminiStreamingProcessor(self.key_manager, model, worker_cooldown_seconds=0,
                                             api_call_interval=self.policy.api_call_interval)
        streaming.start()
        try:
            _, transcript, error = streaming.process_single({"prompt": prompt}, timeout=self.timeout)
        finally:
            streaming.stop()
        if error or not transcript:
            self.last_error = error or "the generated text was empty"
            return None
        return self.generate_speech(transcript.strip(), speaker, output_file)

    def batch_generate_speech(self, texts: list[dict[str, Any]], max_workers: int = 4) -> list[tuple]:
        """Many texts at once (a Celery group); results ``(metadata, pcm, error)`` in input order."""
        if not isinstance(texts, list):
            raise ValueError("texts must be a list of dicts with 'text' (and optional voice, style_prompt, ...)")
        # the processor's tier and Flex settings, with the batch's own worker slots (a processor id of its own,
        # as before: its max_workers never shares slots with this processor's single calls) and a batch's wait
        policy = dataclasses.replace(self.policy, max_workers=max_workers, max_wait_seconds=3600,
                                     processor_id=uuid.uuid4().hex[:12])
        jobs: list[Job] = []
        speeches: list[SpeechSpec] = []
        for i, item in enumerate(texts):
            if not isinstance(item, dict) or "text" not in item:
                raise ValueError(f"texts[{i}] must be a dict with a 'text' key, got {item!r:.100}")
            unknown = set(item) - {"text", "voice", "style_prompt", "output_file", "metadata"}
            if unknown:
                raise ValueError(f"texts[{i}] has unknown field(s) {sorted(unknown)}")
            try:
                speech = self._single_speech(item["text"], item.get("voice"), item.get("style_prompt"))
            except ValueError as exc:
                raise ValueError(f"texts[{i}]: {exc}") from None
            speeches.append(speech)
            jobs.append(self._job(speech, item.get("metadata"), policy))

        if self.policy.service_tier == "batch":
            return self._through_batch_api(jobs, [item.get("output_file") for item in texts])
        task = task_ref("speech", "batch")
        res = group(task.s(job.to_wire()).set(queue="batch", argsrepr=speech_argsrepr(speech))
                    for job, speech in zip(jobs, speeches)).apply_async()
        values: dict[str, Any] = {}
        res.join_native(propagate=False, callback=lambda tid, v: values.__setitem__(tid, v), interval=0.2)
        out = []
        for item, child in zip(texts, res.results):
            value = values.get(child.id)
            audio = self._collect(value, item.get("output_file"))
            error = None if audio is not None else (self.last_error or "TTS generation failed")
            out.append((dict(item.get("metadata") or {}), audio, error))
        return out


def text_to_speech(text: str, voice: str = "Kore", output_file: str | None = None,
                   api_key: str | None = None) -> bytes | None:
    """One line of speech. Without ``api_key``: through the fleet. With ``api_key``: called directly from
    this process (the secret is never sent to the broker or a worker), paced by nothing but this call."""
    if api_key is None:
        return GeminiTTSProcessor().generate_speech(text, voice=voice, output_file=output_file)
    from gemini_tasks.gemini.client import make_client
    from gemini_tasks.gemini.classification import classify
    from gemini_tasks.gemini.errors import error_message
    from gemini_tasks.gemini.response import extract_audio
    from gemini_tasks.settings import get_settings

    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text must be a non-empty string, got {text!r}")
    config = tts_lib.single_speaker_config(tts_lib.validate_voice(voice))
    settings = get_settings()
    client = make_client(api_key, timeout_s=settings.request_timeout, api_version=settings.api_version)
    try:
        response = client.models.generate_content(model=TTS_MODELS["flash"], contents=text, config=config)
        data, mime = extract_audio(response)
    except Exception as exc:  # noqa: BLE001 - the original returned None on any failure
        log.error("text_to_speech failed: %s", error_message(classify(exc, secrets=[api_key])))
        return None
    finally:
        client.close()
    if output_file:
        tts_lib.write_wav(output_file, data, mime)
    return _pcm_of(data)
