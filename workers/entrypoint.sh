#!/bin/sh
# gemini-tasks worker entrypoint: one Celery worker, every knob from the environment (see workers/README.md).
#
#   WORKER_QUEUES          queues to consume (spaces dropped)     default interactive,batch
#   WORKER_POOL            threads | prefork | gevent | solo      default threads (measured: workers/README.md)
#   WORKER_CONCURRENCY     slots (calls in flight)                default threads 32, gevent 64, prefork 8, solo 1
#   WORKER_PREFETCH_MULTIPLIER  messages reserved per slot         default 1 (gevent: 4, see README)
#   WORKER_LOGLEVEL        Celery log level                       default INFO
#   WORKER_SOFT_SHUTDOWN_TIMEOUT  seconds running calls get on SIGTERM before their messages are re-queued
#                                                                 default 30 (keep the stop grace period above it)
#   WORKER_NAME            node name (any `celery -n` form)        default <first queue>-<6 hex>@%h (unique per start)
#   WORKER_EXTRA_ARGS      more `celery worker` options           default --without-gossip --without-mingle
#
# Any other first argument runs that command instead (the same image serves Flower and the metrics exporter):
#   entrypoint.sh celery -A gemini_tasks flower ...      entrypoint.sh python -m gemini_tasks.ops.metrics
# Arguments starting with "-" are appended to the `celery worker` command line.
set -eu

# Compose turns an unset ${VAR:-} into an empty string; an empty GOOGLE_GEMINI_BASE_URL or broker URL must be
# absent rather than "" (the SDK would otherwise be handed an empty endpoint).
for var in GOOGLE_GEMINI_BASE_URL CELERY_BROKER_URL CELERY_RESULT_BACKEND GEMINI_TASKS_KEYS_REDIS_URL \
           GEMINI_TASKS_POOL GEMINI_TASKS_REQUEST_TIMEOUT GEMINI_TASKS_VISIBILITY_TIMEOUT; do
  eval "value=\${$var-}"
  if [ -z "$value" ]; then unset "$var"; fi
done

if [ "$#" -gt 0 ] && [ "${1#-}" = "$1" ]; then
  exec "$@"
fi

# "batch, interactive" means the queues batch and interactive (never one named " interactive")
WORKER_QUEUES="$(printf '%s' "${WORKER_QUEUES:-interactive,batch}" | tr -d ' \t')"
WORKER_POOL="${WORKER_POOL:-threads}"
case "$WORKER_POOL" in
  threads)           default_concurrency=32; default_prefetch=1 ;;
  gevent)            default_concurrency=64; default_prefetch=4 ;;
  prefork|processes) default_concurrency=8;  default_prefetch=1 ;;
  solo)              default_concurrency=1;  default_prefetch=1 ;;
  *) echo "entrypoint: WORKER_POOL must be threads, prefork, gevent or solo, got '$WORKER_POOL'" >&2; exit 64 ;;
esac
WORKER_CONCURRENCY="${WORKER_CONCURRENCY:-$default_concurrency}"
WORKER_PREFETCH_MULTIPLIER="${WORKER_PREFETCH_MULTIPLIER:-$default_prefetch}"
WORKER_LOGLEVEL="${WORKER_LOGLEVEL:-INFO}"
WORKER_SOFT_SHUTDOWN_TIMEOUT="${WORKER_SOFT_SHUTDOWN_TIMEOUT:-30}"
WORKER_EXTRA_ARGS="${WORKER_EXTRA_ARGS---without-gossip --without-mingle}"

# A unique node name per start: scaled replicas share a hostname pattern, and Flower and `celery inspect`
# tell workers apart by node name (a duplicate name makes Celery warn and Flower merge two workers into one).
suffix="$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')"
WORKER_NAME="${WORKER_NAME:-${WORKER_QUEUES%%,*}-${suffix}@%h}"
# Resolve the name exactly as `celery worker -n` does (a name without "@" gets "@<hostname>"; %h, %n and %d
# expand), with Celery's own functions, and start the worker under the resolved name: the health check
# (workers/healthcheck.sh) pings the same node name whatever WORKER_NAME looks like.
WORKER_NAME="$(python -c 'import sys; from celery.utils.nodenames import default_nodename, host_format
print(host_format(default_nodename(sys.argv[1])))' "$WORKER_NAME")"
state_dir="${TMPDIR:-/tmp}"
printf '%s\n' "$WORKER_NAME" > "$state_dir/gemini-tasks-worker-node" 2>/dev/null || true
printf '%s\n' "$WORKER_POOL" > "$state_dir/gemini-tasks-worker-pool" 2>/dev/null || true
printf '%s\n' "$$" > "$state_dir/gemini-tasks-worker-pid" 2>/dev/null || true  # exec keeps this PID

echo "entrypoint: worker $WORKER_NAME queues=$WORKER_QUEUES pool=$WORKER_POOL concurrency=$WORKER_CONCURRENCY" \
     "prefetch=$WORKER_PREFETCH_MULTIPLIER soft-shutdown=${WORKER_SOFT_SHUTDOWN_TIMEOUT}s" >&2

# shellcheck disable=SC2086  # WORKER_EXTRA_ARGS is a list of options on purpose
exec celery -A gemini_tasks worker \
  -Q "$WORKER_QUEUES" \
  -P "$WORKER_POOL" \
  -c "$WORKER_CONCURRENCY" \
  -n "$WORKER_NAME" \
  -l "$WORKER_LOGLEVEL" \
  --prefetch-multiplier "$WORKER_PREFETCH_MULTIPLIER" \
  -E \
  $WORKER_EXTRA_ARGS \
  "$@" \
  -- "worker.soft_shutdown_timeout=$WORKER_SOFT_SHUTDOWN_TIMEOUT"
