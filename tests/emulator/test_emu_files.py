"""Files API through the real SDK: resumable upload, polling to ACTIVE, use, ownership, delete."""

from __future__ import annotations

import hashlib
import io
import time

import httpx2
import pytest
from emu_helpers import MODEL
from google.genai import errors, types


def _wait_active(client, name: str, timeout: float = 3.0) -> types.File:
    deadline = time.monotonic() + timeout
    while True:
        f = client.files.get(name=name)
        if f.state != types.FileState.PROCESSING or time.monotonic() > deadline:
            return f
        time.sleep(0.02)


def test_upload_path_poll_and_use(client, ctl, tmp_path):
    path = tmp_path / "sample.mp3"
    path.write_bytes(b"ID3" + b"\x00" * 1000)
    f = client.files.upload(file=str(path), config={"mime_type": "audio/mpeg", "display_name": "my clip"})
    assert f.state == types.FileState.PROCESSING
    assert f.uri.startswith(ctl.base_url + "/v1beta/files/")
    assert f.size_bytes == 1003 and f.mime_type == "audio/mpeg" and f.display_name == "my clip"
    assert f.expiration_time > f.create_time

    active = _wait_active(client, f.name)
    assert active.state == types.FileState.ACTIVE

    r = client.models.generate_content(model=MODEL, contents=["Transcribe this", active])
    assert "file audio/mpeg" in r.text
    entry = ctl.log()[-1]
    assert entry["parts"][1]["kind"] == "file" and entry["parts"][1]["size"] == 1003

    start = [e for e in ctl.log() if e["endpoint"] == "upload_start"][0]
    assert start["mime_type"] == "audio/mpeg" and start["declared_size"] == 1003
    stored = ctl.files()[0]
    assert stored["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert stored["source_name"] == "sample.mp3"


def test_use_before_active_is_failed_precondition(client, ctl):
    f = client.files.upload(file=io.BytesIO(b"v" * 500), config={"mime_type": "video/mp4"})
    part = types.Part(
        file_data=types.FileData(file_uri=f.uri, mime_type=f.mime_type),
        video_metadata=types.VideoMetadata(start_offset="1.5s", end_offset="10s", fps=2.0),
    )
    with pytest.raises(errors.ClientError) as ei:
        client.models.generate_content(model=MODEL, contents=[part, "What happens?"])
    file_id = f.name.split("/")[1]
    assert ei.value.code == 400 and ei.value.status == "FAILED_PRECONDITION"
    assert ei.value.message == f"The File {file_id} is not in an ACTIVE state and usage is not allowed."
    _wait_active(client, f.name)
    r = client.models.generate_content(model=MODEL, contents=[part, "What happens?"])
    assert r.text.endswith("[+file video/mp4]")
    assert ctl.log()[-1]["parts"][0]["video_metadata"] == {"start_offset": "1.5s", "end_offset": "10s", "fps": 2.0}


def test_other_project_and_unknown_files_are_403(make_client, ctl):
    ctl.configure(
        keys={
            "secret-a1": {"label": "A1", "project": "proj-a"},
            "secret-a2": {"label": "A2", "project": "proj-a"},
            "secret-b": {"label": "B", "project": "proj-b"},
        }
    )
    a1, a2, b = make_client("secret-a1"), make_client("secret-a2"), make_client("secret-b")
    f = a1.files.upload(file=io.BytesIO(b"abc"), config={"mime_type": "text/plain"})
    assert a2.files.get(name=f.name).state == types.FileState.ACTIVE  # same project: shared
    for call in (lambda: b.files.get(name=f.name), lambda: b.files.delete(name=f.name)):
        with pytest.raises(errors.ClientError) as ei:
            call()
        assert ei.value.code == 403 and ei.value.status == "PERMISSION_DENIED"
    with pytest.raises(errors.ClientError) as ei:
        b.models.generate_content(model=MODEL, contents=["read", f])
    assert ei.value.code == 403
    file_id = f.name.split("/")[1]
    assert ei.value.message == f"You do not have permission to access the File {file_id} or it may not exist."
    with pytest.raises(errors.ClientError) as ei:
        a1.files.get(name="files/doesnotexist")
    assert ei.value.code == 403
    a1.models.generate_content(model=MODEL, contents=["read", f])


def test_delete_and_list(client, ctl):
    names = [client.files.upload(file=io.BytesIO(b"x" * n), config={"mime_type": "text/plain"}).name for n in (1, 2, 3)]
    listed = list(client.files.list(config={"page_size": 2}))
    assert sorted(f.name for f in listed) == sorted(names)
    assert client.files.delete(name=names[0]) is not None
    with pytest.raises(errors.ClientError) as ei:
        client.files.get(name=names[0])
    assert ei.value.code == 403
    assert len(list(client.files.list())) == 2
    assert [e["endpoint"] for e in ctl.log()].count("files.list") >= 2


def test_chunked_upload_over_8_mib(client, ctl):
    data = bytes(range(256)) * (9 * 4096)  # 9 MiB
    f = client.files.upload(file=io.BytesIO(data), config={"mime_type": "video/mp4"})
    assert f.size_bytes == len(data)
    chunks = [e for e in ctl.log() if e["endpoint"] == "upload_chunk"]
    assert [(e["upload_command"], e["offset"], e["bytes_in"]) for e in chunks] == [
        ("upload", 0, 8 * 1024 * 1024),
        ("finalize, upload", 8 * 1024 * 1024, 1024 * 1024),
    ]
    assert all(e["status"] == 200 and e["key_label"] == chunks[0]["key_label"] for e in chunks)
    stored = ctl.files()[0]
    assert stored["sha256"] == hashlib.sha256(data).hexdigest() and stored["size"] == len(data)


def test_active_after_gets_and_seconds(client, ctl):
    ctl.configure(file_active_after_gets=3)
    f = client.files.upload(file=io.BytesIO(b"abc"), config={"mime_type": "text/plain"})
    states = [client.files.get(name=f.name).state for _ in range(3)]
    assert states == [types.FileState.PROCESSING, types.FileState.PROCESSING, types.FileState.ACTIVE]

    ctl.configure(file_active_after_gets=0, file_active_after_seconds=0.3)
    f = client.files.upload(file=io.BytesIO(b"abc"), config={"mime_type": "text/plain"})
    assert client.files.get(name=f.name).state == types.FileState.PROCESSING
    time.sleep(0.35)
    assert client.files.get(name=f.name).state == types.FileState.ACTIVE

    ctl.configure(file_active_after_gets=0, file_active_after_seconds=None)
    f = client.files.upload(file=io.BytesIO(b"abc"), config={"mime_type": "text/plain"})
    assert f.state == types.FileState.ACTIVE  # 0 GETs needed: ACTIVE at upload


def test_failed_processing(client, ctl):
    ctl.configure(file_fail_names=["broken clip"])
    f = client.files.upload(file=io.BytesIO(b"abc"), config={"mime_type": "audio/mpeg", "display_name": "broken clip"})
    got = _wait_active(client, f.name)
    assert got.state == types.FileState.FAILED
    assert got.error.message and got.error.code
    with pytest.raises(errors.ClientError) as ei:
        client.models.generate_content(model=MODEL, contents=["hear", got])
    assert ei.value.status == "FAILED_PRECONDITION"

    ctl.add_fault(action="file_failed", times=1)
    bad = client.files.upload(file=io.BytesIO(b"abc"), config={"mime_type": "audio/mpeg"})
    good = client.files.upload(file=io.BytesIO(b"abc"), config={"mime_type": "audio/mpeg"})
    assert _wait_active(client, bad.name).state == types.FileState.FAILED
    assert _wait_active(client, good.name).state == types.FileState.ACTIVE


def test_external_uris_are_accepted(client):
    part = types.Part(file_data=types.FileData(file_uri="https://www.youtube.com/watch?v=xyz", mime_type="video/mp4"))
    r = client.models.generate_content(model=MODEL, contents=[part, "Summarise the video"])
    assert "Summarise the video" in r.text


def test_chunk_errors_carry_upload_status(client, ctl):
    """A 500 on the byte upload must fail at once (the header stops the SDK's silent 1-2-4 s resends)."""
    ctl.add_fault(action="status", status=500, endpoint="upload_chunk", times=1)
    t0 = time.perf_counter()
    with pytest.raises(errors.ServerError) as ei:
        client.files.upload(file=io.BytesIO(b"abc"), config={"mime_type": "text/plain"})
    assert ei.value.code == 500
    assert time.perf_counter() - t0 < 0.9
    assert ei.value.response.headers["x-goog-upload-status"] == "final"


def test_upload_protocol_details(emu):
    """Raw protocol: absolute upload URL on our host, offsets checked, query command."""
    r = httpx2.post(
        f"{emu.url}/upload/v1beta/files",
        headers={
            "x-goog-api-key": "k",
            "X-Goog-Upload-Protocol": "resumable",
            "X-Goog-Upload-Command": "start",
            "X-Goog-Upload-Header-Content-Length": "6",
            "X-Goog-Upload-Header-Content-Type": "text/plain",
        },
        json={"file": {"displayName": "camel"}},
    )
    assert r.status_code == 200 and r.headers["x-goog-upload-status"] == "active"
    url = r.headers["x-goog-upload-url"]
    assert url.startswith(emu.url + "/upload/v1beta/files?upload_id=")
    r = httpx2.post(url, headers={"X-Goog-Upload-Command": "upload", "X-Goog-Upload-Offset": "0"}, content=b"abc")
    assert r.headers["x-goog-upload-status"] == "active"
    r = httpx2.post(url, headers={"X-Goog-Upload-Command": "query"})
    assert r.headers["x-goog-upload-size-received"] == "3"
    r = httpx2.post(
        url, headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "1"}, content=b"def"
    )
    assert r.status_code == 400 and r.headers["x-goog-upload-status"] == "final"
    r = httpx2.post(
        url, headers={"X-Goog-Upload-Command": "upload, finalize", "X-Goog-Upload-Offset": "3"}, content=b"def"
    )
    assert r.status_code == 200 and r.headers["x-goog-upload-status"] == "final"
    f = r.json()["file"]
    assert f["displayName"] == "camel" and f["sizeBytes"] == "6" and f["state"] == "PROCESSING"
