"""The exact Part sequence for every ordering case of the README, with the original's defects fixed."""

from __future__ import annotations

import os

import pytest
from google.genai import types
from hypothesis import given, settings
from hypothesis import strategies as st

from gemini_tasks.gemini.content import (
    INLINE_REQUEST_LIMIT,
    MediaItem,
    build_contents,
    choose_uploads,
    guess_mime,
    inline_cost,
    inline_path,
    plan_media,
)
from gemini_tasks.gemini.errors import InvalidPromptError
from gemini_tasks.gemini.validation import validate_prompt


def T(text: str) -> types.Part:
    return types.Part(text=text)


def F(uri: str, mime: str, **vm) -> types.Part:
    return types.Part(
        file_data=types.FileData(file_uri=uri, mime_type=mime),
        video_metadata=types.VideoMetadata(**vm) if vm else None,
    )


def B(data: bytes, mime: str, **vm) -> types.Part:
    return types.Part(
        inline_data=types.Blob(data=data, mime_type=mime),
        video_metadata=types.VideoMetadata(**vm) if vm else None,
    )


class Uploads:
    """A resolver standing in for the task layer's Files API upload: records calls, returns file URIs."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, path: str, mime_type: str, kind: str) -> types.File:
        self.calls.append((os.path.basename(path), mime_type, kind))
        return types.File(name=f"files/{len(self.calls)}", uri=f"up://{os.path.basename(path)}", mime_type=mime_type)


def up(name: str, mime: str, **vm) -> types.Part:
    return F(f"up://{name}", mime, **vm)


def test_readme_token_positioning(media_files):
    resolver = Uploads()
    parts = build_contents(
        {
            "prompt": "First, analyze this audio: <audio> Now compare it with this video: <video> Finally, what "
            "do you think about this second audio: <audio>",
            "audio_path": [media_files["audio1.mp3"], media_files["audio2.wav"]],
            "video_path": [media_files["video1.mp4"]],
            "metadata": {"task_id": "multimedia_analysis"},
        },
        resolver,
    )
    assert parts == [
        T("First, analyze this audio:"),
        up("audio1.mp3", "audio/mp3"),
        T("Now compare it with this video:"),
        up("video1.mp4", "video/mp4"),
        T("Finally, what do you think about this second audio:"),
        up("audio2.wav", "audio/wav"),
    ]
    assert resolver.calls == [("audio1.mp3", "audio/mp3", "audio"), ("video1.mp4", "video/mp4", "video"),
                              ("audio2.wav", "audio/wav", "audio")]


def test_readme_multiple_files_mixed_types(media_files):
    parts = build_contents(
        {
            "prompt": "Compare these recordings: <audio> <audio> with this visual content: <video>",
            "audio_path": [media_files["interview1.mp3"], media_files["interview2.mp3"]],
            "video_path": [media_files["presentation.mp4"]],
            "audio_mime_type": ["audio/mp3", "audio/mpeg"],
            "video_mime_type": ["video/mp4"],
        },
        Uploads(),
    )
    assert parts == [
        T("Compare these recordings:"),
        up("interview1.mp3", "audio/mp3"),
        up("interview2.mp3", "audio/mpeg"),
        T("with this visual content:"),
        up("presentation.mp4", "video/mp4"),
    ]


def test_readme_mixed_paths_bytes_urls_mime_follows_each_file(media_files):
    wav = b"RIFF....WAVEfmt "
    parts = build_contents(
        {
            "prompt": "Analyze this audio file: <audio> and this video: <video> then this audio data: <audio>",
            "audio_path": [media_files["audio1.mp3"]],
            "audio_bytes": [wav],
            "video_url": ["https://example.com/video.mp4"],
            "audio_mime_type": ["audio/mp3", "audio/wav"],
            "video_mime_type": ["video/mp4"],
        },
        Uploads(),
    )
    assert parts == [
        T("Analyze this audio file:"),
        up("audio1.mp3", "audio/mp3"),
        T("and this video:"),
        F("https://example.com/video.mp4", "video/mp4"),
        T("then this audio data:"),
        B(wav, "audio/wav"),  # the original sent these WAV bytes as audio/mp3
    ]


def test_readme_video_metadata_on_a_path_video(media_files):
    parts = build_contents(
        {
            "prompt": "Analyze this video segment: <video> What are the key points?",
            "video_path": [media_files["video1.mp4"]],
            "video_metadata": [{"start_offset": "1250s", "end_offset": "1570s", "fps": 5}],
        },
        Uploads(),
    )
    assert parts == [
        T("Analyze this video segment:"),
        up("video1.mp4", "video/mp4", start_offset="1250s", end_offset="1570s", fps=5.0),
        T("What are the key points?"),
    ]


def test_readme_fallback_without_tokens(media_files):
    prompt = "Analyze the provided media files."
    parts = build_contents(
        {
            "prompt": prompt,
            "audio_path": [media_files["audio1.mp3"], media_files["interview1.mp3"]],
            "video_path": [media_files["video1.mp4"]],
        },
        Uploads(),
    )
    assert parts == [up("video1.mp4", "video/mp4"), up("audio1.mp3", "audio/mp3"),
                     up("interview1.mp3", "audio/mp3"), T(prompt)]


def test_leftovers_go_last_audios_then_videos(media_files):
    parts = build_contents(
        {
            "prompt": "Listen: <audio> and watch <video>",
            "audio_path": [media_files["audio1.mp3"], media_files["audio2.wav"]],
            "video_path": [media_files["video1.mp4"], media_files["presentation.mp4"]],
            "audio_bytes": b"abc",
        },
        Uploads(),
    )
    assert parts == [
        T("Listen:"),
        up("audio1.mp3", "audio/mp3"),
        T("and watch"),
        up("video1.mp4", "video/mp4"),
        up("audio2.wav", "audio/wav"),
        B(b"abc", "audio/mp3"),
        up("presentation.mp4", "video/mp4"),
    ]


def test_video_order_url_path_bytes_with_indexed_mime_and_metadata(media_files):
    parts = build_contents(
        {
            "prompt": "<video><video><video>",
            "video_bytes": [b"vvv"],
            "video_path": [media_files["clip.mov"]],
            "video_url": ["gs://bucket/a.webm"],
            "video_mime_type": ["video/webm", "video/quicktime", "video/mpeg"],
            "video_metadata": [{"fps": 1}, None, {"startOffset": "2s", "endOffset": "4.5s"}],
        },
        Uploads(),
    )
    assert parts == [
        F("gs://bucket/a.webm", "video/webm", fps=1.0),
        up("clip.mov", "video/quicktime"),
        B(b"vvv", "video/mpeg", start_offset="2s", end_offset="4.5s"),
    ]


def test_audio_order_path_bytes_url_and_single_mime_for_all(media_files):
    parts = build_contents(
        {
            "audio_url": "https://example.com/podcast",
            "audio_bytes": b"xyz",
            "audio_path": media_files["audio1.mp3"],
            "audio_mime_type": "audio/ogg",
        },
        Uploads(),
    )
    assert parts == [up("audio1.mp3", "audio/ogg"), B(b"xyz", "audio/ogg"),
                     F("https://example.com/podcast", "audio/ogg")]


def test_mime_guessing_and_defaults(media_files):
    parts = build_contents(
        {
            "prompt": "<audio><audio><audio><video><video>",
            "audio_path": [media_files["audio2.wav"]],
            "audio_bytes": [b"raw"],
            "audio_url": ["https://example.com/song.flac?x=1"],
            "video_url": ["https://www.youtube.com/watch?v=xyz"],
            "video_path": [media_files["clip.mov"]],
        },
        Uploads(),
    )
    assert [p.inline_data.mime_type if p.inline_data else p.file_data.mime_type for p in parts] == [
        "audio/wav", "audio/mp3", "audio/flac", "video/mp4", "video/mov"]


@pytest.mark.parametrize(
    "name,kind,mime",
    [("a.mp3", "audio", "audio/mp3"), ("a.WAV", "audio", "audio/wav"), ("a.aiff", "audio", "audio/aiff"),
     ("a.m4a", "audio", "audio/mp4"), ("a.mp4", "audio", "audio/mp4"), ("a", "audio", "audio/mp3"),
     ("a.mp4", "video", "video/mp4"), ("a.avi", "video", "video/avi"), ("a.txt", "video", "video/mp4"),
     ("https://x.com/v.webm", "video", "video/webm"), ("https://x.com/v", "video", "video/mp4")],
)
def test_guess_mime(name, kind, mime):
    assert guess_mime(name, kind) == mime


def test_tokens_are_exact_lowercase_like_the_original(media_files):
    parts = build_contents({"prompt": "Say <AUDIO> and <Video>", "audio_bytes": b"a"})
    assert parts == [B(b"a", "audio/mp3"), T("Say <AUDIO> and <Video>")]


def test_media_only_prompt_is_allowed():
    assert build_contents({"prompt": "", "audio_bytes": b"a"}) == [B(b"a", "audio/mp3")]
    assert build_contents({"video_url": "https://example.com/v.mp4"}) == [F("https://example.com/v.mp4", "video/mp4")]
    assert build_contents({"prompt": "<audio>", "audio_bytes": b"a"}) == [B(b"a", "audio/mp3")]


def test_text_only():
    assert build_contents({"prompt": "What is the capital of France?"}) == [T("What is the capital of France?")]


@pytest.mark.parametrize(
    "prompt_data,match",
    [
        ({}, "no content provided"),
        ({"prompt": "   "}, "no content provided"),
        ({"prompt": "<audio> and <audio>", "audio_bytes": b"a"}, r"more <audio> tokens \(2\) than audio files \(1"),
        ({"prompt": "<video>"}, r"more <video> tokens \(1\) than video files \(0"),
        ({"prompt": 42}, "prompt: must be a string"),
    ],
)
def test_build_errors(prompt_data, match):
    with pytest.raises(InvalidPromptError, match=match):
        build_contents(prompt_data)


def test_default_resolver_inlines_the_file(media_files):
    with open(media_files["video1.mp4"], "rb") as f:
        data = f.read()
    parts = build_contents({"prompt": "<video>", "video_path": media_files["video1.mp4"],
                            "video_metadata": {"fps": 2}})
    assert parts == [B(data, "video/mp4", fps=2.0)]
    assert inline_path(media_files["video1.mp4"], "video/mp4", "video") == B(data, "video/mp4")


@pytest.mark.parametrize(
    "resolved,expected",
    [
        (types.Part(text="x"), types.Part(text="x")),
        (types.FileData(file_uri="up://z"), F("up://z", "video/mp4")),
        (types.Blob(data=b"q", mime_type="video/webm"), B(b"q", "video/webm")),
        (b"raw", B(b"raw", "video/mp4")),
        ("https://generativelanguage.googleapis.com/v1beta/files/abc", F("https://generativelanguage.googleapis.com/v1beta/files/abc", "video/mp4")),
        (types.File(name="files/abc", uri="up://abc", mime_type="video/x-custom"), F("up://abc", "video/x-custom")),
    ],
)
def test_resolver_return_types(media_files, resolved, expected):
    parts = build_contents({"video_path": media_files["video1.mp4"]}, lambda *a: resolved)
    assert parts == [expected]


def test_resolver_part_gets_video_metadata(media_files):
    parts = build_contents(
        {"video_path": media_files["video1.mp4"], "video_metadata": {"start_offset": "1s"}},
        lambda *a: types.Part(file_data=types.FileData(file_uri="up://a", mime_type="video/mp4")),
    )
    assert parts == [F("up://a", "video/mp4", start_offset="1s")]


def test_bad_resolver_return_is_a_type_error(media_files):
    with pytest.raises(TypeError, match="resolve_path returned int"):
        build_contents({"video_path": media_files["video1.mp4"]}, lambda *a: 3)


def test_parts_form_a_valid_user_content(media_files):
    parts = build_contents({"prompt": "hi <audio>", "audio_bytes": b"a", "video_url": "https://x.com/v.mp4",
                            "video_metadata": {"fps": 1}})
    content = types.Content(role="user", parts=parts)
    dumped = content.model_dump(mode="json", exclude_none=True)
    assert dumped["parts"][0] == {"text": "hi"}
    assert dumped["parts"][2]["video_metadata"] == {"fps": 1.0}


# --------------------------------------------------------------------------------------------- planning


def test_plan_media_lists_items_in_final_order(media_files):
    plan = plan_media(
        {
            "prompt": "A <video> B <audio>",
            "audio_path": [media_files["audio1.mp3"]],
            "audio_bytes": [b"12345"],
            "video_url": ["https://example.com/v.mp4"],
            "video_path": [media_files["video1.mp4"]],
            "video_metadata": [None, {"fps": 3}],
        }
    )
    assert [(m.kind, m.source, m.index) for m in plan] == [
        ("video", "url", 0), ("audio", "path", 0), ("audio", "bytes", 1), ("video", "path", 1)]
    assert plan[0].size is None
    assert plan[1].size == os.path.getsize(media_files["audio1.mp3"])
    assert plan[2].size == 5
    assert plan[3].metadata == {"fps": 3}
    assert plan[0].metadata is None
    assert all(isinstance(m, MediaItem) for m in plan)
    assert "12345" not in repr(plan[2])  # never dump payloads into logs


def _item(source: str, value, size):
    return MediaItem(kind="video", source=source, index=0, value=value, mime_type="video/mp4", size=size)


def test_choose_uploads_largest_paths_first():
    mb = 1024 * 1024
    items = [_item("path", "/s/small.mp4", 1 * mb), _item("path", "/s/big.mp4", 9 * mb),
             _item("path", "/s/mid.mp4", 5 * mb), _item("bytes", b"", 2 * mb), _item("url", "https://x", None)]
    # inline: (1 + 9 + 5 + 2) MB * 4/3 = 22.7 MB > 20 MB; dropping big.mp4 leaves 10.7 MB
    assert choose_uploads(items) == ["/s/big.mp4"]
    assert choose_uploads(items, limit=8 * mb) == ["/s/big.mp4", "/s/mid.mp4"]
    assert choose_uploads(items[:1]) == []


def test_choose_uploads_unknown_size_is_uploaded_and_duplicates_count_once():
    items = [_item("path", "/s/gone.mp4", None), _item("path", "/s/a.mp4", 8_000_000), _item("path", "/s/a.mp4", 8_000_000)]
    assert choose_uploads(items) == ["/s/gone.mp4", "/s/a.mp4"]


def test_inline_cost_is_base64_size():
    assert inline_cost(0) == 0
    assert inline_cost(3) == 4
    assert inline_cost(4) == 8
    assert inline_cost(15 * 1024 * 1024) == 20 * 1024 * 1024
    assert INLINE_REQUEST_LIMIT == 20 * 1024 * 1024


# ------------------------------------------------------------------------------------------- properties

_pieces = st.lists(st.sampled_from(["<audio>", "<video>", "text ", " ", "more words"]), max_size=8)


@settings(max_examples=150, deadline=None)
@given(pieces=_pieces, n_audio_bytes=st.integers(0, 2), n_audio_urls=st.integers(0, 2),
       n_video_bytes=st.integers(0, 2), n_video_urls=st.integers(0, 2))
def test_validation_and_building_agree_and_keep_per_type_order(pieces, n_audio_bytes, n_audio_urls, n_video_bytes, n_video_urls):
    prompt_data = {
        "prompt": "".join(pieces),
        "audio_bytes": [f"a{i}".encode() for i in range(n_audio_bytes)],
        "audio_url": [f"https://example.com/a{i}.mp3" for i in range(n_audio_urls)],
        "video_bytes": [f"v{i}".encode() for i in range(n_video_bytes)],
        "video_url": [f"https://example.com/v{i}.mp4" for i in range(n_video_urls)],
    }
    try:
        validate_prompt(prompt_data)
        valid = True
    except InvalidPromptError:
        valid = False
    try:
        parts = build_contents(prompt_data)
    except InvalidPromptError:
        assert not valid
        return
    assert valid
    media = [p for p in parts if p.text is None]
    assert len(media) == n_audio_bytes + n_audio_urls + n_video_bytes + n_video_urls

    def ident(p):
        return p.inline_data.data.decode() if p.inline_data else p.file_data.file_uri.rsplit("/", 1)[1].split(".")[0]

    audio = [ident(p) for p in media if (p.inline_data or p.file_data).mime_type.startswith("audio/")]
    video = [ident(p) for p in media if (p.inline_data or p.file_data).mime_type.startswith("video/")]
    assert audio == [f"a{i}" for i in range(n_audio_bytes)] + [f"a{i}" for i in range(n_audio_urls)]
    assert video == [f"v{i}" for i in range(n_video_urls)] + [f"v{i}" for i in range(n_video_bytes)]
    assert all(p.text.strip() for p in parts if p.text is not None)
