"""A local Gemini API emulator: real HTTP, the wire protocol the google-genai SDK speaks.

For tests, benchmarks, demos and offline development.  Public names (imported lazily so that
`EmulatorControl` can be used without importing aiohttp):

    create_app(config) -> aiohttp.web.Application     gemini_tasks.emulator.server
    run(host, port, config, on_ready)                  gemini_tasks.emulator.server
    EmulatorThread(config), EmulatorProcess(config)    gemini_tasks.emulator.runner
    EmulatorControl(base_url)                          gemini_tasks.emulator.control_client
    emulator (click command)                           gemini_tasks.emulator.cli
    VOICES                                             gemini_tasks.emulator.tts
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "create_app": "server",
    "run": "server",
    "EmulatorThread": "runner",
    "EmulatorProcess": "runner",
    "EmulatorControl": "control_client",
    "EmulatorControlError": "control_client",
    "VOICES": "tts",
    "DEFAULT_CONFIG": "config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gemini_tasks.emulator' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
