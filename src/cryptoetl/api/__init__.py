"""The read-only HTTP API (Litestar on Granian): ``cryptoetl.api.app:create_app`` / ``:app``.

One module per resource (``data``, ``health``, ``stats``, ``runs``, ``compare_runs``,
``assets``, ``prices``, ``metrics``) and the operator dashboard (``dashboard``); ``status``
judges the sources and ``anomalies`` the runs, for all of them; ``queries`` loads the static
SQL of ``sql/*.sql``; ``deps`` owns database access, ``errors`` the error answers, ``params``
what the query parameters accept, validate and document, ``schemas`` every response body,
``request_context`` the per-request context (id, latency, access log, metrics), ``methods``
HEAD and 405.
"""
