"""Rows -> records and rejects: values, units, symbols and quotes (sources/csv/rows.py)."""

from __future__ import annotations

from pathlib import Path

from .support import by_time, records, rejects, run, source, utc, warnings, write

SERIES = Path(__file__).parents[4] / "fixtures" / "csv" / "series"


async def test_row_rejects_name_the_problem(tmp_path: Path) -> None:
    text = (
        "Date,Close,Volume BTC\n"
        "2021-01-01,10,5\n"
        "2021-01-02,abc,5\n"
        "someday,10,5\n"
        "2021-01-04,0,5\n"
        "2021-01-05,-3,5\n"
        "2021-01-06,,\n"
        "2021-01-07,10,1x\n"
        "2021-01-08\n"
        "2021-01-09,,7\n"
        "2021-01-10,5,-7\n"
    )
    path = write(tmp_path / "btc.csv", text)
    batches = await run(source(path))
    recs = records(batches)
    assert [r.source_timestamp.day for r in recs] == [1, 9]
    assert recs[1].price is None
    assert recs[1].volume_base == 7.0
    reasons = {r.payload["line"]: r.reason for r in rejects(batches)}
    assert reasons[3] == "bad number in column 'Close': 'abc' (not a number)"
    assert reasons[4].startswith("bad date in column 'Date': 'someday'")
    assert reasons[5] == "non-positive price in column 'Close': '0'"
    assert reasons[6] == "non-positive price in column 'Close': '-3'"
    assert reasons[7] == "no price in column 'Close' and no other value"
    assert reasons[8].startswith("bad number in column 'Volume BTC': '1x'")
    assert reasons[9] == "row has 1 cells, the header has 3"
    assert reasons[11] == "negative volume in column 'Volume BTC': '-7'"
    rej = rejects(batches)[0]
    assert rej.source_key == f"{path}:3"
    assert rej.payload == {
        "header": ["Date", "Close", "Volume BTC"],
        "row": ["2021-01-02", "abc", "5"],
        "line": 3,
    }
    assert sum(b.processed for b in batches) == 10


async def test_echoed_values_are_cut(tmp_path: Path) -> None:
    cell = "9" * 50 + "x" * 5000
    path = write(tmp_path / "btc.csv", f"Date,Close\n2021-01-01,{cell}\n")
    (rej,) = rejects(await run(source(path)))
    assert len(rej.reason) < 300
    assert "…(+4950 chars)" in rej.reason
    assert rej.payload["row"][1] == cell  # the payload keeps the row as received


async def test_coin_names_map_to_symbols(tmp_path: Path) -> None:
    text = (
        "currency,date,close\n"
        "bitcoin,2019-04-24,5000\n"
        "ethereum,2019-04-24,160\n"
        "bitcoin-cash,2019-04-24,280\n"
        "Shiny Coin,2019-04-24,1\n"
        "BTC,2019-04-25,5100\n"
        ",2019-04-25,1\n"
    )
    batches = await run(source(write(tmp_path / "all.csv", text)))
    got = [(r.symbol, r.name) for r in records(batches)]
    assert got == [
        ("BTC", "bitcoin"),
        ("ETH", "ethereum"),
        ("BCH", "bitcoin-cash"),
        ("SHINY-COIN", "Shiny Coin"),
        ("BTC", None),
    ]
    (rej,) = rejects(batches)
    assert rej.reason == "empty coin name in column 'currency'"


async def test_each_row_keeps_its_own_pair(tmp_path: Path) -> None:
    text = (
        "date,symbol,close\n"
        "2021-01-01,BTC/USD,29000\n"
        "2021-01-01,BTC/EUR,23700\n"
        "2021-01-01,ETH/BTC,0.0253\n"
        "2021-01-01,BTCUSDT,29010\n"
        "2021-01-01,SOL,1.5\n"
    )
    batches = await run(source(write(tmp_path / "pairs.csv", text)))
    got = [(r.symbol, r.quote, r.price_usd) for r in records(batches)]
    assert got == [
        ("BTC", "USD", 29000.0),
        ("BTC", "EUR", None),  # a EUR price is kept in its own fields, never as USD
        ("ETH", "BTC", None),
        ("BTC", "USDT", None),  # USDT is not USD: stablecoins depeg
        ("SOL", None, None),  # unknown stays unknown ...
    ]
    # ... and is said once, with the option that declares it.
    said = [w for w in warnings(batches) if "quote currency of the prices is unknown" in w]
    assert len(said) == 1
    assert "CSV_COLUMN_MAP=pairs.csv:quote=<CODE>" in said[0]
    quote_how = {r.symbol + str(r.quote): r.series_info["quote"] for r in records(batches)}  # type: ignore[index]
    assert quote_how["BTCUSD"] == "symbol pair"
    assert quote_how["SOLNone"] == "unknown"


