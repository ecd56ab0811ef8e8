"""Canonical asset identity: every coin from every source resolves to one ``assets`` row.

Resolution order for a market record (first hit wins, recorded in ``asset_mappings``):

1. an existing mapping for (source_type, source id) — a coin keeps its asset forever;
2. the well-known coins (``cryptoetl/coins.json``, see :mod:`cryptoetl.coins`): CoinGecko id,
   CoinPaprika id, or — for CSV rows, which carry nothing but a ticker — the coin's symbol
   (method ``seed``, confidence 1.0 for ids, 0.9 for a CSV symbol);
3. exact symbol plus normalized name of an existing asset (method ``symbol_name``, 0.8);
4. otherwise a new asset (method ``new``, 1.0).

A symbol alone never merges two assets: many coins share a ticker, so a non-seed symbol match
without the same name creates a separate asset.

News mentions use each known coin's ``news_terms``: case-sensitive whole words in the headline
(``ETH`` matches, ``eth`` in a URL slug does not), so common words never tag a coin.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptoetl.coins import known_coins
from cryptoetl.db.tables import assets
from cryptoetl.pipeline.documents import AssetDoc
from cryptoetl.sources.base import MarketRecord, SourceError

DEFAULT_MAX_NEW_ASSETS = 10_000


@dataclass(frozen=True)
class Match:
    asset_id: int
    method: str
    confidence: float


def normalize_name(name: str) -> str:
    """Lower-case ASCII letters and digits only: 'Shiba Inu' == 'shiba-inu' == 'SHIBA INU'."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", folded.lower())


