"""`emulator` click command: run the Gemini API emulator in the foreground.

Prints exactly one line, `emulator listening on http://HOST:PORT`, flushed as soon as the socket
is accepting connections; test harnesses (EmulatorProcess) parse that line, so keep it stable.
Everything else goes to stderr through logging.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from .runner import READY_PREFIX


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port to bind; 0 = any free port.")
@click.option(
    "--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="JSON file with emulator config."
)
@click.option("--minute-seconds", type=float, help="Length of a quota 'minute' in seconds (scaled-down tests).")
@click.option("--latency", type=float, help="Added latency in seconds for every API request.")
@click.option("--seed", type=int, help="Seed for fault probabilities and latency jitter.")
@click.option(
    "--log-level", default="WARNING", show_default=True, help="Python logging level for gemini_tasks.emulator."
)
def emulator(
    host: str,
    port: int,
    config_path: str | None,
    minute_seconds: float | None,
    latency: float | None,
    seed: int | None,
    log_level: str,
) -> None:
    """Run a local Gemini API emulator (real HTTP, the SDK's wire protocol)."""
    from .server import run  # aiohttp imported only when the command actually runs
    from .config import ConfigError, validate

    config: dict[str, Any] = {}
    if config_path:
        with open(config_path, encoding="utf-8") as fh:
            config = json.load(fh)
    if minute_seconds is not None:
        config["minute_seconds"] = minute_seconds
    if latency is not None:
        config["latency_seconds"] = latency
    if seed is not None:
        config["seed"] = seed

    try:
        validate(config)
    except ConfigError as exc:
        raise click.ClickException(f"invalid emulator config: {exc}") from None

    logger = logging.getLogger("gemini_tasks.emulator")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(log_level.upper())

    def ready(url: str) -> None:
        click.echo(f"{READY_PREFIX}{url}")
        sys.stdout.flush()

    try:
        run(host=host, port=port, config=config, on_ready=ready)
    except KeyboardInterrupt:
        pass