async def test_row_pair_against_the_file_name_quote(tmp_path: Path) -> None:
    path = write(tmp_path / "btc_usd_mixed.csv", "date,symbol,close\n2021-01-01,BTC/EUR,23700\n")
    batches = await run(source(path))
    assert [r.quote for r in records(batches)] == ["EUR"]
    assert any("quoted in EUR while the file says USD" in w for w in warnings(batches))


async def test_volumes_in_coin_units(fixtures_dir: Path) -> None:
    # Investing.com's "Vol." is in base units (ETH here), as the layout documents.
    batches = await run(source(fixtures_dir / "csv" / "eth_investing_messy.csv"))
    newest = by_time(records(batches))[utc(2021, 1, 14)]
    assert (newest.volume_base, newest.volume_quote) == (2_340_000.0, None)
    # "Volume BTC" / "Volume USDT": each in its own field.
    daily = by_time(records(await run(source(SERIES / "Binance_BTCUSDT_d.csv"))))
    row = daily[utc(2020, 12, 30)]
    assert (row.volume_base, row.volume_quote) == (74810.474298, 2120000022.45)


async def test_a_volume_of_unknown_unit_is_left_empty_and_said_once(tmp_path: Path) -> None:
    gemini = SERIES / "Gemini_BTCUSD_1h.csv"
    batches = await run(source(gemini))
    assert {(r.volume_base, r.volume_quote) for r in records(batches)} == {(None, None)}
    (said,) = [w for w in warnings(batches) if "Volume" in w]
    assert "CSV_COLUMN_MAP=Gemini_BTCUSD_1h.csv:volume_unit=base|quote" in said
    declared = await run(source(gemini, column_map="Gemini_*.csv:volume_unit=base"))
    assert by_time(records(declared))[utc(2020, 12, 30)].volume_base == 43.6
    assert not [w for w in warnings(declared) if "Volume" in w]


async def test_a_volume_in_a_third_currency_is_left_empty(tmp_path: Path) -> None:
    path = write(tmp_path / "eth.csv", "date,symbol,close,Volume USD\n2021-01-01,ETH/EUR,600,9\n")
    batches = await run(source(path))
    (rec,) = records(batches)
    assert (rec.quote, rec.volume_base, rec.volume_quote) == ("EUR", None, None)
    assert any(
        "column 'Volume USD' is in USD, neither the base ETH nor the quote EUR" in w
        for w in warnings(batches)
    )


async def test_the_source_yields_repeated_rows_in_file_order(tmp_path: Path) -> None:
    # The store applies the one rule for duplicates in a batch (the later row wins, counted).
    path = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,10\n2021-01-01,11\n")
    recs = records(await run(source(path)))
    assert [r.price for r in recs] == [10.0, 11.0]
    assert recs[0].source_timestamp == recs[1].source_timestamp


async def test_records_are_lean(tmp_path: Path) -> None:
    body = "".join(f"2021-01-{d:02d},BTC/USD,{d}\n" for d in range(1, 6))
    recs = records(await run(source(write(tmp_path / "x.csv", "Date,Symbol,Close\n" + body))))
    assert {r.metadata is None for r in recs} == {True}
    assert len({id(r.series_info) for r in recs}) == 1  # one shared dict per series
    assert {r.coin_id for r in recs} == {None}


async def test_what_a_later_batch_learns_is_still_said(tmp_path: Path) -> None:
    body = "".join(f"2021-01-{d:02d},BTC/USD,{d}\n" for d in range(1, 21))
    body += "2021-01-21,ETH,5\n"  # a new series in the last batch, with no known quote
    batches = await run(source(write(tmp_path / "x.csv", "Date,Symbol,Close\n" + body)), None, 7)
    (late,) = [b for b in batches if any(r.symbol == "ETH" for r in b.records)]
    assert late is not batches[0]
    assert any("quote currency of the prices is unknown" in w for w in late.warnings)


async def test_declared_volume_columns(tmp_path: Path) -> None:
    text = "Date,Close,Vol Coins,Vol Money\n2021-01-01,10,3,30\n"
    path = write(tmp_path / "btc_usd.csv", text)
    cmap = "btc_usd.csv:volume_base=Vol Coins,volume_quote=Vol Money"
    (rec,) = records(await run(source(path, column_map=cmap)))
    assert (rec.volume_base, rec.volume_quote) == (3.0, 30.0)


async def test_a_number_is_never_a_coin(tmp_path: Path) -> None:
    # An export whose "name" holds an id (as CoinMarketCap's does) must not create coin "2781".
    path = write(tmp_path / "export.csv", "date,name,close\n2024-01-01,2781,42000\n")
    batches = await run(source(path))
    assert not records(batches)
    (rej,) = rejects(batches)
    assert rej.reason.startswith("'2781' in column 'name' is a number, not a coin")
    assert "CSV_COLUMN_MAP=export.csv:default_symbol=<SYMBOL>" in rej.reason
