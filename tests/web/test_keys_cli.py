"""``gemini-tasks keys test`` / ``keys list`` against a worker process that holds the keys and the emulator."""

from __future__ import annotations

import json

from click.testing import CliRunner

from .conftest import KEY_SECRETS


def test_keys_test_calls_once_per_key_from_the_worker(worker, emu):
    from gemini_tasks.ops.cli import main

    s = KEY_SECRETS
    emu.configure(keys={s["GEMINI_API_KEY_1"]: {"label": "K1", "project": "p1"},
                        s["GEMINI_API_KEY_2"]: {"label": "K2", "project": "p2", "blocked": True},
                        s["GEMINI_API_KEY_3"]: {"label": "K3", "project": "p3"}},
                  quotas={"p3": {"*": {"rpm": 0}}})
    names = "GEMINI_API_KEY_1,GEMINI_API_KEY_2,GEMINI_API_KEY_3,GEMINI_API_KEY_4,GEMINI_API_KEY_99"
    result = CliRunner().invoke(main, ["keys", "test", "--keys", names, "--json", "--timeout", "60"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.output)
    statuses = {k: v["status"] for k, v in answer["keys"].items()}
    assert statuses == {"GEMINI_API_KEY_1": "valid", "GEMINI_API_KEY_2": "blocked", "GEMINI_API_KEY_3": "exhausted",
                        "GEMINI_API_KEY_4": "invalid", "GEMINI_API_KEY_99": "not held"}
    assert "exhausted" in answer["keys"]["GEMINI_API_KEY_3"]["detail"].lower()
    # one call per held key, and no secret in what came back
    assert len([e for e in emu.log() if e.get("endpoint") == "generateContent"]) == 4
    assert not any(secret in result.output for secret in s.values())

    table = CliRunner().invoke(main, ["keys", "test", "--keys", "GEMINI_API_KEY_1,GEMINI_API_KEY_4"])
    assert table.exit_code == 0 and "valid" in table.output and "invalid" in table.output, table.output


def test_keys_list_shows_masked_keys(fleet_env):
    from gemini_tasks.ops.cli import main

    result = CliRunner().invoke(main, ["keys", "list"])
    assert result.exit_code == 0, result.output
    secret = KEY_SECRETS["GEMINI_API_KEY_1"]
    assert "GEMINI_API_KEY_1" in result.output and "..." + secret[-4:] in result.output
    assert not any(s in result.output for s in KEY_SECRETS.values())
    assert "50 key(s)" in result.output


def test_keys_without_subcommand_still_shows_the_pool(fleet_env, manager):
    from gemini_tasks.ops.cli import main

    result = CliRunner().invoke(main, ["keys", "--pool", manager.pool.pool, "--json"])
    assert result.exit_code == 0, result.output
    assert set(json.loads(result.output)) == {f"GEMINI_API_KEY_{i}" for i in range(1, 9)}
