"""Every real-world capture in the shared corpus goes through its parser.

Each file must give correct records or fail in a controlled way (SourceError, rejects,
warnings), never an unexpected exception. See ``shared/corpus/SOURCES.md`` for the files.
VCR cassettes are read in place: their response bodies are extracted at run time.
"""

from __future__ import annotations

import gzip
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cryptoetl.sources.base import Batch, MarketRecord, NewsRecord, SourceError
from cryptoetl.sources.coingecko import parse_markets_page
from cryptoetl.sources.coinpaprika import parse_tickers
from cryptoetl.sources.rss import parse_feed

# The same place tests/conftest.py looks; used only to list files for parametrization (an
# absent corpus gives empty lists, and the corpus_dir fixture skips).
_CORPUS = Path(__file__).resolve().parents[3].parent / "shared" / "corpus"
FETCHED_AT = datetime(2025, 6, 1, tzinfo=UTC)


def _names(folder: str, *patterns: str) -> list[str]:
    directory = _CORPUS / folder
    if not directory.is_dir():
        return []
    return sorted({p.name for pattern in patterns for p in directory.glob(pattern)})


def market_records(batch: Batch) -> dict[str, MarketRecord]:
    result: dict[str, MarketRecord] = {}
    for record in batch.records:
        assert isinstance(record, MarketRecord)
        result[record.base_key] = record
    return result


def news_records(batch: Batch) -> list[NewsRecord]:
    result = [r for r in batch.records if isinstance(r, NewsRecord)]
    assert len(result) == len(batch.records)
    return result


def check_batch_invariants(batch: Batch) -> None:
    """What every parsed batch promises, whatever the input."""
    assert batch.processed == len(batch.records) + len(batch.rejects)
    assert len(batch.raw) == batch.processed
    ids = [r.base_key if isinstance(r, MarketRecord) else r.source_id for r in batch.records]
    assert len(ids) == len(set(ids))
    for record in batch.records:
        stamp = record.source_timestamp
        assert stamp is None or stamp.utcoffset() is not None
        assert stamp is None or stamp.tzinfo == UTC


# --------------------------------------------------------------------------- cassettes


def cassette_responses(path: Path) -> list[tuple[str, int, bytes]]:
    """(uri, status, body) of each interaction of a Ruby VCR or vcrpy cassette."""
    yaml = pytest.importorskip("yaml")
    data = yaml.safe_load(path.read_bytes())
    interactions = data.get("http_interactions") or data.get("interactions") or []
    result = []
    for interaction in interactions:
        response = interaction["response"]
        raw = response["body"]["string"]
        body = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        encodings = {k.lower(): v for k, v in response.get("headers", {}).items()}
        if "gzip" in encodings.get("content-encoding", []):
            body = gzip.decompress(body)
        result.append((interaction["request"]["uri"], response["status"]["code"], body))
    return result


# --------------------------------------------------------------------------- CoinGecko


@pytest.mark.parametrize("name", _names("coingecko", "*.json"))
def test_every_coingecko_page_parses(corpus_dir: Path, name: str) -> None:
    batch = parse_markets_page(
        (corpus_dir / "coingecko" / name).read_bytes(), fetched_at=FETCHED_AT
    )
    check_batch_invariants(batch)
    assert batch.records
    assert batch.rejects == []
    assert batch.drift == []  # our Struct declares every field these captures carry
    for record in market_records(batch).values():
        assert record.symbol == record.symbol.upper()
        assert record.price_usd is not None
        assert record.price_usd > 0
        assert record.source_timestamp.year >= 2021


def _coingecko(corpus_dir: Path, name: str) -> dict[str, MarketRecord]:
    body = (corpus_dir / "coingecko" / name).read_bytes()
    return market_records(parse_markets_page(body, fetched_at=FETCHED_AT))


