"""The package's layers import downwards only (docs/architecture.md): no layer imports one above it or beside it.

Every ``import`` in gemini_tasks/, including the ones inside functions, is read with ``ast``; a module may import
its own part of the package or a part of a lower rank. ``client`` and ``worker`` share a rank: they exchange
messages (:mod:`gemini_tasks.messages`) and never import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gemini_tasks"

#: part of the package -> rank; a part may import parts of a lower rank only
RANKS = {
    "settings": 0,
    "transport": 0,  # broker settings by URL, kombu's Redis transport adapted, connection pool sizes
    "emulator": 0,
    "gemini": 1,
    "keys": 1,
    "celeryconfig": 2,
    "messages": 2,
    "celery_app": 3,
    "client": 4,
    "worker": 4,
    "testing": 5,
    "__init__": 6,  # the public names (``from gemini_tasks import GeminiParallelProcessor``)
    "ops": 7,
    "__main__": 7,
}

#: Upward imports that exist today and are to be removed (a ratchet: no new one may be added). Each says why
#: it is wrong and where it belongs. Empty: keep it so.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _part(module: str) -> str:
    """``gemini_tasks.keys.pool`` -> ``keys``; ``gemini_tasks`` and its public names -> ``__init__``."""
    pieces = module.split(".")
    if len(pieces) > 1 and ((PACKAGE / pieces[1]).is_dir() or (PACKAGE / f"{pieces[1]}.py").is_file()):
        return pieces[1]
    return "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every gemini_tasks import in a file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # "from gemini_tasks import x" may name a submodule
            found += [(node.lineno, f"{target}.{a.name}" if target == "gemini_tasks" else target) for a in node.names]
    return [(line, name) for line, name in found if name == "gemini_tasks" or name.startswith("gemini_tasks.")]


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_part_has_a_rank():
    parts = {_part(_module_name(p)) for p in _sources()}
    assert parts <= set(RANKS), f"give these parts of gemini_tasks a rank in RANKS: {sorted(parts - set(RANKS))}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_point_down(path):
    here = _part(_module_name(path))
    rel = str(path.relative_to(PACKAGE.parent))
    upward = [f"line {line}: {name} ({_part(name)}, rank {RANKS.get(_part(name))})"
              for line, name in _imports(path)
              if _part(name) != here and RANKS.get(_part(name), 99) >= RANKS[here] and (rel, name) not in KNOWN_UPWARD]
    assert not upward, f"{here} (rank {RANKS[here]}) imports a part at its own rank or above:\n" + "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path):
    """The checker itself: a client module importing the worker is caught (relative and absolute forms)."""
    fake = PACKAGE / "client" / "processors.py"
    lines = {name for _, name in _imports(fake)}
    assert "gemini_tasks.messages" in lines  # absolute imports are read
    rel = PACKAGE / "gemini" / "errors.py"
    assert "gemini_tasks.gemini.redaction" in {name for _, name in _imports(rel)}  # relative ones resolved
    assert _part("gemini_tasks.worker.execution") == "worker" and RANKS["worker"] >= RANKS["client"]


def _run(code: str) -> object:
    """The literal a fresh interpreter prints after running ``code`` (which ends with ``print(...)``)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(PACKAGE.parent)).stdout.strip()
    return ast.literal_eval(out.splitlines()[-1])


def _loaded(imports: str, prefix: str = "gemini_tasks.worker") -> set[str]:
    """The modules under ``prefix`` that a fresh interpreter has loaded after running ``imports``."""
    return set(_run(f"import sys; {imports}; print(sorted(m for m in sys.modules if m.startswith({prefix!r})))"))


def test_a_client_process_loads_no_worker_code():
    """Importing the Celery app, the client side and the public names loads no worker module at all: tasks are
    sent by name, and a worker loads its own code through the app's ``include``."""
    assert _loaded("import gemini_tasks.celery_app") == set()
    client = _loaded("import gemini_tasks.client.processors, gemini_tasks.client.tts_processor, "
                     "gemini_tasks.client.aio, gemini_tasks.client.images, gemini_tasks.client.token_stream, "
                     "gemini_tasks.client.batch_api; from gemini_tasks import GeminiParallelProcessor, "
                     "GeminiStreamingProcessor, GeminiTTSProcessor")
    assert client == set(), f"the client side imported worker modules: {sorted(client)}"


def test_a_worker_registers_its_start_up_through_the_apps_include():
    """What Celery does first when it builds a worker (``loader.init_worker`` imports the ``include``d modules,
    before ``worker_init`` and before the consumer blueprint) puts the worker's consumer steps on the app; the
    app alone has none of them. (tests/capacity and tests/fleet check that a real worker runs them.)"""
    steps = "sorted(getattr(s, '__name__', str(s)) for s in c.app.steps['consumer'])"
    before = _run(f"import gemini_tasks.celery_app as c; print({steps})")
    after = _run(f"import gemini_tasks.celery_app as c; c.app.loader.init_worker(); print({steps})")
    assert before == [] and after == ["BatchedEvents", "HoldRefresh"], (before, after)
    # the app's own include, in a fresh process: an in-process worker built earlier in this process (tests/
    # integration's) rewrites app.conf.include as an unordered set (Celery's WorkController.setup_includes)
    assert _run("import gemini_tasks.celery_app as c; print(list(c.app.conf.include))")[0] == "gemini_tasks.worker.startup"
