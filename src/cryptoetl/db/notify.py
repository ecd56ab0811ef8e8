"""The one channel between the two processes besides the tables: ``NOTIFY`` on commit.

The worker's write transactions that change normalized data notify :data:`DATA_CHANGED` with
the source as payload; PostgreSQL delivers a notification only when (and if) its transaction
commits. The API listens to drop cached responses (:mod:`cryptoetl.api.cache`).
"""

from __future__ import annotations

DATA_CHANGED = "cryptoetl_data"
NOTIFY_DATA_CHANGED = f"SELECT pg_notify('{DATA_CHANGED}', $1::text)"
