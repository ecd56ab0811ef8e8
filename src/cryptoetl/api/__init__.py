"""The read-only HTTP API (Litestar on Granian): ``cryptoetl.api.app:create_app`` / ``:app``.

One module per resource (``data``, ``health``, ``stats``, ``runs``, ``assets``, ``metrics``);
``deps`` owns database access, ``errors`` the error answers and parameter validation,
``schemas`` every response body, ``requestid`` the per-request context (id, log, metrics).
"""
