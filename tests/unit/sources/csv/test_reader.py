"""Reading files into batches: our fixtures, raw payloads, headers, file-level problems."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from pathlib import Path

import pytest

from .support import (
    by_time,
    last_cursor,
    raw_rows,
    records,
    rejects,
    run,
    source,
    state,
    utc,
    warnings,
    write,
)

SERIES = Path(__file__).parents[4] / "fixtures" / "csv" / "series"


# ---------------------------------------------------------------------------------------------
# our fixtures
# ---------------------------------------------------------------------------------------------


async def test_fixture_btc_usd_daily(fixtures_dir: Path) -> None:
    path = fixtures_dir / "csv" / "btc_usd_daily.csv"
    batches = await run(source(path))
    recs = records(batches)
    assert len(recs) == 30
    assert not rejects(batches)
    first = recs[0]
    assert first.source_timestamp == utc(2021, 3, 1)
    assert (first.source_type, first.venue, first.symbol, first.quote, first.interval) == (
        "csv",
        "file:btc_usd_daily",
        "BTC",
        "USD",
        "1d",
    )
    assert first.name is None
    assert first.price == first.price_usd == 43483.32
    assert (first.open, first.high, first.low) == (45210.37, 45780.34, 42459.32)
    # A plain "Volume" of an unknown layout: its unit is not known, so it is not stored.
    assert (first.volume_base, first.volume_quote) == (None, None)
    assert first.metadata is None
    assert first.series_info == {
        "venue": "derived from the file name",
        "quote": "file name",
        "interval": "row spacing",
    }
    assert (first.coin_id, first.rank, first.change_pct, first.market_cap) == (None,) * 4
    assert recs[-1].source_timestamp == utc(2021, 3, 30)
    st = state(batches, path)
    assert st["eof"]
    assert st["offset"] == path.stat().st_size
    assert st["line"] == 31
    assert st["last_timestamp"] == "2021-03-30T00:00:00Z"
    assert st["series"] == {
        "venue": "file:btc_usd_daily",
        "quote": "USD",
        "interval": "1d",
        "info": first.series_info,
    }


async def test_fixture_multi_coin(fixtures_dir: Path) -> None:
    recs = records(await run(source(fixtures_dir / "csv" / "multi_coin.csv")))
    assert len(recs) == 24
    assert {r.symbol for r in recs} == {"BTC", "ETH", "SOL"}
    first = recs[0]
    assert (first.symbol, first.price, first.market_cap) == ("BTC", 30710.69, 595787386000)
    assert (first.quote, first.interval) == (None, "1d")  # daily per coin; quote not said
    assert len({(r.symbol, r.source_timestamp) for r in recs}) == 24


async def test_fixture_messy_investing_style(fixtures_dir: Path) -> None:
    path = fixtures_dir / "csv" / "eth_investing_messy.csv"
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in raw
    assert not raw.endswith(b"\n")
    batches = await run(source(path))
    recs = by_time(records(batches))
    assert len(recs) == 20
    assert not rejects(batches)
    newest = recs[utc(2021, 1, 14)]
    assert (newest.symbol, newest.venue, newest.interval) == ("ETH", "investing.com", "1d")
    assert newest.price == 1228.41
    assert newest.open == 1195.27
    assert newest.volume_base == 2340000.0  # "Vol.": base units (ETH), as Investing.com does
    assert newest.change_pct == 2.77
    assert recs[utc(2021, 1, 13)].change_pct == -0.70
    k_rows = [r for r in recs.values() if r.volume_base and r.volume_base < 1_000_000]
    assert k_rows  # "K" volumes
    oldest = recs[utc(2020, 12, 26)]
    assert oldest.volume_base is None
    assert oldest.change_pct is None
    assert oldest.price == 1310.99
    # The raw payload keeps the lines as in the file (quotes and all).
    payload = batches[0].raw[0].payload
    assert payload["header"][0] == "Date"
    assert payload["first_line"] == 2
    assert raw_rows(payload)[0][:2] == ["Jan 14, 2021", "1,228.41"]
    assert '"1,228.41"' in payload["text"]


async def test_fixture_unix_ms_and_s(fixtures_dir: Path) -> None:
    path = fixtures_dir / "csv" / "btcusd_unix_mixed.csv"
    batches = await run(source(path))
    recs = records(batches)
    assert len(recs) == 12
    assert not rejects(batches)
    rows = raw_rows(batches[0].raw[0].payload)
    units = {len(row[0]) for row in rows}
    assert units == {13, 10}  # the file really mixes milliseconds and seconds
    for rec, row in zip(recs, rows, strict=True):
        assert rec.source_timestamp.strftime("%Y-%m-%d %H:%M:%S") == row[1]
        assert (rec.symbol, rec.quote) == ("BTC", "USD")
        assert rec.volume_quote == float(row[7])  # Volume USD
        assert rec.volume_base == float(row[8])  # Volume BTC


async def test_fixture_european_semicolon(fixtures_dir: Path) -> None:
    path = fixtures_dir / "csv" / "xrp_eu_semicolon.csv"
    batches = await run(source(path))
    recs = records(batches)
    assert len(recs) == 15
    assert not rejects(batches)
    assert recs[0].source_timestamp == utc(2019, 4, 1)
    assert recs[0].price == pytest.approx(0.312)  # "0,312": decimal comma in a ';' file
    assert recs[1].price == pytest.approx(0.3202)
    assert recs[0].market_cap == 13089560000.0
    st = state(batches, path)
    assert st["delimiter"] == ";"
    assert st["date_order"] == "dmy"


async def test_fixture_directory_run_and_unchanged_rerun(fixtures_dir: Path) -> None:
    src = source(fixtures_dir / "csv")
    first = await run(src, batch_size=7)
    assert sum(b.processed for b in first) == len(records(first)) + len(rejects(first))
    assert all(len(b.records) + len(b.rejects) <= 7 for b in first)
    assert await run(src, last_cursor(first)) == []


# ---------------------------------------------------------------------------------------------
# headers: banners, headerless files
# ---------------------------------------------------------------------------------------------


async def test_blank_lines_preamble_and_line_numbers(tmp_path: Path) -> None:
    text = "https://www.example.com/data\nDate,Symbol,Close\n\n2021-01-01,ETHUSDT,10\n\n2021-01-02,ETHUSDT,11"
    batches = await run(source(write(tmp_path / "x.csv", text)))
    recs = records(batches)
    assert [(r.symbol, r.quote) for r in recs] == [("ETH", "USDT")] * 2
    assert batches[0].raw[0].payload["first_line"] == 4
    assert sum(b.processed for b in batches) == 2


async def test_a_banner_names_the_venue(tmp_path: Path) -> None:
    text = "Bitstamp BTC/USD daily, courtesy of CryptoDataDownload\nDate,Close\n2021-01-01,1\n"
    (rec,) = records(await run(source(write(tmp_path / "btc.csv", text))))
    assert (rec.venue, rec.series_info["venue"]) == ("bitstamp", "banner")  # type: ignore[index]


async def test_a_headerless_file_needs_a_declared_header(fixtures_dir: Path) -> None:
    path = fixtures_dir / "csv" / "series" / "market-price.csv"
    batches = await run(source(path))
    (rej,) = rejects(batches)
    assert rej.source_key == f"{path}:0"
    assert (
        "it looks like data: a headerless file needs CSV_COLUMN_MAP=market-price.csv:header="
        in rej.reason
    )
    cmap = "market-price.csv:header=Date|Value,default_symbol=BTC,quote=USD,venue=blockchain.info"
    batches = await run(source(path, column_map=cmap))
    recs = by_time(records(batches))
    assert len(recs) == 5  # the first line is data; one zero price is rejected
    first = recs[utc(2017, 12, 27)]
    assert (first.symbol, first.quote, first.venue, first.interval) == (
        "BTC",
        "USD",
        "blockchain.info",
        "1d",
    )
    assert first.price_usd == 15838.07
    (zero,) = rejects(batches)
    assert (zero.source_key, zero.payload["line"]) == (f"{path}:5", 5)
    assert batches[0].raw[0].payload["header"] == ["Date", "Value"]


async def test_a_declared_header_over_a_real_one_skips_it(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "date,value\n2021-01-01,1\n")
    batches = await run(source(path, column_map="btc.csv:header=Date|Value"))
    assert [r.price for r in records(batches)] == [1.0]
    assert not rejects(batches)


# ---------------------------------------------------------------------------------------------
# batches, encodings, file-level problems, paths
# ---------------------------------------------------------------------------------------------


async def test_non_utf8_line_is_decoded_as_latin1(tmp_path: Path) -> None:
    path = tmp_path / "btc.csv"
    path.write_bytes(b"Date,Close,Note\n2021-01-01,10,caf\xe9\n")
    batches = await run(source(path))
    assert records(batches)[0].price == 10.0
    assert raw_rows(batches[0].raw[0].payload)[0][2] == "café"
    assert any("line 2 and maybe later ones are not UTF-8" in w for w in warnings(batches))


async def test_batches_are_bounded_and_carry_one_raw_payload(tmp_path: Path) -> None:
    lines = "".join(f"2021-01-{d:02d},{d}\n" for d in range(1, 31))
    path = write(tmp_path / "btc.csv", "Date,Close\n" + lines)
    batches = await run(source(path), batch_size=7)
    assert [b.processed for b in batches] == [7, 7, 7, 7, 2]
    assert [b.raw[0].payload["first_line"] for b in batches] == [2, 9, 16, 23, 30]
    assert all(len(b.raw) == 1 and b.raw[0].source_key == str(path) for b in batches)
    states = [b.cursor["files"][str(path)] for b in batches if b.cursor]
    assert [s["line"] for s in states] == [8, 15, 22, 29, 31]
    assert [s["eof"] for s in states] == [False] * 4 + [True]


async def test_file_level_problems_do_not_stop_other_files(tmp_path: Path) -> None:
    bad = write(tmp_path / "a_notes.csv", "hello,world\nfoo,bar\n")
    nosym = write(tmp_path / "b_prices.csv", "Date,Close\n2021-01-01,1\n")
    cr_only = write(tmp_path / "c_eth.csv", "Date,Close\n2021-01-01,1\n", "\r")
    utf16 = tmp_path / "c_btc.csv"
    utf16.write_bytes("Date,Close\n2021-01-01,1\n".encode("utf-16"))
    good = write(tmp_path / "d_btc.csv", "Date,Close\n2021-01-01,1\n")
    src = source(tmp_path)
    batches = await run(src)
    assert [r.symbol for r in records(batches)] == ["BTC"]
    file_rejects = {r.source_key: r for r in rejects(batches)}
    assert set(file_rejects) == {f"{p}:0" for p in (bad, nosym, cr_only, utf16)}
    assert "no recognisable date and price/value columns" in file_rejects[f"{bad}:0"].reason
    assert file_rejects[f"{bad}:0"].payload == {"file": str(bad), "header": None}
    assert "no symbol column" in file_rejects[f"{nosym}:0"].reason
    assert str(nosym) in file_rejects[f"{nosym}:0"].reason
    assert "UTF-16" in file_rejects[f"{utf16}:0"].reason
    assert "CR-only line ends" in file_rejects[f"{cr_only}:0"].reason
    assert sum("file rejected" in w for w in warnings(batches)) == 4
    cursor = last_cursor(batches)
    assert cursor["files"][str(bad)]["error"]
    assert cursor["files"][str(good)]["eof"]
    # Unchanged: rejected files are not rejected again every run.
    assert await run(src, cursor) == []


async def test_paths_files_directories_globs(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    a = write(tmp_path / "d" / "b_btc.csv", "Date,Close\n2021-01-01,1\n")
    b = write(tmp_path / "d" / "a_eth.CSV", "Date,Close\n2021-01-01,2\n")
    write(tmp_path / "d" / "notes.txt", "x")
    c = write(tmp_path / "sol_1.csv", "Date,Close\n2021-01-01,3\n")
    batches = await run(source(tmp_path / "d", tmp_path / "sol_*.csv", a, tmp_path / "missing.csv"))
    assert [r.symbol for r in records(batches)] == ["ETH", "BTC", "SOL"]
    assert set(last_cursor(batches)["files"]) == {str(a), str(b), str(c)}
    assert any(
        "'" + str(tmp_path / "missing.csv") + "' does not exist" in w for w in warnings(batches)
    )


async def test_empty_and_header_only_files(tmp_path: Path) -> None:
    empty = write(tmp_path / "btc_empty.csv", "")
    header = write(tmp_path / "btc_header.csv", "Date,Close\n")
    batches = await run(source(empty, header))
    assert len(batches) == 2
    assert not records(batches)
    assert not rejects(batches)
    cursor = last_cursor(batches)
    assert cursor["files"][str(header)]["offset"] == header.stat().st_size
    assert await run(source(empty, header), cursor) == []
    with header.open("a") as f:
        f.write("2021-01-01,5\n")
    assert [r.price for r in records(await run(source(empty, header), cursor))] == [5.0]


async def test_consumer_may_stop_early(tmp_path: Path) -> None:
    lines = "".join(f"2021-01-{d:02d},{d}\n" for d in range(1, 11))
    path = write(tmp_path / "btc.csv", "Date,Close\n" + lines)
    batches = source(path).batches({}, 3)
    assert isinstance(batches, AsyncGenerator)
    first = await anext(batches)
    assert len(first.records) == 3
    await batches.aclose()  # the pipeline stops between batches: the file is closed cleanly
