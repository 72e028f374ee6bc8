"""Errors that carry their HTTP meaning from wherever they are raised to the router.

They cross Ray: an exception raised in a replica comes back from a handle as a `RayTaskError`
that is also an instance of the original class, so the gateway's handler sees the same type.
"""

from __future__ import annotations


class LlamarayError(Exception):
    status_code = 500
    error_type = "internal_error"

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def __reduce__(self):  # keep `param` when pickled across Ray
        return (type(self), (self.message, self.param))


class InvalidRequestError(LlamarayError):
    """A field is malformed or out of range; `param` names it."""

    status_code = 400
    error_type = "invalid_request_error"


class NotFoundError(LlamarayError):
    """A model, bank, agent, dataset or job that does not exist; `param` names the field."""

    status_code = 404
    error_type = "not_found_error"


class TooManyRequestsError(LlamarayError):
    """The platform takes no more of this now; `retry_after_s` says when to ask again."""

    status_code = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, param: str | None = None, retry_after_s: int = 30) -> None:
        super().__init__(message, param)
        self.retry_after_s = retry_after_s

    def __reduce__(self):
        return (type(self), (self.message, self.param, self.retry_after_s))


class DeadlineExceededError(LlamarayError):
    """Work the request waited on did not end in time (and was stopped)."""

    status_code = 504
    error_type = "timeout_error"


class ConflictError(LlamarayError):
    status_code = 409
    error_type = "conflict_error"


class EngineUnavailableError(LlamarayError):
    """The engine behind a model died; Serve's health check replaces the replica."""

    status_code = 503
    error_type = "service_unavailable"
