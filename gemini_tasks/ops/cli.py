"""The ``gemini-tasks`` command (click): demo, worker, submit/collect, keys, tts, emulator, metrics.

Imports of Celery and the app are deferred to the commands, so ``demo`` can set up its environment (a
private Redis, the emulator) before the Celery app reads its configuration.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(stderr=True, soft_wrap=True)  # messages stay one line each, whatever the width
log = logging.getLogger("gemini_tasks.ops.cli")


def _reload_settings() -> None:
    from gemini_tasks.settings import get_settings

    get_settings.cache_clear()


def _point_app_at(redis_url: str) -> None:
    """Make the (possibly already imported) Celery app use ``redis_url`` for broker and results."""
    from gemini_tasks.celery_app import app
    from gemini_tasks.settings import get_settings

    s = get_settings()  # re-read after the demo set REDIS_URL (CELERY_* still win, as everywhere)
    app.conf.update(broker_url=s.broker_url if s.redis_url == redis_url else redis_url,
                    result_backend=s.result_backend if s.redis_url == redis_url else redis_url)


def keys_table(summary: dict[str, dict[str, Any]], title: str = "API keys") -> Any:
    """The key pool as tables: state, cooldown left, leases, counts; then projects and lease holders, if any
    (ids only, never secrets).

    Key ids and states are never wrapped (an id cut in two cannot be copied into ``--reset``): the main table
    fits 80 columns with the longest state (``TEMPORARILY_EXHAUSTED``); projects and lease holders, which can
    be long, get a table of their own.
    """
    from rich import box
    from rich.console import Group

    colours = {"AVAILABLE": "green", "COOLDOWN": "yellow", "TEMPORARILY_EXHAUSTED": "dark_orange",
               "FULLY_EXHAUSTED": "red", "FAILED_INIT": "bold red"}
    table = Table(title=title, caption="type: free or paid; 429s: in a row / in all", caption_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)
    table.add_column("key id", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("state", no_wrap=True)
    for col in ("free in", "leases", "calls", "429s"):
        table.add_column(col, justify="right", no_wrap=True)
    extra = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)
    extra.add_column("key id", no_wrap=True)
    extra.add_column("project", overflow="fold")
    extra.add_column("lease holder", overflow="fold")
    who = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, show_edge=False)
    who.add_column("key id", no_wrap=True)
    who.add_column("settings", no_wrap=True)
    who.add_column("set by", overflow="fold")
    for key_id, s in summary.items():
        st = s["status"]
        wait = s.get("available_in_seconds") or 0
        table.add_row(escape(key_id), escape(str(s["category"])), f"[{colours.get(st, 'white')}]{escape(st)}[/]",
                      f"{wait:.1f}s" if wait else "-", str(s.get("active_leases", 0)), str(s.get("admissions", 0)),
                      f"{s['exhausted_count']}/{s['total_exhausted_count']}")
        project = s.get("project") if (s.get("project") or key_id) != key_id else None
        if project or s.get("assigned_worker"):
            extra.add_row(escape(key_id), escape(str(project or "-")), escape(str(s.get("assigned_worker") or "-")))
        if s.get("configured_by"):  # who set this key's settings (explicit, or the defaults of a manager/worker)
            who.add_row(escape(key_id), escape(str(s.get("settings_source") or "explicit")),
                        escape(str(s["configured_by"])))
    parts = [t for t in (table, extra, who) if t is table or t.row_count]
    return Group(*parts) if len(parts) > 1 else table


def mask_url(url: str) -> str:
    """A URL safe to print: its password replaced by ``**`` (kombu's sanitizer, as Celery prints URLs)."""
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))


def _redis_url_for_cli() -> str:
    from gemini_tasks.settings import get_settings

    return get_settings().keys_redis_url


def _check_redis(*urls: str) -> None:
    """Fail with one clear line (the URL, password masked) when a Redis the command needs is unreachable."""
    import redis

    from gemini_tasks.settings import get_settings

    s = get_settings()
    wanted = list(urls) or [s.keys_redis_url]
    wanted += [u for u in (s.broker_url, s.result_backend) if u.startswith(("redis://", "rediss://"))]
    for url in dict.fromkeys(wanted):
        if not url.startswith(("redis://", "rediss://", "unix://")):
            continue
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3, retry_on_timeout=False)
        try:
            client.ping()
        except redis.AuthenticationError as exc:
            raise click.ClickException(f"Redis at {mask_url(url)} refused the credentials ({exc})") from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise click.ClickException(f"cannot reach Redis at {mask_url(url)} ({_one_line(exc)}); start it or "
                                       "set REDIS_URL") from None
        finally:
            client.close()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 600 else text[:597] + "..."