def test_coingecko_top100(corpus_dir: Path) -> None:
    records = _coingecko(corpus_dir, "jkorf_coinsnet_markets_top100_2023-01-08.json")
    assert len(records) == 100
    assert sorted(r.rank for r in records.values() if r.rank) == list(range(1, 101))
    btc = records["bitcoin"]
    assert (btc.symbol, btc.price_usd, btc.market_cap) == ("BTC", 16951.52, 326407877229.0)
    assert btc.source_timestamp == datetime(2023, 1, 8, 16, 49, 40, 132000, tzinfo=UTC)
    # usdd: total_supply, max_supply and fully_diluted_valuation are all null.
    usdd = records["usdd"]
    assert usdd.price_usd == 0.976625
    assert {"total_supply", "max_supply", "fully_diluted_valuation"}.isdisjoint(usdd.metadata)
    assert records["shiba-inu"].metadata["total_supply"] == 999990970689935.0
    assert records["shiba-inu"].metadata["atl"] == 5.6366e-11
    lunc = records["terra-luna"]
    assert (lunc.symbol, lunc.name) == ("LUNC", "Terra Luna Classic")
    assert "ethereum-pow-iou" in records


def test_coingecko_zero_market_cap_and_null_rank(corpus_dir: Path) -> None:
    records = _coingecko(corpus_dir, "forbole_soljuno_markets_zero_mcap_null_rank_2022-03-21.json")
    bitcanna = records["bitcanna"]
    assert (bitcanna.market_cap, bitcanna.rank) == (0.0, None)
    assert bitcanna.metadata["circulating_supply"] == 0.0
    assert records["cosmos"].name == "Cosmos Hub"


def test_coingecko_2025_format(corpus_dir: Path) -> None:
    records = _coingecko(corpus_dir, "rozanovigor_monkey_markets_top30_2025-03-04.json")
    assert len(records) == 30
    assert records["bitcoin"].price_usd == 79847.0
    assert records["bitcoin"].metadata["image"].startswith("https://coin-images.coingecko.com/")


def test_coingecko_single_and_small_pages(corpus_dir: Path) -> None:
    single = _coingecko(corpus_dir, "jkorf_coinsnet_markets_btc_single_2024-04-07.json")
    assert list(single) == ["bitcoin"]
    assert single["bitcoin"].price_usd == 70187.0
    in_eth = _coingecko(corpus_dir, "coingecko_ruby_markets_btc_eth_vs_eth_2021-05-15.json")
    assert in_eth["ethereum"].price_usd == 1.0  # fetched with vs_currency=eth
    assert len(_coingecko(corpus_dir, "gusgoros_markets_top5_2023-01-02.json")) == 5


@pytest.mark.parametrize(
    "name",
    _names("coingecko", "*.yml", "*.yaml") + [f"../errors/{n}" for n in _names("errors", "*.yml")],
)
def test_coingecko_cassette_bodies(corpus_dir: Path, name: str) -> None:
    responses = cassette_responses(corpus_dir / "coingecko" / name)
    assert responses
    for uri, status, body in responses:
        if status != 200:
            # 422 {"error": ...} / 500 {"status": 500, "error": ...}: an upstream error object.
            with pytest.raises(SourceError, match="upstream returned an error object"):
                parse_markets_page(body, fetched_at=FETCHED_AT)
            continue
        batch = parse_markets_page(body, fetched_at=FETCHED_AT)
        check_batch_invariants(batch)
        if "/coins/markets" in uri:
            assert batch.records
            assert batch.rejects == []
            assert "bitcoin" in market_records(batch)
        else:
            # An OHLC array of arrays is a JSON array but no coin: every item is a reject.
            assert batch.records == []
            assert batch.rejects
            assert all("Expected `object`, got `array`" in r.reason for r in batch.rejects)


# --------------------------------------------------------------------------- CoinPaprika


def _check_paprika_btc(batch: Batch) -> None:
    check_batch_invariants(batch)
    records = market_records(batch)
    assert list(records) == ["btc-bitcoin"]
    btc = records["btc-bitcoin"]
    assert (btc.symbol, btc.name, btc.rank) == ("BTC", "Bitcoin", 1)
    assert btc.price_usd == pytest.approx(41389.57931641128)
    assert btc.market_cap == 787066061422.0
    assert btc.change_pct == 5.25
    assert btc.source_timestamp == datetime(2022, 4, 19, 15, 43, 22, tzinfo=UTC)
    # Upstream reports more circulating than total supply; we keep what it said.
    assert btc.metadata["circulating_supply"] > btc.metadata["total_supply"]
    assert batch.drift == []


