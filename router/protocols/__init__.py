"""Protocol adapters: how each client API's requests are read and its replies and errors written."""

from router.protocols.base import Protocol, Reply

__all__ = ["Protocol", "Reply"]
