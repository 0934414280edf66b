"""For operators: metrics, the status server, logs, CLI views and DNS look-ups."""