@pytest.mark.parametrize("name", _names("coinpaprika", "*.json"))
def test_every_coinpaprika_json(corpus_dir: Path, name: str) -> None:
    body = (corpus_dir / "coinpaprika" / name).read_bytes()
    _check_paprika_btc(parse_tickers(body, fetched_at=FETCHED_AT))


@pytest.mark.parametrize("name", _names("coinpaprika", "*.yml", "*.yaml"))
def test_coinpaprika_cassette_gzip_body(corpus_dir: Path, name: str) -> None:
    [(uri, status, body)] = cassette_responses(corpus_dir / "coinpaprika" / name)
    assert (status, "/v1/tickers/btc-bitcoin" in uri) == (200, True)
    _check_paprika_btc(parse_tickers(body, fetched_at=FETCHED_AT))


# --------------------------------------------------------------------------- RSS / Atom

RSS_NAMES = _names("rss", "*")


def _parse_rss(corpus_dir: Path, name: str, feed_url: str | None = None) -> Batch:
    return parse_feed(
        (corpus_dir / "rss" / name).read_bytes(),
        feed_url=feed_url or f"https://feeds.example.test/{name}",
        content_type=None,
        fetched_at=FETCHED_AT,
    )


@pytest.mark.parametrize("name", RSS_NAMES)
def test_every_feed_parses_or_fails_cleanly(corpus_dir: Path, name: str) -> None:
    outcome: Batch | SourceError
    try:
        outcome = _parse_rss(corpus_dir, name)
    except SourceError as exc:
        outcome = exc
    if isinstance(outcome, SourceError):
        assert name in str(outcome)  # the message names the feed
        return
    batch = outcome
    check_batch_invariants(batch)
    for record in news_records(batch):
        assert record.title.strip() == record.title
        assert record.title
        assert not any(tag in (record.summary or "") for tag in ("<p>", "<br", "<a ", "<img"))
        assert record.url is None or record.url.startswith(("http://", "https://"))
        assert len(record.source_id) <= 500
    for reject in batch.rejects:
        assert reject.reason


def _only(corpus_dir: Path, name: str, **kwargs: Any) -> tuple[list[NewsRecord], Batch]:
    batch = _parse_rss(corpus_dir, name, **kwargs)
    return news_records(batch), batch


def test_coindesk_feed(corpus_dir: Path) -> None:
    records, batch = _only(corpus_dir, "coindesk_rss_2023-03-13.xml")
    assert (len(records), batch.rejects, batch.warnings) == (50, [], [])
    first = records[0]
    assert first.source_id == "GAHBBCJVKFCXDLONTKPLD5TODI"  # opaque guid isPermaLink=false
    assert first.title.startswith("Bitcoin, U.S. Stock Futures Erase Early Gains")
    assert first.author == "Omkar Godbole"
    assert first.source_timestamp == datetime(2023, 3, 13, 10, 13, 50, tzinfo=UTC)
    assert "Bitcoin" in first.tags
    assert first.url is not None
    assert first.url.startswith("https://www.coindesk.com/markets/2023/03/13/")


def test_atom_relative_links_become_absolute(corpus_dir: Path) -> None:
    records, _ = _only(
        corpus_dir,
        "rssparser_github_releases_relative_links.atom",
        feed_url="https://github.com/gulpjs/gulp/releases.atom",
    )
    assert len(records) == 10
    assert records[0].url == "https://github.com/gulpjs/gulp/releases/tag/v3.9.0"
    assert all(r.url and r.url.startswith("https://github.com/gulpjs/gulp/") for r in records)
    assert records[0].source_id == "tag:github.com,2008:Repository/11167738/v3.9.0"
    assert records[0].summary == "3.9.0"
    assert records[0].source_timestamp == datetime(2015, 6, 1, 21, 49, 41, tzinfo=UTC)