class AssetResolver:
    """Resolves records to asset ids inside the caller's transaction (on its asyncpg
    connection), caching what it learns."""

    def __init__(self) -> None:
        self.seed = known_coins()
        self._seed_by_source = {
            "coingecko": {s.coingecko: s for s in self.seed},
            "coinpaprika": {s.coinpaprika: s for s in self.seed},
            "csv": {s.symbol: s for s in self.seed},
        }
        self._seed_ids: dict[str, int] = {}
        self._seed_docs: dict[str, AssetDoc] = {}
        self._cache: dict[tuple[str, str], int] = {}
        self._new_budget = DEFAULT_MAX_NEW_ASSETS
        self._mention_pattern = re.compile(
            r"(?<![\w$])("
            + "|".join(
                re.escape(t)
                for t in sorted({t for s in self.seed for t in s.news_terms}, key=len, reverse=True)
            )
            + r")(?!\w)"
        )
        self._slug_by_term = {t: s.slug for s in self.seed for t in s.news_terms}

    async def ensure_seed(self, conn: AsyncConnection) -> None:
        """Insert the seed assets (idempotent) and remember their ids."""
        rows = [
            {
                "slug": s.slug,
                "symbol": s.symbol,
                "name": s.name,
                "normalized_name": normalize_name(s.name),
            }
            for s in self.seed
        ]
        await conn.execute(
            insert(assets).values(rows).on_conflict_do_nothing(index_elements=["slug"])
        )
        result = await conn.execute(
            sa.select(assets.c.id, assets.c.slug, assets.c.symbol, assets.c.name).where(
                assets.c.slug.in_([s.slug for s in self.seed])
            )
        )
        self._seed_docs = {row.slug: AssetDoc(*row) for row in result.all()}
        self._seed_ids = {slug: doc.id for slug, doc in self._seed_docs.items()}

    def forget(self) -> None:
        """Drop cached mappings: after a rolled-back batch they may name assets that never were."""
        self._cache.clear()

    def mentions(self, text: str) -> list[AssetDoc]:
        """The known coins named in ``text`` (ordered, unique)."""
        found: dict[int, AssetDoc] = {}
        for match in self._mention_pattern.finditer(text):
            asset = self._seed_docs.get(self._slug_by_term[match.group(1)])
            if asset is not None:
                found.setdefault(asset.id, asset)
        return list(found.values())

    def start_run(self, max_new_assets: int) -> None:
        """Per source run: at most ``max_new_assets`` new assets (a hostile or broken upstream
        that invents a million coins fails the run instead of filling the table)."""
        self._new_budget = max_new_assets

    async def resolve(self, driver: Any, records: list[MarketRecord]) -> dict[tuple[str, str], int]:
        """Asset id for every (source_type, base key) among ``records``.

        Set-based: existing mappings, the known coins, symbol+name matches and new assets each
        cost one statement for the whole batch, whatever the number of new coins.
        """
        wanted = {(r.source_type, r.base_key): r for r in records}
        missing = [key for key in wanted if key not in self._cache]
        if missing:
            await self._load_mappings(driver, missing)
            unmapped = [wanted[key] for key in missing if key not in self._cache]
            if unmapped:
                await self._map_new(driver, unmapped)
                await self._load_mappings(driver, [(r.source_type, r.base_key) for r in unmapped])
        return {key: self._cache[key] for key in wanted}

    async def _load_mappings(self, driver: Any, keys: Sequence[tuple[str, str]]) -> None:
        sources, ids = (list(column) for column in zip(*keys, strict=True))
        for source_type, source_id, asset_id in await driver.fetch(_MAPPINGS, sources, ids):
            self._cache[(source_type, source_id)] = asset_id

    async def _map_new(self, driver: Any, records: list[MarketRecord]) -> None:
        matches: dict[tuple[str, str], Match] = {}
        for record in records:
            seed = self._seed_match(record)
            if seed is not None:
                matches[(record.source_type, record.base_key)] = seed
        rest = [r for r in records if (r.source_type, r.base_key) not in matches]
        matches |= await self._symbol_name_matches(driver, rest)
        fresh = [r for r in rest if (r.source_type, r.base_key) not in matches]
        matches |= await self._create_assets(driver, fresh)
        rows = [
            (r.source_type, r.base_key, r.symbol.upper(), r.name, *_match_columns(matches, r))
            for r in records
        ]
        # A concurrent writer may map a coin first: ON CONFLICT keeps its answer, which the
        # caller reads back.
        await driver.execute(_INSERT_MAPPINGS, *(list(c) for c in zip(*rows, strict=True)))

    def _seed_match(self, record: MarketRecord) -> Match | None:
        by_id = self._seed_by_source.get(record.source_type, {})
        seed = by_id.get(record.base_key if record.source_type != "csv" else record.symbol.upper())
        if seed is None or seed.slug not in self._seed_ids:
            return None
        confidence = 0.9 if record.source_type == "csv" else 1.0
        return Match(self._seed_ids[seed.slug], "seed", confidence)

    async def _symbol_name_matches(
        self, driver: Any, records: list[MarketRecord]
    ) -> dict[tuple[str, str], Match]:
        named = [r for r in records if r.name]
        if not named:
            return {}
        found = await driver.fetch(
            _SYMBOL_NAME,
            [r.symbol.upper() for r in named],
            [normalize_name(r.name or "") for r in named],
        )
        by_pair = {(symbol, name): asset_id for symbol, name, asset_id in found}
        matches: dict[tuple[str, str], Match] = {}
        for r in named:
            asset_id = by_pair.get((r.symbol.upper(), normalize_name(r.name or "")))
            if asset_id is not None:
                matches[(r.source_type, r.base_key)] = Match(asset_id, "symbol_name", 0.8)
        return matches

    async def _create_assets(
        self, driver: Any, records: list[MarketRecord]
    ) -> dict[tuple[str, str], Match]:
        if not records:
            return {}
        by_slug: dict[str, list[MarketRecord]] = {}
        for r in records:
            by_slug.setdefault(_slug(r), []).append(r)
        if len(by_slug) > self._new_budget:
            raise SourceError(
                f"this run would create {len(by_slug)} new assets, more than the "
                f"{self._new_budget} left of MAX_NEW_ASSETS_PER_RUN; nothing of this batch "
                "was written (raise the limit if the upstream really lists that many coins)"
            )
        self._new_budget -= len(by_slug)
        first = [group[0] for group in by_slug.values()]
        # The slug can only collide when symbol and normalized name are equal, which rule 3
        # treats as the same asset anyway; the upsert keeps that race-free.
        rows = await driver.fetch(
            _CREATE_ASSETS,
            list(by_slug),
            [r.symbol.upper() for r in first],
            [r.name or r.symbol.upper() for r in first],
            [normalize_name(r.name or r.symbol) for r in first],
        )
        ids = {row[0]: row[1] for row in rows}
        return {
            (r.source_type, r.base_key): Match(ids[slug], "new", 1.0)
            for slug, group in by_slug.items()
            for r in group
        }


_MAPPINGS = """
SELECT m.source_type, m.source_id, m.asset_id FROM asset_mappings m
JOIN unnest($1::text[], $2::text[]) AS k(source_type, source_id)
    ON m.source_type = k.source_type AND m.source_id = k.source_id
"""
_SYMBOL_NAME = """
SELECT DISTINCT ON (k.symbol, k.name) k.symbol, k.name, a.id
FROM unnest($1::text[], $2::text[]) AS k(symbol, name)
JOIN assets a ON a.symbol = k.symbol AND a.normalized_name = k.name
ORDER BY k.symbol, k.name, a.id
"""
_CREATE_ASSETS = """
INSERT INTO assets (slug, symbol, name, normalized_name)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
ON CONFLICT (slug) DO UPDATE SET symbol = excluded.symbol
RETURNING slug, id
"""
_INSERT_MAPPINGS = """
INSERT INTO asset_mappings (source_type, source_id, symbol, name, asset_id, match_method,
    confidence)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
    $7::numeric[])
ON CONFLICT (source_type, source_id) DO NOTHING
"""


def _slug(record: MarketRecord) -> str:
    return f"{record.symbol.lower()}-{normalize_name(record.name or record.symbol)}"


def _match_columns(
    matches: dict[tuple[str, str], Match], record: MarketRecord
) -> tuple[int, str, float]:
    match = matches[(record.source_type, record.base_key)]
    return match.asset_id, match.method, match.confidence
