"""One error type carrying its HTTP status; one place turns it into a response."""

from __future__ import annotations


class ServerError(Exception):
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServerError):
    status = 400


class NotFound(ServerError):
    status = 404


class MethodNotAllowed(ServerError):
    status = 405

    def __init__(self, message: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed


class UnsupportedMediaType(ServerError):
    status = 415


class NotReady(ServerError):
    status = 503


class ModelLoadError(Exception):
    """The artifact cannot be served; the server refuses to start."""
