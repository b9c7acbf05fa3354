"""Errors a request can meet, carried to the client in its own protocol's error shape."""

from __future__ import annotations

CLIENT_CLOSED = 499  # nginx's code for "client closed the request": the log and the counters only


class RouterError(Exception):
    """An error answered to the client: HTTP status, protocol error type (optional) and message."""

    def __init__(self, status: int, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type


class InternalError(RouterError):
    """A fault nobody raised on purpose (a bug in the router), answered as a 500 in the client's
    protocol instead of aiohttp's plain-text page or a stream cut without a word."""

    def __init__(self, fault: Exception) -> None:
        super().__init__(
            500,
            f"ghost-router: an internal error ended this request ({type(fault).__name__}: {fault}). "
            "The router's log has its traceback: please report it with that traceback.",
            "api_error",
        )


class BadRequest(RouterError):
    """The request is not something the protocol accepts (400)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message, "invalid_request_error")


class Overloaded(RouterError):
    """The upstream queue is full or the wait ran past queue_timeout (529: clients retry it)."""

    def __init__(self, message: str) -> None:
        super().__init__(529, message, "overloaded_error")


class UpstreamUnavailable(RouterError):
    """The upstream could not be reached or did not answer in time (502/503/504)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message, "api_error")


class RulesError(Exception):
    """A rules file that cannot be loaded; the message is one line naming file, line, rule and field."""
