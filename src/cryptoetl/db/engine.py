"""Async engines. The worker writes through DATABASE_URL; the API reads through a read-only
role *and* read-only sessions, so nothing the API runs can write even if a grant slips."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cryptoetl.config import DatabaseUrl


def make_engine(
    url: DatabaseUrl,
    *,
    read_only: bool = False,
    pool_size: int = 5,
    application_name: str = "cryptoetl",
) -> AsyncEngine:
    server_settings = {"application_name": application_name}
    if read_only:
        server_settings["default_transaction_read_only"] = "on"
    return create_async_engine(
        url.sqlalchemy_url(),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"server_settings": server_settings, "timeout": 10},
    )
