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

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from cryptoetl.coins import known_coins
from cryptoetl.db.tables import asset_mappings, assets
from cryptoetl.sources.base import MarketRecord


@dataclass(frozen=True)
class Match:
    asset_id: int
    method: str
    confidence: float


def normalize_name(name: str) -> str:
    """Lower-case ASCII letters and digits only: 'Shiba Inu' == 'shiba-inu' == 'SHIBA INU'."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "", folded.lower())


def mapping_key(record: MarketRecord) -> str:
    """The source's own id for the coin: its API id, or the ticker for CSV observations."""
    return record.coin_id or record.symbol.upper()


class AssetResolver:
    """Resolves records to asset ids inside the caller's transaction, caching what it learns."""

    def __init__(self) -> None:
        self.seed = known_coins()
        self._seed_by_source = {
            "coingecko": {s.coingecko: s for s in self.seed},
            "coinpaprika": {s.coinpaprika: s for s in self.seed},
            "csv": {s.symbol: s for s in self.seed},
        }
        self._seed_ids: dict[str, int] = {}
        self._cache: dict[tuple[str, str], int] = {}
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
            sa.select(assets.c.slug, assets.c.id).where(
                assets.c.slug.in_([s.slug for s in self.seed])
            )
        )
        self._seed_ids = {str(slug): int(asset_id) for slug, asset_id in result.all()}

    def forget(self) -> None:
        """Drop cached mappings: after a rolled-back batch they may name assets that never were."""
        self._cache.clear()

    def mentions(self, text: str) -> list[int]:
        """Seed asset ids named in ``text`` (ordered, unique)."""
        found: dict[int, None] = {}
        for match in self._mention_pattern.finditer(text):
            asset_id = self._seed_ids.get(self._slug_by_term[match.group(1)])
            if asset_id is not None:
                found[asset_id] = None
        return list(found)

    async def resolve(
        self, conn: AsyncConnection, records: list[MarketRecord]
    ) -> dict[tuple[str, str], int]:
        """Asset id for every (source_type, mapping key) among ``records``."""
        wanted = {(r.source_type, mapping_key(r)): r for r in records}
        missing = [key for key in wanted if key not in self._cache]
        if missing:
            await self._load_mappings(conn, missing)
            for key in missing:
                if key not in self._cache:
                    self._cache[key] = await self._map_new(conn, wanted[key])
        return {key: self._cache[key] for key in wanted}

    async def _load_mappings(self, conn: AsyncConnection, keys: Sequence[tuple[str, str]]) -> None:
        pairs = sa.tuple_(asset_mappings.c.source_type, asset_mappings.c.source_id)
        result = await conn.execute(
            sa.select(
                asset_mappings.c.source_type, asset_mappings.c.source_id, asset_mappings.c.asset_id
            ).where(pairs.in_(keys))
        )
        for source_type, source_id, asset_id in result.all():
            self._cache[(source_type, source_id)] = asset_id

    async def _map_new(self, conn: AsyncConnection, record: MarketRecord) -> int:
        match = self._seed_match(record) or await self._symbol_name_match(conn, record)
        if match is None:
            match = Match(await self._create_asset(conn, record), "new", 1.0)
        stmt = (
            insert(asset_mappings)
            .values(
                asset_id=match.asset_id,
                source_type=record.source_type,
                source_id=mapping_key(record),
                symbol=record.symbol.upper(),
                name=record.name,
                match_method=match.method,
                confidence=match.confidence,
            )
            .on_conflict_do_nothing(index_elements=["source_type", "source_id"])
        )
        await conn.execute(stmt)
        # A concurrent writer may have mapped it first: its answer is the one that counts.
        return _as_int(
            await conn.scalar(
                sa.select(asset_mappings.c.asset_id).where(
                    asset_mappings.c.source_type == record.source_type,
                    asset_mappings.c.source_id == mapping_key(record),
                )
            )
        )

    def _seed_match(self, record: MarketRecord) -> Match | None:
        by_id = self._seed_by_source.get(record.source_type, {})
        seed = by_id.get(
            mapping_key(record) if record.source_type != "csv" else record.symbol.upper()
        )
        if seed is None or seed.slug not in self._seed_ids:
            return None
        confidence = 0.9 if record.source_type == "csv" else 1.0
        return Match(self._seed_ids[seed.slug], "seed", confidence)

    async def _symbol_name_match(self, conn: AsyncConnection, record: MarketRecord) -> Match | None:
        if not record.name:
            return None
        asset_id = await conn.scalar(
            sa.select(assets.c.id)
            .where(
                assets.c.symbol == record.symbol.upper(),
                assets.c.normalized_name == normalize_name(record.name),
            )
            .order_by(assets.c.id)
            .limit(1)
        )
        return Match(int(asset_id), "symbol_name", 0.8) if asset_id is not None else None

    async def _create_asset(self, conn: AsyncConnection, record: MarketRecord) -> int:
        name = record.name or record.symbol.upper()
        normalized = normalize_name(name)
        # The slug can only collide when symbol and normalized name are equal, which rule 3
        # treats as the same asset anyway; the upsert keeps that race-free.
        stmt = (
            insert(assets)
            .values(
                slug=f"{record.symbol.lower()}-{normalized}",
                symbol=record.symbol.upper(),
                name=name,
                normalized_name=normalized,
            )
            .on_conflict_do_update(index_elements=["slug"], set_={"symbol": record.symbol.upper()})
            .returning(assets.c.id)
        )
        return int(await conn.scalar(stmt))


def _as_int(value: object) -> int:
    if not isinstance(value, int):
        raise RuntimeError(f"expected an id from the database, got {value!r}")
    return value