class _Main(click.Group):
    """The command group: every error becomes one line on stderr and a non-zero exit, never a traceback.

    ``GEMINI_TASKS_DEBUG=1`` lets unexpected exceptions through with their traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        import redis

        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            console.print("interrupted: run the same command again to resume")
            sys.exit(130)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise click.ClickException(f"cannot reach Redis at {mask_url(_redis_url_for_cli())} "
                                       f"({_one_line(exc)})") from None
        except Exception as exc:
            from gemini_tasks.settings import get_settings

            if get_settings().debug:
                raise
            from gemini_tasks.keys.pool import KeyManagerError

            if isinstance(exc, (ValueError, LookupError, KeyManagerError, TypeError)):
                raise click.ClickException(_one_line(exc)) from None
            raise click.ClickException(f"{type(exc).__name__}: {_one_line(exc)} (GEMINI_TASKS_DEBUG=1 shows the "
                                       "traceback)") from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gemini-tasks")
def main() -> None:
    """Gemini generation and text-to-speech on a Celery fleet sharing one Redis key pool."""


# --------------------------------------------------------------------------------------------- worker
#: Per pool: (concurrency, prefetch multiplier), as workers/entrypoint.sh sets them (measured in workers/README.md:
#: 32 threads cost ~109 MiB; gevent stalls with prefetch 1; a prefork child costs ~68 MiB, so 8 children, not 32).
POOL_DEFAULTS: dict[str, tuple[int, int]] = {"threads": (32, 1), "gevent": (64, 4), "prefork": (8, 1), "solo": (1, 1)}


def split_queues(text: str) -> str:
    """``"batch, interactive"`` -> ``"batch,interactive"`` (never a queue named ``" interactive"``)."""
    names = [q.strip() for q in text.split(",") if q.strip()]
    if not names:
        raise click.BadParameter("name at least one queue", param_hint="-Q/--queues")
    return ",".join(dict.fromkeys(names))


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option("-Q", "--queues", default="interactive,batch", show_default=True, help="queues to consume")
@click.option("-P", "--pool", default="threads", show_default=True,
              type=click.Choice(sorted(POOL_DEFAULTS)), help="Celery pool (see workers/README.md)")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=None,
              help="calls in flight per worker  [default: threads 32, gevent 64, prefork 8, solo 1]")
@click.option("--prefetch-multiplier", type=click.IntRange(min=1), default=None,
              help="messages reserved per slot  [default: gevent 4, others 1]")
@click.option("-n", "--name", default=None, help="node name  [default: <first queue>-<6 hex>@%h]")
@click.option("-l", "--loglevel", default="INFO", show_default=True)
@click.option("--dry-run", is_flag=True, help="print the celery command instead of running it")
@click.pass_context
def worker(ctx: click.Context, queues: str, pool: str, concurrency: int | None, prefetch_multiplier: int | None,
           name: str | None, loglevel: str, dry_run: bool) -> None:
    """Run a worker (``celery -A gemini_tasks worker`` with sane defaults; extra args pass through)."""
    import shlex

    queues = split_queues(queues)
    default_c, default_prefetch = POOL_DEFAULTS[pool]
    name = name or f"{queues.split(',')[0]}-{secrets.token_hex(3)}@%h"
    args = [sys.executable, "-m", "celery", "-A", "gemini_tasks", "worker", "-Q", queues, "-P", pool,
            "-c", str(concurrency or default_c), "--prefetch-multiplier", str(prefetch_multiplier or default_prefetch),
            "-n", name, "-l", loglevel, "-E", *ctx.args]
    if dry_run:
        click.echo(shlex.join(args))
        return
    os.execv(sys.executable, args)


# --------------------------------------------------------------------------------------------- keys
@main.group(invoke_without_command=True)
@click.option("--pool", default=None, help="pool name (default GEMINI_TASKS_POOL or 'default')")
@click.option("--json", "as_json", is_flag=True, help="print the status as JSON")
@click.option("--reset", "reset_ids", multiple=True, help="put a key back to AVAILABLE (e.g. after fixing it)")
@click.option("--watch", type=click.FloatRange(min=0.1), default=None,
              help="refresh the table in place every N seconds (Ctrl-C to stop)")
@click.pass_context
def keys(ctx: click.Context, pool: str | None, as_json: bool, reset_ids: tuple[str, ...],
         watch: float | None) -> None:
    """The key pool's state: status, time until free, leases, exhaustion counts.

    Subcommands: `keys test` (one API call per key, from a worker), `keys list` (the keys here, masked).
    """
    if ctx.invoked_subcommand is not None:
        return
    from gemini_tasks.keys import KeyPool, summarize
    from gemini_tasks.keys.redis_conn import get_redis
    from gemini_tasks.settings import get_settings

    s = get_settings()
    _check_redis(s.keys_redis_url)
    kp = KeyPool(get_redis(s.keys_redis_url), pool or s.pool)
    for key_id in reset_ids:
        kp.reset_key(key_id)
        console.print(f"{key_id}: reset to AVAILABLE")

    def render() -> Any:
        summary = summarize(kp.status())
        if not summary:
            return (f"pool {kp.pool!r} has no registered keys (start an application that builds an "
                    "AdvancedApiKeyManager, or a worker)")
        return keys_table(summary, f"pool {kp.pool!r}")

    if as_json:
        click.echo(json.dumps(summarize(kp.status()), indent=2))
        return
    out = Console()
    if watch is None:
        out.print(render())
        return
    from rich.live import Live

    try:
        with Live(render(), console=out, auto_refresh=False, transient=False) as live:
            while True:
                time.sleep(watch)
                live.update(render(), refresh=True)
    except KeyboardInterrupt:
        return


# --------------------------------------------------------------------------------------------- submit / collect
def _make_manager(keys_spec: str, paid: str | None, pool: str | None):
    from gemini_tasks.keys import AdvancedApiKeyManager

    spec: Any = keys_spec
    if "," in keys_spec:
        spec = [k.strip() for k in keys_spec.split(",") if k.strip()]
    elif keys_spec.isdigit():
        spec = int(keys_spec)
    paid_spec: Any = None if not paid else ("all" if paid == "all" else [p.strip() for p in paid.split(",")])
    return AdvancedApiKeyManager(spec, paid_keys=paid_spec, pool=pool)


from gemini_tasks.ops.keys_cli import keys_list, keys_test  # noqa: E402

keys.add_command(keys_test)
keys.add_command(keys_list)


def _sort_output(output: Path) -> None:
    """Sort the results file by input line, once, at the end (rows stay as written)."""
    rows = [json.loads(line) for line in output.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows.sort(key=lambda r: (not isinstance(r.get("line"), int), r.get("line") if isinstance(r.get("line"), int)
                             else 0))
    tmp = output.with_suffix(output.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(output)


@main.command()
@click.argument("prompts", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="results file (JSONL); re-running skips prompts already answered there")
@click.option("-m", "--model", default="gemini-2.5-flash", show_default=True)
@click.option("--keys", "keys_spec", default="all", show_default=True, help="'all', N, '1-15' or NAME,NAME")
@click.option("--paid", default=None, help="'all' or NAME,NAME")
@click.option("--pool", default=None)
@click.option("--max-workers", default=8, show_default=True, help="calls in flight for this batch, fleet-wide")
@click.option("--api-call-interval", default=0.0, show_default=True, help="seconds between any two calls")
@click.option("--worker-cooldown", default=0.0, show_default=True, help="seconds a slot rests after a call")
@click.option("--tier", default="standard", show_default=True,
              type=click.Choice(["standard", "flex", "priority", "batch"], case_sensitive=False),
              help="service tier: flex and batch cost half, priority ~1.8x; a prompt's own service_tier wins")
@click.option("--flex-fallback-after", type=float, default=None,
              help="seconds after which a Flex prompt that keeps being shed is sent at standard tier")
@click.option("--batch-poll-interval", type=float, default=30.0, show_default=True,
              help="--tier batch: seconds between two polls of a Batch API job")
@click.option("--progress/--no-progress", default=True, show_default=True)
def submit(prompts: Path, output: Path, model: str, keys_spec: str, paid: str | None, pool: str | None,
           max_workers: int, api_call_interval: float, worker_cooldown: float, tier: str,
           flex_fallback_after: float | None, batch_poll_interval: float, progress: bool) -> None:
    """Run every prompt of a JSONL file on the fleet and write results (JSONL, in input order).

    Each line is a prompt dict as the Python API takes it (prompt, metadata, media paths/URLs,
    generation_config), or a bare string. Each result row is {"line", "metadata", "response", "error"},
    "line" being the prompt's line in PROMPTS. Interrupt and re-run at will: answered prompts are skipped,
    prompts already submitted are collected rather than sent again, and prompts Redis lost are sent again.
    """
    from gemini_tasks.ops import jsonl_batch as jb

    try:
        items = jb.read_prompts(prompts)
    except jb.BatchFileError as exc:
        raise click.UsageError(str(exc)) from None
    state = jb.StateLog.for_output(output)
    done = jb.done_lines(output)
    total = len(items)
    if all(it.line in done for it in items):
        if output.exists():
            _sort_output(output)
        state.remove()
        console.print(f"{total} prompt(s): {total} done, all already answered in {output}; nothing to do")
        return
    _check_redis(_redis_url_for_cli())
    from gemini_tasks.celery_app import app
    from gemini_tasks.client.jobs import build_generate_job
    from gemini_tasks.messages import Job
    from gemini_tasks.client.processors import GeminiParallelProcessor

    tier_state = output.with_name(output.name + ".tierbatch.json")
    if tier_state.exists():  # a batch-tier submission of an earlier run: collect it, never send it again
        done = _collect_earlier_tier_batch(tier_state, output, items, done, model, progress)
    plan = jb.plan_run(items, done, state.read(), app.backend)
    console.print(f"{total} prompt(s): {len(done)} done, {len(plan.waiting)} still in flight from an earlier run, "
                  f"{len(plan.new) + len(plan.lost)} to submit")
    if plan.lost:
        console.print(f"[yellow]{len(plan.lost)} prompt(s) submitted earlier are no longer in Redis (restarted "
                      "without persistence, flushed, or the results expired): submitting them again[/]")
    by_line = {it.line: it for it in items}
    send = [(line, tid) for line, tid in plan.lost] + [(line, str(uuid.uuid4())) for line in plan.new]
    send.sort()
    processor = None
    if send:
        processor = GeminiParallelProcessor(_make_manager(keys_spec, paid, pool), model,
                                            worker_cooldown_seconds=worker_cooldown,
                                            api_call_interval=api_call_interval, max_workers=max_workers,
                                            service_tier=tier.lower(), flex_fallback_after=flex_fallback_after,
                                            batch_options={"poll_interval": batch_poll_interval})
        # every prompt validated before anything is enqueued
        jobs: list[tuple[int, str, Job]] = [
            (line, tid, build_generate_job(by_line[line].prompt, model=processor.model_name,
                                           manager=processor.key_manager, policy=processor.policy,
                                           where=f"{prompts}:{line}")) for line, tid in send]
        if any(job.tier == "batch" for _, _, job in jobs) and not plan.waiting:
            _submit_tier_batch(processor, [line for line, _, _ in jobs], by_line, tier_state, output, done, model,
                               progress)
            state.remove()
            return
    pending = dict(plan.waiting)
    task_group = dict(plan.task_group)
    from gemini_tasks.gemini.pricing import UsageSummary

    writer = _ResultWriter(output, by_line, done, UsageSummary(model))
    try:
        if send:
            assert processor is not None
            sent = [0]

            def on_chunk(n: int) -> None:
                sent[0] += n

            try:
                task_group.update(jb.publish(jobs, task=processor._task(), queue=processor.queue, state=state,
                                             app=app, on_chunk=on_chunk))
            finally:
                pending.update({tid: line for line, tid, _ in jobs[:sent[0]]})
            console.print(f"submitted {len(send)} prompt(s)")
        writer.wait(pending, task_group, app, progress)
    except KeyboardInterrupt:
        writer.close()
        console.print(f"interrupted: {len(writer.done)} of {total} answered in {output}; prompts already submitted "
                      "keep running on the fleet. Re-run the same command to finish (nothing is sent twice).")
        sys.exit(130)
    except jb.BatchLost as exc:
        writer.close()
        raise click.ClickException(f"{exc}; {len(writer.done)} of {total} answered in {output}. Re-run the same "
                                   "command: it submits the lost prompts again.") from None
    writer.close()
    _sort_output(output)
    state.remove()
    console.print(f"wrote {output} ({total} result(s), {writer.errors} error(s) in this run)")
    if writer.summary.requests:
        console.print(f"usage this run: {writer.summary.line()}")


def _collect_earlier_tier_batch(tier_state: Path, output: Path, items: list[Any], done: set[int], model: str,
                                progress: bool) -> set[int]:
    """Collect the batch-tier submission an earlier run saved in ``tier_state`` (never send it again); returns
    the lines answered now."""
    from gemini_tasks.ops import jsonl_batch as jb

    saved = json.loads(tier_state.read_text())
    console.print(f"collecting batch {saved['group']} of an earlier run")
    summary = _collect_tier_batch(saved, output, {it.line: it for it in items}, done, model, progress)
    tier_state.unlink()
    if summary.requests:
        console.print(f"usage of that batch: {summary.line()}")
    return jb.done_lines(output)


def _submit_tier_batch(processor: Any, lines: list[int], by_line: dict[int, Any], tier_state: Path, output: Path,
                       done: set[int], model: str, progress: bool) -> None:
    """Batch tier: one Gemini Batch API submission (client/batch_api.py), its group id saved in ``tier_state``
    so that an interrupted run collects it instead of sending it again; then wait and write the results."""
    handle = processor.submit([by_line[line].prompt for line in lines])
    saved = {"group": handle.group_id, "lines": lines}
    tier_state.write_text(json.dumps(saved))
    console.print(f"submitted as batch {handle.group_id}")
    summary = _collect_tier_batch(saved, output, by_line, done, model, progress)
    tier_state.unlink()
    _sort_output(output)
    console.print(f"wrote {output} ({len(by_line)} result(s))")
    if summary.requests:
        console.print(f"usage this run: {summary.line()}")


def _collect_tier_batch(saved: dict[str, Any], output: Path, by_line: dict[int, Any], done: set[int], model: str,
                        show_progress: bool) -> Any:
    """Wait for a batch-tier submission and append its rows; returns its usage summary."""
    from gemini_tasks.client import batch_api
    from gemini_tasks.gemini.pricing import UsageSummary

    writer = _ResultWriter(output, by_line, done, UsageSummary(model))
    bar = None
    if show_progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        bar = Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console)
        bar.start()
        bar_id = bar.add_task("batch jobs", total=len(saved["lines"]))
    try:
        _, values = batch_api.collect_raw(
            saved["group"], on_progress=(lambda n, total: bar.update(bar_id, completed=n)) if bar else None)
    finally:
        if bar is not None:
            bar.stop()
    for line, value in zip(saved["lines"], values):
        writer.write(line, value)
    writer.close()
    return writer.summary


class _ResultWriter:
    """Appends one row per answer to the output file; each input line is written once."""

    def __init__(self, output: Path, by_line: dict[int, Any], done: set[int], summary: Any) -> None:
        self.by_line = by_line
        self.summary = summary  # usage and estimated cost by tier (gemini/pricing.py)
        self.done = set(done)
        self.errors = 0
        self.out = output.open("a", encoding="utf-8")

    def write(self, line: int, value: Any) -> None:
        from gemini_tasks.client.processors import to_result_tuple

        if line in self.done:
            return  # a copy answered twice (a chunk sent again after a loss that was not one): keep the first
        if isinstance(value, dict) and value.get("ok"):
            self.summary.add(value.get("usage"), value.get("tier") or "standard", shed=int(value.get("shed") or 0),
                             fallback=bool(value.get("fallback")), model=value.get("model"))
        item = self.by_line.get(line)
        metadata = item.metadata if item is not None else {}
        _, response, error = to_result_tuple(value, metadata)
        if hasattr(response, "model_dump"):
            response = response.model_dump(mode="json", exclude_none=True)
        self.errors += error is not None
        self.out.write(json.dumps({"line": line, "metadata": metadata, "response": response, "error": error}) + "\n")
        self.out.flush()
        self.done.add(line)

    def wait(self, pending: dict[str, int], task_group: dict[str, str], app: Any, show_progress: bool) -> None:
        from gemini_tasks.client import collect
        from gemini_tasks.ops import jsonl_batch as jb

        if not pending:
            return
        bar = None
        if show_progress:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            bar = Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                           TimeRemainingColumn(), console=console)
            bar.start()
            bar_id = bar.add_task("results", total=len(pending))

        def on_result(task_id: str, value: Any) -> None:
            line = pending.pop(task_id, None)
            if line is not None:
                self.write(line, value)
            if bar is not None:
                bar.advance(bar_id)

        lost_check = jb.lost_check(app.backend, task_group, pending)
        try:
            collect.wait_all(app, list(pending), on_result, on_interval=lost_check)
        finally:
            if bar is not None:
                bar.stop()

    def close(self) -> None:
        self.out.close()


@main.command()
@click.argument("group_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="write JSONL here instead of standard output")
@click.option("--timeout", type=float, default=None)
def collect(group_id: str, output: Path | None, timeout: float | None) -> None:
    """Wait for a submitted batch (by its group id) and print its results in input order."""
    from gemini_tasks.client.processors import GeminiParallelProcessor

    _check_redis()
    processor = GeminiParallelProcessor.__new__(GeminiParallelProcessor)  # collecting needs no key pool
    try:
        rows = processor.collect(group_id, timeout=timeout, progress=sys.stderr.isatty())
    except KeyboardInterrupt:
        console.print(f"interrupted: the batch keeps running on the fleet; `gemini-tasks collect {group_id}` "
                      "collects it later (results are kept 24 h)")
        sys.exit(130)
    lines = []
    for meta, response, error in rows:
        if hasattr(response, "model_dump"):
            response = response.model_dump(mode="json", exclude_none=True)
        lines.append(json.dumps({"metadata": meta, "response": response, "error": error}))
    text = "\n".join(lines) + ("\n" if lines else "")
    if output:
        output.write_text(text)
    else:
        click.echo(text, nl=False)


# --------------------------------------------------------------------------------------------- tts
@main.command()
@click.argument("text")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="WAV file to write")
@click.option("--voice", default="Kore", show_default=True)
@click.option("--style", default=None, help="style prompt, e.g. 'Say cheerfully'")
@click.option("--model", default="flash", show_default=True, help="'flash', 'pro' or a model id")
@click.option("--keys", "keys_spec", default="all", show_default=True)
def tts(text: str, output: str, voice: str, style: str | None, model: str, keys_spec: str) -> None:
    """Speak TEXT with one of the 30 voices and write a WAV file."""
    from gemini_tasks.client.tts_processor import GeminiTTSProcessor

    _check_redis()
    proc = GeminiTTSProcessor(_make_manager(keys_spec, None, None), model=model, default_voice=voice)
    audio = proc.generate_speech(text, voice=voice, style_prompt=style, output_file=output)
    if audio is None:
        raise click.ClickException(f"TTS failed: {proc.last_error}")
    console.print(f"wrote {output} ({len(audio)} bytes of PCM)")


# --------------------------------------------------------------------------------------------- metrics
def _add_metrics_command() -> None:
    from gemini_tasks.ops.metrics import metrics_command

    main.add_command(metrics_command, "metrics")  # one command, one meaning: python -m gemini_tasks.ops.metrics


_add_metrics_command()


def _add_emulator_command() -> None:
    from gemini_tasks.emulator.cli import emulator

    main.add_command(emulator, "emulator")


_add_emulator_command()


# --------------------------------------------------------------------------------------------- demo
DEMO_PROMPTS = [
    "What is the capital of France?",
    "Explain quantum computing in simple terms.",
    "Give three uses of a Redis sorted set.",
    "Why do Celery tasks need to be idempotent with acks_late?",
    "Summarise the plot of Hamlet in one sentence.",
    "What is a token bucket?",
]


@main.command()
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="where to write the demo WAV file")
def demo(output_dir: Path) -> None:
    """Run the whole path on this machine with nothing configured.

    Uses REDIS_URL if set, else starts a private redis-server; uses your GEMINI_API_KEY_* if set, else
    starts the local Gemini emulator with demo keys. Starts a worker, submits a batch, a streaming request
    and a TTS request, shows results and the key table, and stops everything it started.
    """
    from gemini_tasks.settings import key_env_names, load_env_file

    load_env_file()
    with ExitStack() as stack:
        from gemini_tasks.settings import get_settings

        _reload_settings()
        if get_settings().redis_configured:
            redis_url = get_settings().redis_url
            console.print(f"using Redis at REDIS_URL ({mask_url(redis_url)})")
        else:
            from gemini_tasks.testing.local_redis import RedisServer

            server = stack.enter_context(RedisServer())
            redis_url = server.url
            os.environ["REDIS_URL"] = redis_url
            console.print(f"started a private redis-server on port {server.port} "
                          f"(pid {server.proc.pid if server.proc else '?'})")
        demo_keys = not key_env_names()
        if demo_keys:
            from gemini_tasks.emulator.runner import EmulatorProcess

            emu = stack.enter_context(EmulatorProcess())
            os.environ["GOOGLE_GEMINI_BASE_URL"] = str(emu.url)
            for i in range(1, 4):
                os.environ[f"GEMINI_API_KEY_{i}"] = f"demo-{secrets.token_hex(12)}"
            console.print(f"no GEMINI_API_KEY_* set: started the Gemini emulator at {emu.url} (pid {emu.pid}) "
                          "with 3 demo keys")
        else:
            console.print(f"using your keys: {', '.join(key_env_names())}")
        _reload_settings()
        _point_app_at(redis_url)
        from gemini_tasks.testing.local_fleet import WorkerProcess

        t0 = time.monotonic()
        w = stack.enter_context(WorkerProcess(dict(os.environ), concurrency=8))
        from celery.utils.nodenames import default_nodename, host_format

        console.print(f"worker {host_format(default_nodename(w.name))} ready in {time.monotonic() - t0:.1f}s "
                      f"(pid {w.pid})")
        _run_demo(output_dir, demo_keys)
        console.print("stopping what the demo started ...")
    console.print("[green]demo finished[/]")


def _run_demo(output_dir: Path, demo_keys: bool) -> None:
    from gemini_tasks import (
        AdvancedApiKeyManager,
        GeminiParallelProcessor,
        GeminiStreamingProcessor,
    )
    from gemini_tasks.client.tts_processor import GeminiTTSProcessor

    pool = f"demo-{secrets.token_hex(4)}"
    manager = AdvancedApiKeyManager("all", paid_keys=["GEMINI_API_KEY_1"] if demo_keys else None, pool=pool,
                                    key_settings={"free": {"key_cooldown_seconds": 2}})
    batch = GeminiParallelProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0.1,
                                    max_workers=4)
    prompts = [{"prompt": p, "metadata": {"task_id": f"demo_{i}"}} for i, p in enumerate(DEMO_PROMPTS)]
    t0 = time.monotonic()
    results = batch.process_prompts(prompts, progress=False)
    table = Table(title=f"batch of {len(prompts)} prompts in {time.monotonic() - t0:.2f}s")
    table.add_column("task_id")
    table.add_column("response")
    table.add_column("error")
    for meta, response, error in results:
        table.add_row(escape(meta["task_id"]), escape((response or "")[:60]), escape(error or ""))
    Console().print(table)

    stream = GeminiStreamingProcessor(manager, "gemini-2.5-flash", worker_cooldown_seconds=0, api_call_interval=0)
    stream.start()
    try:
        t0 = time.monotonic()
        meta, response, error = stream.process_single({"prompt": "One streaming request, please."}, timeout=60)
        console.print(escape(f"streaming: {response or error!r} in {1000 * (time.monotonic() - t0):.0f} ms"))
    finally:
        stream.stop()

    output_dir.mkdir(parents=True, exist_ok=True)
    wav = output_dir / "gemini-tasks-demo.wav"
    tts = GeminiTTSProcessor(manager, model="flash", api_call_interval=0)
    audio = tts.generate_speech("Hello from the gemini-tasks demo!", voice="Puck", output_file=str(wav))
    if audio is None:
        console.print(f"[red]TTS failed: {tts.last_error}[/]")
    else:
        console.print(f"TTS: wrote {wav} ({len(audio) / 48000:.2f} s of 24 kHz audio)")
    Console().print(keys_table(manager.get_keys_status_summary(), f"key pool {pool!r}"))
    manager.pool.clear()


if __name__ == "__main__":
    main()
