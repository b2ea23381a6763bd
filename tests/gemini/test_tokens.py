"""The pre-admission token estimate (corrected after each call by the API's own count)."""

from google.genai import types

from gemini_tasks.gemini.tokens import IMAGE_TOKENS, UNKNOWN_FILE_TOKENS, estimate_tokens, media_tokens


def test_text_media_and_files():
    parts = [types.Part(text="x" * 10),  # 3 tokens (rounded up)
             types.Part(inline_data=types.Blob(data=b"a" * 1000, mime_type="audio/mp3")),  # 2
             types.Part(inline_data=types.Blob(data=b"i", mime_type="image/png")),  # 258
             types.Part(file_data=types.FileData(file_uri="https://y/v", mime_type="video/mp4")),  # unknown
             types.Part(file_data=types.FileData(file_uri="files/known", mime_type="video/mp4"))]
    assert estimate_tokens(parts, {"files/known": 5000}) == 3 + 2 + IMAGE_TOKENS + UNKNOWN_FILE_TOKENS + 10
    assert media_tokens("audio/wav", None) == UNKNOWN_FILE_TOKENS
    assert estimate_tokens([]) == 1
