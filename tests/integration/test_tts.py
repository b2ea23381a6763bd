"""TTS through the fleet: single voice, two speakers (order kept), batch in input order, valid WAV files."""

from __future__ import annotations

import wave

import pytest


@pytest.fixture
def tts(worker, manager_factory):
    from gemini_tasks import GeminiTTSProcessor

    return GeminiTTSProcessor(manager_factory(4, paid_keys="all"), model="flash", api_call_interval=0)


def read_wav(path):
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()


def test_single_voice_returns_pcm_and_writes_a_valid_wav(tts, emu, tmp_path):
    out = tmp_path / "hello.wav"
    pcm = tts.generate_speech("Welcome to our presentation!", voice="Puck",
                              style_prompt="Say this with excitement", output_file=str(out))
    assert pcm and len(pcm) % 2 == 0
    rate, channels, width, frames = read_wav(out)
    assert (rate, channels, width) == (24000, 1, 2) and frames * 2 == len(pcm)
    req = [e for e in emu.log() if e.get("endpoint") == "generateContent"][-1]
    assert "Say this with excitement" in req["parts"][0]["text"]


def test_two_speakers_keep_their_order(tts, emu, tmp_path):
    dialogue = [("Host", "Welcome to Tech Talk!"), ("Guest", "Thanks for having me!"),
                ("Host", "Let's discuss AI."), ("Guest", "Gladly!")]
    pcm = tts.generate_multi_speaker_dialogue(dialogue, voices={"Guest": "Fenrir", "Host": "Charon"},
                                              output_file=str(tmp_path / "podcast.wav"))
    assert pcm
    req = [e for e in emu.log() if e.get("endpoint") == "generateContent"][-1]
    speech = str(req.get("generation_config"))
    assert speech.index("Host") < speech.index("Guest") and "Charon" in speech and "Fenrir" in speech


def test_bad_tts_input_is_refused_before_enqueueing(tts, emu):
    before = len(emu.log())
    with pytest.raises(ValueError, match="Nonexistent"):
        tts.generate_speech("hello", voice="Nonexistent")
    with pytest.raises(ValueError, match="exactly 2 speakers"):
        tts.generate_multi_speaker_dialogue([("A", "x"), ("B", "y"), ("C", "z")],
                                            voices={"A": "Kore", "B": "Puck", "C": "Zephyr"})
    with pytest.raises(ValueError, match="non-empty"):
        tts.generate_speech("   ")
    assert len(emu.log()) == before


def test_wav_returned_by_the_api_is_written_correctly(tts, emu, tmp_path):
    emu.configure(tts_mime="audio/wav")
    out = tmp_path / "w.wav"
    pcm = tts.generate_speech("A complete WAV this time", output_file=str(out))
    assert pcm and not pcm.startswith(b"RIFF")  # PCM frames, header removed
    rate, channels, width, frames = read_wav(out)
    assert rate == 24000 and frames * width * channels == len(pcm)


def test_batch_generate_speech_in_input_order(tts, emu, tmp_path):
    texts = [{"text": f"Chapter {i}", "voice": "Schedar" if i % 2 else "Algenib",
              "output_file": str(tmp_path / f"c{i}.wav"), "metadata": {"chapter": i}} for i in range(5)]
    results = tts.batch_generate_speech(texts, max_workers=4)
    assert [m["chapter"] for m, _, _ in results] == list(range(5))
    for i, (meta, audio, error) in enumerate(results):
        assert error is None and audio
        assert read_wav(tmp_path / f"c{i}.wav")[3] * 2 == len(audio)


def test_generate_from_prompt_then_speak(tts, emu, tmp_path):
    pcm = tts.generate_from_prompt(model="gemini-2.0-flash", prompt="Write a short mysterious story",
                                   voice="Enceladus", output_file=str(tmp_path / "story.wav"))
    assert pcm


def test_text_to_speech_with_api_key_calls_directly(fleet_env, emu, tmp_path):
    from gemini_tasks import text_to_speech

    out = tmp_path / "direct.wav"
    before = len(emu.log())
    pcm = text_to_speech("Hello, world!", voice="Kore", output_file=str(out), api_key="direct-secret-key-123456")
    assert pcm and read_wav(out)[0] == 24000
    assert len(emu.log()) == before + 1