def test_latin1_feed_without_declaration_decodes_portuguese(corpus_dir: Path) -> None:
    records, batch = _only(corpus_dir, "rssparser_uol_noticias_latin1_no_xmldecl_ptbr_dates.rss")
    assert len(records) == 15
    assert records[0].title.startswith("Ibope: Bolsonaro perde de Haddad, Ciro e Alckmin")
    assert "simulações" in records[0].title
    assert records[0].summary is not None
    assert records[0].summary.startswith("Líder na pesquisa Ibope")
    # Portuguese day/month names cannot be parsed: no timestamp rather than a wrong one.
    assert all(r.source_timestamp is None for r in records)
    assert any("declares no text encoding" in w for w in batch.warnings)


def test_declared_iso8859_1_feed(corpus_dir: Path) -> None:
    records, batch = _only(corpus_dir, "rssparser_jn_pt_iso8859-1_crlf.rss")
    assert len(records) == 40
    assert records[0].title == "Mãe de utente é a nova presidente da Raríssimas"
    assert records[0].source_timestamp == datetime(2018, 1, 3, 13, 47, tzinfo=UTC)
    assert batch.warnings == []


def test_koi8r_feed_without_encoding_is_parsed_with_a_warning(corpus_dir: Path) -> None:
    # Without any declared encoding the KOI8-R bytes are decoded as Latin-1 (garbled), and
    # the batch says so instead of failing or pretending.
    records, batch = _only(corpus_dir, "feedparser_illformed_koi8r_no_encoding_decl.xml")
    assert len(records) == 1
    assert records[0].title
    assert any("declares no text encoding" in w for w in batch.warnings)


def test_utf16_feed_is_an_empty_feed(corpus_dir: Path) -> None:
    records, batch = _only(corpus_dir, "feedparser_encoding_utf16le_bom.xml")
    assert (records, batch.rejects, batch.warnings) == ([], [], [])


def test_ill_formed_feeds_keep_what_was_recovered(corpus_dir: Path) -> None:
    records, batch = _only(corpus_dir, "feedparser_illformed_unclosed_rss_tag_amp_link.xml")
    assert [r.url for r in records] == ["http://link/get?a=1&b=2"]
    assert any("is ill-formed" in w for w in batch.warnings)
    records, batch = _only(corpus_dir, "feedparser_illformed_incomplete_cdata.xml")
    assert (records, len(batch.rejects)) == ([], 1)
    assert any("is ill-formed" in w for w in batch.warnings)


def test_entry_with_nothing_usable_is_rejected(corpus_dir: Path) -> None:
    for name in (
        "rssparser_incomplete_fields.atom",
        "feedparser_guid_permalink_invalid_url_xml_base.xml",
    ):
        records, batch = _only(corpus_dir, name)
        assert records == []
        assert [r.reason for r in batch.rejects] == ["entry has no title, no link and no summary"]


def test_transfermarkt_leading_newlines_are_trimmed(corpus_dir: Path) -> None:
    records, _ = _only(corpus_dir, "rssparser_transfermarkt_leading_newline_in_values.rss")
    assert len(records) == 10
    first = records[0]
    assert first.title.startswith("Manager bewertet Transfers | Eberl lobt BVB für Pulisic-Deal")
    assert first.url is not None
    assert first.url.startswith("http://www.transfermarkt.de/eberl-lobt-bvb")
    assert first.source_timestamp == datetime(2019, 1, 7, 16, 19, 19, tzinfo=UTC)
    assert first.summary is not None
    assert "ö" in "".join(r.summary or "" for r in records)  # &ouml; unescaped


