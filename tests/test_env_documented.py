"""Every environment variable is read in settings.py and documented (README / workers/README.md, .env.example).

The exceptions are named: key secrets are read by their (user-chosen) names where they are needed, and the
test stack's own variables live in gemini_tasks/testing/.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "gemini_tasks"
READS = re.compile(r"""(?:environ(?:\.get)?\(\s*|environ\[\s*|getenv\(\s*|_float\(\s*|_port\(\s*)["']([A-Z][A-Z0-9_]+)["']""")
#: read by name where a key secret is needed (the id is the variable name), never through settings
KEY_SECRETS = {"GEMINI_API_KEY"}
#: variables of the test stack (gemini_tasks/testing/), documented in the README's Development section
TEST_ONLY = {"GEMINI_TASKS_TEST_AMQP"}
#: other software's own variables, honoured as that software does (OpenSSL's trust store, as the SDK reads it)
THIRD_PARTY = {"SSL_CERT_FILE", "SSL_CERT_DIR"}


def reads(path: Path) -> set[str]:
    """Variables read (not assigned: ``os.environ["X"] = ...`` sets one for a child process)."""
    text = path.read_text()
    return {m.group(1) for m in READS.finditer(text) if not re.match(r"""["']\]\s*=[^=]""", text[m.end(1):])}


def test_the_package_reads_the_environment_only_in_settings():
    outside = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if path.name == "settings.py" or "emulator" in rel.parts or "testing" in rel.parts:
            continue
        found = reads(path) - KEY_SECRETS - THIRD_PARTY
        if found:
            outside[str(rel)] = sorted(found)
    assert outside == {}, f"read these through gemini_tasks.settings: {outside}"


def shell_vars(path: Path) -> set[str]:
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", path.read_text()))


def test_every_variable_is_documented():
    readme = (ROOT / "README.md").read_text()
    workers = (ROOT / "workers" / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    settings_vars = reads(PKG / "settings.py")
    compose_vars = shell_vars(ROOT / "docker-compose.yml")
    worker_vars = shell_vars(ROOT / "workers" / "entrypoint.sh") | shell_vars(ROOT / "workers" / "healthcheck.sh")
    assert {"REDIS_URL", "GEMINI_TASKS_METRICS_PORT", "GEMINI_TASKS_CELERY_CONFIG"} <= settings_vars
    missing_readme = sorted(v for v in settings_vars | compose_vars | TEST_ONLY if f"`{v}`" not in readme)
    assert missing_readme == [], f"not in README.md: {missing_readme}"
    missing_workers = sorted(v for v in worker_vars if v.startswith(("WORKER_", "HEALTHCHECK_"))
                             and f"`{v}`" not in workers)
    assert missing_workers == [], f"not in workers/README.md: {missing_workers}"
    missing_example = sorted(v for v in settings_vars | compose_vars if not re.search(rf"^#?\s*{v}=", example, re.MULTILINE))
    assert missing_example == [], f"not in .env.example: {missing_example}"
