"""Shared test fixtures: paths, and (see tests/db.py) a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES_DIR = REPO_ROOT / "fixtures"
CORPUS_DIR = REPO_ROOT.parent / "shared" / "corpus"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Our own small upstream samples (written by us)."""
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """Genuine captured upstream responses beside the repo; tests using it skip when absent."""
    if not CORPUS_DIR.is_dir():
        pytest.skip(f"real-world corpus not found at {CORPUS_DIR}")
    return CORPUS_DIR