def test_rdf_and_atom_dates_are_utc(corpus_dir: Path) -> None:
    craigslist, _ = _only(corpus_dir, "rssparser_craigslist_rdf_rss1.rss")
    assert len(craigslist) == 25
    assert craigslist[0].source_timestamp == datetime(2017, 6, 21, 17, 33, 10, tzinfo=UTC)
    heise, _ = _only(corpus_dir, "rssparser_heise_developer_de.atom")
    assert len(heise) == 15
    assert heise[0].source_timestamp == datetime(2016, 2, 1, 16, 22, tzinfo=UTC)
    narro, _ = _only(corpus_dir, "rssparser_narro_utc_zone_name.rss")
    assert narro[0].source_timestamp == datetime(2015, 2, 20, 9, 51, 15, tzinfo=UTC)


def test_relative_uri_with_xml_base_in_content(corpus_dir: Path) -> None:
    records, _ = _only(corpus_dir, "feedparser_relative_uri_nonascii_xml_base.xml")
    [record] = records
    assert (record.title, record.summary) == ("uri", "uri")


# --------------------------------------------------------------------------- corrupted bodies

_INSERTS = (b"<", b">", b"&", b"<![CDATA[", b"]]>", b"&#xFFFFFFFFFF;", b"\x00", b"</item>", b'"')


def _mutations(seeds: list[bytes], count: int, seed: int) -> list[bytes]:
    """Deterministic damaged copies of ``seeds``: flipped bytes, cuts and stray markup."""
    rnd = random.Random(seed)
    result = []
    for _ in range(count):
        body = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 12)):
            if not body:
                break
            at = rnd.randrange(len(body))
            roll = rnd.random()
            if roll < 0.4:
                body[at] = rnd.randrange(256)
            elif roll < 0.7:
                del body[at : at + rnd.randint(1, 40)]
            else:
                body[at:at] = rnd.choice(_INSERTS)
        result.append(bytes(body))
    return result


def _seed_bodies(fixtures_dir: Path, corpus_dir: Path, folder: str, pattern: str) -> list[bytes]:
    seeds = [p.read_bytes() for p in sorted((fixtures_dir / folder).glob(pattern))]
    return seeds + [p.read_bytes() for p in sorted((corpus_dir / folder).glob(pattern))]


def test_corrupted_feeds_fail_cleanly(fixtures_dir: Path, corpus_dir: Path) -> None:
    """Every damaged feed is either a clean SourceError or a valid batch, and most are still
    read (feeds are recovered, not refused): a parser that refused everything would fail."""
    seeds = _seed_bodies(fixtures_dir, corpus_dir, "rss", "*")
    outcomes = {"parsed": 0, "with_records": 0, "refused": 0}
    for body in _mutations(seeds, 150, seed=20241105):
        try:
            batch = parse_feed(
                body, feed_url="https://f.test/x", content_type=None, fetched_at=FETCHED_AT
            )
        except SourceError:
            outcomes["refused"] += 1
            continue
        check_batch_invariants(batch)
        outcomes["parsed"] += 1
        outcomes["with_records"] += bool(batch.records)
    assert outcomes["parsed"] >= 100, outcomes
    assert outcomes["with_records"] >= 60, outcomes


def test_corrupted_json_fails_cleanly(fixtures_dir: Path, corpus_dir: Path) -> None:
    seeds = _seed_bodies(fixtures_dir, corpus_dir, "coingecko", "*.json")
    seeds += _seed_bodies(fixtures_dir, corpus_dir, "coinpaprika", "*.json")
    outcomes = {"parsed": 0, "with_records": 0, "refused": 0}
    for body in _mutations(seeds, 300, seed=20241106):
        for parse in (parse_markets_page, parse_tickers):
            try:
                batch = parse(body, fetched_at=FETCHED_AT)
            except SourceError:
                outcomes["refused"] += 1
                continue
            check_batch_invariants(batch)
            outcomes["parsed"] += 1
            outcomes["with_records"] += bool(batch.records)
    # A damaged JSON body is mostly undecodable (refused whole), but a byte flipped inside a
    # value leaves a valid array whose bad items become rejects: both outcomes must occur.
    assert outcomes["refused"] >= 300, outcomes
    assert outcomes["parsed"] >= 12, outcomes
    assert outcomes["with_records"] >= 6, outcomes
