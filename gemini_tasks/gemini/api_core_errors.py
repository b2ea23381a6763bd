"""``to_api_core``: a classified :class:`~.errors.CallError` as the typed ``google.api_core`` exception users catch."""

from __future__ import annotations

from google.api_core import exceptions as core_exceptions

from .errors import BLOCKED, INVALID_KEY, RATE_LIMITED, STATUS_TIMEOUT, TRANSIENT, CallError, error_message


_RPC_STATUS_TO_CLASS: dict[str, type[core_exceptions.GoogleAPICallError]] = {
    "INVALID_ARGUMENT": core_exceptions.InvalidArgument,
    "FAILED_PRECONDITION": core_exceptions.FailedPrecondition,
    "OUT_OF_RANGE": core_exceptions.OutOfRange,
    "UNAUTHENTICATED": core_exceptions.Unauthenticated,
    "PERMISSION_DENIED": core_exceptions.PermissionDenied,
    "NOT_FOUND": core_exceptions.NotFound,
    "ALREADY_EXISTS": core_exceptions.AlreadyExists,
    "ABORTED": core_exceptions.Aborted,
    "RESOURCE_EXHAUSTED": core_exceptions.ResourceExhausted,
    "CANCELLED": core_exceptions.Cancelled,
    "INTERNAL": core_exceptions.InternalServerError,
    "UNKNOWN": core_exceptions.Unknown,
    "DATA_LOSS": core_exceptions.DataLoss,
    "UNIMPLEMENTED": core_exceptions.MethodNotImplemented,
    "UNAVAILABLE": core_exceptions.ServiceUnavailable,
    "DEADLINE_EXCEEDED": core_exceptions.DeadlineExceeded,
}


def to_api_core(err: CallError) -> core_exceptions.GoogleAPICallError:
    """The typed ``google.api_core.exceptions`` error users catch (``ResourceExhausted``, ...).

    ``from_http_status`` alone maps 429 to ``TooManyRequests`` and 400 to ``BadRequest``; the gRPC-named
    subclasses users expect (``ResourceExhausted``, ``InvalidArgument``, ``PermissionDenied``,
    ``DeadlineExceeded``) are picked from the google.rpc status the API sent, when it fits the HTTP code.
    The ``CallError`` rides along as ``exc.call_error`` and in ``exc.details``.
    """
    message = error_message(err)
    if err.kind == RATE_LIMITED:
        cls: type[core_exceptions.GoogleAPICallError] = core_exceptions.ResourceExhausted
        code = 429
    elif err.code is None:
        if err.kind == BLOCKED:
            cls, code = core_exceptions.FailedPrecondition, 400
        elif err.status == STATUS_TIMEOUT:
            cls, code = core_exceptions.DeadlineExceeded, 504
        elif err.kind == TRANSIENT:
            cls, code = core_exceptions.ServiceUnavailable, 503
        else:
            cls, code = core_exceptions.InvalidArgument, 400
    else:
        code = err.code
        base = core_exceptions.exception_class_for_http_status(code)
        cls = base
        candidate = _RPC_STATUS_TO_CLASS.get(err.status or "")
        if candidate is not None and (base is core_exceptions.GoogleAPICallError or issubclass(candidate, base)):
            cls = candidate
        elif err.kind == INVALID_KEY and code == 400:
            cls = core_exceptions.InvalidArgument
    if cls is core_exceptions.exception_class_for_http_status(code):
        exc = core_exceptions.from_http_status(code, message, details=[err.to_dict()])
    else:
        exc = cls(message, details=[err.to_dict()])
        exc.code = code
    exc.call_error = err  # type: ignore[attr-defined]
    return exc
