"""Per-file checkpoints: unchanged, appended, rewritten, shrunk, touched, old cursors."""

from __future__ import annotations

import os
from pathlib import Path

from cryptoetl.sources.csv.checkpoint import VERSION

from .support import (
    last_cursor,
    records,
    rejects,
    run,
    source,
    state,
    utc,
    warnings,
    write,
)


async def test_unchanged_file_yields_no_batches(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,1\n")
    cursor = last_cursor(await run(source(path)))
    assert await run(source(path), cursor) == []


async def test_appended_rows_only(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,1\n2021-01-02,2\n", "\r\n")
    first = await run(source(path))
    assert len(records(first)) == 2
    with path.open("ab") as f:
        f.write(b"2021-01-03,3\r\n2021-01-04,4\r\n")
    second = await run(source(path), last_cursor(first))
    assert [(r.price, r.source_timestamp.day) for r in records(second)] == [(3.0, 3), (4.0, 4)]
    assert second[0].raw[0].payload["first_line"] == 4
    assert not any("re-reading" in w for w in warnings(second))
    st = state(second, path)
    assert st["offset"] == path.stat().st_size
    assert st["line"] == 5
    assert st["last_timestamp"] == "2021-01-04T00:00:00Z"
    assert await run(source(path), last_cursor(second)) == []


async def test_an_append_continues_the_same_series(tmp_path: Path) -> None:
    # The first read found a daily series; hourly rows appended later (which a fresh
    # detection might see otherwise) stay in the series the checkpoint recorded.
    body = "".join(f"2021-01-0{d},{d}\n" for d in range(1, 5))
    path = write(tmp_path / "btc_usd.csv", "Date,Close\n" + body)
    first = await run(source(path))
    assert {(r.venue, r.quote, r.interval) for r in records(first)} == {
        ("file:btc_usd", "USD", "1d")
    }
    assert state(first, path)["series"]["interval"] == "1d"
    with path.open("a") as f:
        f.write("".join(f"2021-01-05 0{h}:00:00,{h + 10}\n" for h in range(5)))
    second = await run(source(path), last_cursor(first))
    assert {(r.venue, r.quote, r.interval) for r in records(second)} == {
        ("file:btc_usd", "USD", "1d")
    }
    assert not [w for w in warnings(second) if "quote" in w or "interval" in w]


async def test_a_file_with_no_rows_yet_decides_its_series_on_its_first_rows(tmp_path: Path) -> None:
    path = write(tmp_path / "eth_usdt.csv", "Date,Close\n")
    first = await run(source(path))
    assert state(first, path)["series"] is None
    with path.open("a") as f:
        f.write("".join(f"2021-01-01 0{h}:00:00,{h + 1}\n" for h in range(4)))
    recs = records(await run(source(path), last_cursor(first)))
    assert {(r.symbol, r.quote, r.interval) for r in recs} == {("ETH", "USDT", "1h")}


async def test_resume_after_a_crash_mid_file(tmp_path: Path) -> None:
    lines = "".join(f"2021-01-{d:02d},{d}\n" for d in range(1, 11))
    path = write(tmp_path / "btc.csv", "Date,Close\n" + lines)
    batches = await run(source(path), batch_size=4)
    committed = batches[0].cursor  # the pipeline committed only the first batch, then died
    assert committed is not None
    assert not committed["files"][str(path)]["eof"]
    again = await run(source(path), committed, batch_size=4)
    assert [r.price for r in records(again)] == [float(d) for d in range(5, 11)]


async def test_rewritten_file_is_reread(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,1\n2021-01-02,2\n")
    cursor = last_cursor(await run(source(path)))
    replacement = write(
        tmp_path / "new.tmp", "Date,Close\n2021-01-01,10\n2021-01-02,20\n2021-01-03,30\n"
    )
    os.replace(replacement, path)  # new inode, grown: must not be taken for an append
    batches = await run(source(path), cursor)
    assert [r.price for r in records(batches)] == [10.0, 20.0, 30.0]
    assert any("replaced" in w for w in warnings(batches))


async def test_an_in_place_rewrite_is_not_taken_for_an_append(tmp_path: Path) -> None:
    # Issue 14.6: the first 4 KB and the byte before the old offset are unchanged, a price in
    # the already-read part is corrected, and rows are appended. Only the hash of the whole
    # prefix tells: the file is re-read, with a warning.
    head = "Date,Close,Note\n" + "".join(
        f"2020-01-01 {h:02d}:00:00,1,{'n' * 300}\n" for h in range(20)
    )
    body = [f"2021-01-{d:02d},{d},ok\n" for d in range(1, 21)]
    path = write(tmp_path / "btc.csv", head + "".join(body))
    first = await run(source(path))
    old_offset = state(first, path)["offset"]
    assert len(head) > 4096
    body[9] = "2021-01-10,99,ok\n"  # same length: 10 -> 99
    write(path, head + "".join(body) + "2021-01-21,21,ok\n")
    data = path.read_bytes()
    assert data[:4096] == (head + "".join(body))[:4096].encode()
    assert data[old_offset - 1 : old_offset] == b"\n"
    second = await run(source(path), last_cursor(first))
    prices = {r.source_timestamp: r.price for r in records(second)}
    assert prices[utc(2021, 1, 10)] == 99.0  # the correction is read
    assert prices[utc(2021, 1, 21)] == 21.0
    assert any(
        "the part read before has changed (rewritten in place)" in w for w in warnings(second)
    )


async def test_a_shrunk_file_is_reread_and_its_old_rows_are_kept(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,1\n2021-01-02,2\n")
    cursor = last_cursor(await run(source(path)))
    with path.open("r+") as f:
        f.truncate(len("Date,Close\n2021-01-01,1\n"))
    batches = await run(source(path), cursor)
    assert [r.price for r in records(batches)] == [1.0]
    (said,) = [w for w in warnings(batches) if "shrank" in w]
    assert "shrank from 37 to 24 bytes" in said
    assert "rows it no longer has are kept (observations are history)" in said


async def test_a_same_size_edit_is_reread(tmp_path: Path) -> None:
    path = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,1\n")
    cursor = last_cursor(await run(source(path)))
    with path.open("r+") as f:  # same size, new content and mtime
        f.write("Date,Close\n2021-01-01,9\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    batches = await run(source(path), cursor)
    assert [r.price for r in records(batches)] == [9.0]
    assert any("rewritten in place" in w for w in warnings(batches))


async def test_a_touch_costs_a_hash_and_stores_nothing_again(tmp_path: Path) -> None:
    # Issue 14.7: a touch used to re-read the file and store its rejects again.
    path = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,1\n2021-01-02,x\n")
    first = await run(source(path))
    assert len(rejects(first)) == 1
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    touched = await run(source(path), last_cursor(first))
    assert not records(touched)
    assert not rejects(touched)
    assert state(touched, path)["mtime_ns"] == path.stat().st_mtime_ns  # recorded: skip next
    assert await run(source(path), last_cursor(touched)) == []


async def test_a_reread_reproduces_its_rejects_exactly(tmp_path: Path) -> None:
    # The store keeps rejects unique on (source, source_key, payload hash): a re-read (here:
    # the file replaced by a copy of itself) must give the same keys and payloads.
    path = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,1\n2021-01-02,x\n,3\n")
    first = await run(source(path))
    os.replace(write(tmp_path / "copy.tmp", path.read_text()), path)
    again = await run(source(path), last_cursor(first))
    assert any("replaced" in w for w in warnings(again))
    keys = [(r.source_key, r.payload, r.reason) for r in rejects(first)]
    assert keys == [(r.source_key, r.payload, r.reason) for r in rejects(again)]
    assert [k for k, _, _ in keys] == [f"{path}:3", f"{path}:4"]
    assert all(payload for _, payload, _ in keys)


async def test_trailing_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "btc.csv"
    path.write_bytes(b"Date,Close\n2021-01-01,1\n2021-01-02,87")  # a writer is mid-row
    first = await run(source(path))
    assert [r.price for r in records(first)] == [1.0, 87.0]  # processed at EOF...
    st = state(first, path)
    assert st["offset"] == len(b"Date,Close\n2021-01-01,1\n")  # ...but not counted past
    assert st["line"] == 2
    assert st["eof"]
    assert await run(source(path), last_cursor(first)) == []  # unchanged: nothing to do
    with path.open("ab") as f:
        f.write(b"46.6\n2021-01-03,3\n")
    second = await run(source(path), last_cursor(first))
    assert [(r.source_timestamp, r.price) for r in records(second)] == [
        (utc(2021, 1, 2), 8746.6),  # the same identity: the upsert corrects it
        (utc(2021, 1, 3), 3.0),
    ]
    assert state(second, path)["offset"] == path.stat().st_size


async def test_a_full_batch_ending_on_the_trailing_line(tmp_path: Path) -> None:
    path = tmp_path / "btc.csv"
    path.write_bytes(b"Date,Close\n2021-01-01,1\n2021-01-02,2")
    batches = await run(source(path), batch_size=2)
    assert [b.processed for b in batches] == [2, 0]
    assert all(b.cursor["files"][str(path)]["offset"] == 24 for b in batches)  # type: ignore[index]


async def test_cursor_keeps_other_files_and_drops_unlisted_ones(tmp_path: Path) -> None:
    a = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,1\n")
    b = write(tmp_path / "eth.csv", "Date,Close\n2021-01-01,2\n")
    cursor = last_cursor(await run(source(a, b)))
    with b.open("a") as f:
        f.write("2021-01-02,3\n")
    batches = await run(source(a, b), cursor)
    assert set(batches[0].cursor["files"]) == {str(a), str(b)}  # type: ignore[index]
    assert batches[0].cursor["files"][str(a)] == cursor["files"][str(a)]  # type: ignore[index]
    batches = await run(source(b), {"files": {**cursor["files"], "junk": {"bad": 1}}})
    assert set(last_cursor(batches)["files"]) == {str(b)}


async def test_an_old_cursor_loads_and_its_files_are_read_again(tmp_path: Path) -> None:
    # A FileState as the code before market series wrote it (no version, no series, no prefix
    # hash, a head hash instead): it loads, and the file is read again whole, so its rows
    # upsert onto the series the new source derives.
    path = write(tmp_path / "btc.csv", "Date,Close\n2021-01-01,1\n2021-01-02,2\n")
    st = path.stat()
    old = {
        "dev": st.st_dev,
        "inode": st.st_ino,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "head_hash": "ab" * 32,
        "head_len": st.st_size,
        "offset": st.st_size,
        "line": 3,
        "header": ["Date", "Close"],
        "delimiter": ",",
        "date_order": None,
        "date_order_from": None,
        "dm_evidence": [False, False],
        "date_sep": None,
        "last_timestamp": "2021-01-02T00:00:00Z",
        "options_hash": "",
        "eof": True,
        "error": None,
    }
    batches = await run(source(path), {"files": {str(path): old}})
    assert [r.price for r in records(batches)] == [1.0, 2.0]
    assert any("written by an older version" in w for w in warnings(batches))
    new = state(batches, path)
    assert new["version"] == VERSION
    assert new["series"]["venue"] == "file:btc"
    assert "head_hash" not in new
