"""The configuration contract: environment, .env (never overriding), and the celeryconfig override file."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run_py(code: str, cwd, env_extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "CELERY_", "GEMINI_"))}
    env.update(env_extra or {})
    r = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_dotenv_is_loaded_but_never_overrides(tmp_path):
    (tmp_path / ".env").write_text("REDIS_URL=redis://from-dotenv:6379/0\nGEMINI_API_KEY_1=dotenv-secret-abcdefgh\n"
                                   "CELERY_RESULT_BACKEND=redis://backend-from-dotenv:6379/1\n")
    out = run_py("import json; from gemini_tasks.settings import load_settings as l; s = l(); "
                 "print(json.dumps([s.redis_url, s.broker_url, s.result_backend, list(s.key_names)]))",
                 tmp_path, {"REDIS_URL": "redis://from-env:6379/0"})
    assert out == ["redis://from-env:6379/0", "redis://from-env:6379/0", "redis://backend-from-dotenv:6379/1",
                   ["GEMINI_API_KEY_1"]]


def test_reliability_settings_and_operator_override(tmp_path):
    code = ("import json; from gemini_tasks.celery_app import app as a; c = a.conf; "
            "print(json.dumps([c.task_serializer, c.accept_content, c.task_acks_late, c.task_reject_on_worker_lost,"
            " c.worker_prefetch_multiplier, c.broker_transport_options['visibility_timeout'], c.task_time_limit,"
            " c.worker_send_task_events, c.task_send_sent_event, sorted(q.name for q in c.task_queues),"
            " c.result_expires, c.broker_url]))")
    out = run_py(code, tmp_path, {"REDIS_URL": "redis://r:1/0"})
    # time limit: 4 calls of the longer of the request timeout (120 s) and the Flex timeout (900 s), + uploads
    assert out[:10] == ["json", ["json"], True, True, 1, 25, 4260, True, True, ["batch", "interactive"]]
    assert run_py(code, tmp_path, {"REDIS_URL": "redis://r:1/0", "GEMINI_TASKS_FLEX_TIMEOUT": "60"})[6] == 1140
    # the visibility timeout is short: live workers refresh what they hold (worker/holding.py), so the time
    # limit (4 call timeouts + uploads) no longer has to fit inside it
    assert out[10] == 86400 and out[11] == "redis://r:1/0"
    (tmp_path / "celeryconfig.py").write_text("result_expires = 123\nworker_concurrency = 7\n")
    out = run_py(code, tmp_path, {"REDIS_URL": "redis://r:1/0"})
    assert out[10] == 123  # the top-level celeryconfig overrides the package defaults
