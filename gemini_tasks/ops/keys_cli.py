"""``gemini-tasks keys test`` and ``gemini-tasks keys list`` (upstream 0.10's ``geminiparallel test`` / ``list``).

``test`` sends one probe task to the interactive queue; the worker that takes it calls the API once with each key
it holds and answers valid / invalid / blocked / exhausted (:mod:`gemini_tasks.worker.key_probe`). The secrets stay
on the worker. ``list`` shows the keys this machine's environment and ``.env`` define, masked.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

STYLES = {"valid": "green", "invalid": "red", "blocked": "red", "exhausted": "yellow", "error": "magenta",
          "not held": "dim"}


def mask(secret: str) -> str:
    """Upstream's mask: stars, then the last 4 characters (8 characters or fewer: all stars)."""
    if len(secret) <= 8:
        return "****"
    return f"{'*' * (len(secret) - 4)}...{secret[-4:]}"[-24:]


def _key_ids(keys_spec: str | None, pool: str | None) -> list[str]:
    from gemini_tasks.keys import KeyPool
    from gemini_tasks.keys.redis_conn import get_redis
    from gemini_tasks.settings import get_settings, key_env_names

    if keys_spec:
        names = [k.strip() for k in keys_spec.split(",") if k.strip()]
        bad = [n for n in names if not n.startswith("GEMINI_API_KEY")]
        if bad:
            raise click.BadParameter(f"key names look like GEMINI_API_KEY_1, got {', '.join(bad)}", param_hint="--keys")
        return names
    local = key_env_names()
    if local:
        return list(local)
    s = get_settings()
    return sorted(KeyPool(get_redis(s.keys_redis_url), pool or s.pool).registered_ids())


@click.command("test")
@click.option("--keys", "keys_spec", default=None,
              help="NAME,NAME (default: the GEMINI_API_KEY_* names here, else the pool's registered keys)")
@click.option("--pool", default=None, help="pool whose registered keys to test when none are named here")
@click.option("-m", "--model", default="gemini-2.5-flash", show_default=True, help="model of the probe call")
@click.option("--timeout", type=click.FloatRange(min=1), default=120.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON")
def keys_test(keys_spec: str | None, pool: str | None, model: str, timeout: float, as_json: bool) -> None:
    """Call the API once per key, from a worker that holds them: valid, invalid, blocked or exhausted."""
    from celery.exceptions import TimeoutError as CeleryTimeoutError

    from gemini_tasks.worker.key_probe import keys_probe

    ids = _key_ids(keys_spec, pool)
    if not ids:
        raise click.ClickException("no keys to test: name them with --keys, define GEMINI_API_KEY_* here, or start "
                                   "an application or worker that registers them")
    res = keys_probe.apply_async(args=[ids, model], queue="interactive", expires=timeout)
    try:
        answer: dict[str, Any] = res.get(timeout=timeout)
    except CeleryTimeoutError:
        res.revoke()
        raise click.ClickException(f"no worker answered within {timeout:g}s: is a worker consuming the "
                                   "'interactive' queue?") from None
    finally:
        res.forget()
    if as_json:
        click.echo(json.dumps(answer, indent=2))
    else:
        table = Table(title=f"keys tested by {answer['worker']} ({answer['model']})")
        for column in ("key", "status", "ms", "detail"):
            table.add_column(column)
        for key_id, row in answer["keys"].items():
            style = STYLES.get(row["status"], "")
            table.add_row(key_id, f"[{style}]{row['status']}[/]" if style else row["status"],
                          str(row.get("latency_ms", "")), row.get("detail", ""))
        Console().print(table)
        counts: dict[str, int] = {}
        for row in answer["keys"].values():
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        click.echo(", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    if not any(row["status"] == "valid" for row in answer["keys"].values()):
        sys.exit(1)


@click.command("list")
def keys_list() -> None:
    """The GEMINI_API_KEY_* keys this machine's environment and .env define, masked."""
    import os

    from gemini_tasks.settings import key_env_names, load_env_file

    load_env_file()
    names = key_env_names()
    if not names:
        click.echo("no GEMINI_API_KEY_* variables here (environment or .env)")
        return
    table = Table(title="API keys here")
    table.add_column("key")
    table.add_column("secret (masked)")
    for name in names:
        table.add_row(name, mask(os.environ.get(name, "")))
    Console().print(table)
    click.echo(f"{len(names)} key(s)")
