"""Upstream servers: their priority queues and the streaming proxy that talks to them."""
