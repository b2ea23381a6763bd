"""Worker logs (issue 12 item 11), read from a real worker process's log at INFO.

One line per call (task id, key id, model, outcome, latency, tokens), no prompt, answer or metadata text
unless asked for (``GEMINI_TASKS_LOG_CONTENT=1``), no SDK "AFC is enabled" or httpx "HTTP Request" lines,
Celery's success line without the result, expected failures at WARNING without a traceback.
"""

from __future__ import annotations

import re


def _run(stack, marker):
    from gemini_tasks import GeminiParallelProcessor

    stack.control.add_fault(action="status", status=400, prompt_contains=f"{marker}-BAD")
    proc = GeminiParallelProcessor(stack.manager(), "gemini-2.5-flash", worker_cooldown_seconds=0,
                                   api_call_interval=0)
    prompts = [{"prompt": f"{marker}-OK private question one", "metadata": {"who": "private-meta-1"}},
               {"prompt": f"{marker}-OK private question two", "metadata": {"who": "private-meta-2"}},
               {"prompt": f"{marker}-BAD private question three", "metadata": {"who": "private-meta-3"}}]
    results = proc.process_prompts(prompts, timeout=60, progress=False)
    assert [e is None for _, _, e in results] == [True, True, False]
    assert "persistent" in results[2][2].lower()
    return results


def test_one_line_per_call_and_no_user_content(stack):
    worker = stack.worker(concurrency=2)
    _run(stack, "LOGA")
    logs = worker.log_path.read_text(errors="replace")
    assert "private question" not in logs and "private-meta" not in logs, logs[-3000:]
    assert "AFC is enabled" not in logs and "HTTP Request:" not in logs
    assert "Traceback" not in logs and "raised unexpected" not in logs
    calls = [line for line in logs.splitlines() if " call task=" in line]
    assert len(calls) == 3, calls
    ok = [line for line in calls if "outcome=success" in line]
    bad = [line for line in calls if "outcome=persistent" in line]
    assert len(ok) == 2 and len(bad) == 1
    assert all("INFO" in line for line in ok) and "WARNING" in bad[0]
    for line in calls:
        assert re.search(r"key=GEMINI_API_KEY_C\d+ model=gemini-2\.5-flash outcome=\w+ latency=\d+\.\d+s", line), line
    assert all(re.search(r"tokens=\d+/\d+", line) for line in ok)
    worker.stop()
    stack.workers.remove(worker)


def test_content_is_logged_only_when_asked_for(stack):
    worker = stack.worker(concurrency=2, GEMINI_TASKS_LOG_CONTENT="1")
    _run(stack, "LOGB")
    logs = worker.log_path.read_text(errors="replace")
    calls = [line for line in logs.splitlines() if " call task=" in line and "outcome=success" in line]
    assert len(calls) == 2 and all("private question" in line for line in calls), calls
    worker.stop()
    stack.workers.remove(worker)
