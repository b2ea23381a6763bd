"""Error strings a user reads (issue 12 item 12), through the real worker, SDK and emulator."""

from __future__ import annotations


def test_a_502_html_page_is_reduced_to_its_status_and_a_short_reason(worker, emu, manager_factory):
    from gemini_tasks import GeminiStreamingProcessor

    sp = GeminiStreamingProcessor(manager_factory(2, paid_keys="all"), "gemini-2.5-flash", worker_cooldown_seconds=0,
                                  api_call_interval=0, api_call_retries=1)
    sp.start()
    try:
        emu.add_fault(action="status", status=502, prompt_contains="E502")
        _, response, error = sp.process_single({"prompt": "E502 please"}, timeout=30)
    finally:
        sp.stop()
    assert response is None
    assert error.startswith("Transient error (502"), error
    assert "Bad Gateway" in error
    assert "<" not in error and "DOCTYPE" not in error and len(error) < 200, error
