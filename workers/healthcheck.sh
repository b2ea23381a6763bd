#!/bin/sh
# gemini-tasks worker health check (the image's HEALTHCHECK; installed as gemini-tasks-healthcheck).
#
# Healthy when the worker answers a ping under the node name the entrypoint resolved and recorded. The solo
# pool answers pings only between tasks, so during one call longer than the ping timeout it cannot answer:
# a solo worker is then healthy while its process lives (the request timeout, GEMINI_TASKS_REQUEST_TIMEOUT,
# bounds each call). Exit 0 healthy, 1 not.
#
#   HEALTHCHECK_PING_TIMEOUT   seconds to wait for the ping reply   default 10
set -u
dir="${TMPDIR:-/tmp}"
node="$(cat "$dir/gemini-tasks-worker-node" 2>/dev/null)" || exit 1
[ -n "$node" ] || exit 1
if celery -A gemini_tasks inspect ping -d "$node" --timeout "${HEALTHCHECK_PING_TIMEOUT:-10}" > /dev/null 2>&1; then
  exit 0
fi
pool="$(cat "$dir/gemini-tasks-worker-pool" 2>/dev/null || true)"
pid="$(cat "$dir/gemini-tasks-worker-pid" 2>/dev/null || true)"
if [ "$pool" = solo ] && [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
  echo "healthcheck: solo worker $node busy (no ping reply); process $pid alive" >&2
  exit 0
fi
exit 1
