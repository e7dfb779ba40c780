"""droptune's command line and Python client.

from droptune_client import Client
result = Client().search(x, y, max_trials=10, epochs=20)
result.trials, result.best, result.report, result.model()
"""

from droptune_client.client import Client, Snapshot
from droptune_client.errors import ApiError, ConnectionFailed, DroptuneError, Exit, UsageError
from droptune_client.search import SearchResult

__all__ = ["ApiError", "Client", "ConnectionFailed", "DroptuneError", "Exit", "SearchResult", "Snapshot", "UsageError"]
