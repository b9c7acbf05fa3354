"""ghost-router: answers coding-agent ghost traffic locally, queues real turns for a local LLM."""

__version__ = "0.1.0"
