"""Opening files safely and bounded lines (sources/csv/stream.py)."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cryptoetl.sources.csv.stream import (
    Limits,
    LineFeed,
    NotRegularFile,
    echo,
    echo_cells,
    open_regular,
    sniff_delimiter,
)

SMALL = Limits(max_line_bytes=1024)
FeedOf = Callable[..., LineFeed]


@pytest.fixture
def feed_of() -> Iterator[FeedOf]:
    """Feeds of files opened for the test (and closed after it)."""
    opened: list[int] = []

    def open_feed(
        path: Path, limit: int | None = None, limits: Limits = SMALL, start: int = 0
    ) -> LineFeed:
        opened.append(os.open(path, os.O_RDONLY))
        size = os.path.getsize(path) if limit is None else limit
        return LineFeed(opened[-1], start, size, limits)

    yield open_feed
    for fd in opened:
        os.close(fd)


def test_line_feed_stops_before_a_line_past_the_size_snapshot(
    tmp_path: Path, feed_of: FeedOf
) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\n1,2\n3,4\n")
    feed = feed_of(path, limit=len(b"\xef\xbb\xbfa,b\n1,2\n3"))  # the size when opened
    assert list(feed) == ["a,b\n", "1,2\n"]  # "3,4" was still being written
    assert feed.position() == len(b"\xef\xbb\xbfa,b\n1,2\n")
    assert feed.first_offset == 3  # after the byte order mark
    assert feed.tail_line == 0


def test_line_feed_hands_out_an_unterminated_last_line_once_complete(
    tmp_path: Path, feed_of: FeedOf
) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"a,b\r\n1,2\r\n3,4")
    feed = feed_of(path)
    assert list(feed) == ["a,b\r\n", "1,2\r\n", "3,4"]
    assert (feed.tail_line, feed.tail_start) == (3, 10)


def test_only_newline_ends_a_line(tmp_path: Path, feed_of: FeedOf) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes("a\x0cb,c\x85d\u2028e\n".encode())
    assert list(feed_of(path)) == ["a\x0cb,c\x85d\u2028e\n"]


def test_positions_and_offsets_map_lines_to_bytes(tmp_path: Path, feed_of: FeedOf) -> None:
    path = tmp_path / "x.csv"
    lines = [f"{i},{'é' * (i % 3)},{'x' * 40}\n" for i in range(200)]
    path.write_text("".join(lines), encoding="utf-8")
    ends = [len("".join(lines[: i + 1]).encode()) for i in range(200)]
    feed = feed_of(path, limits=Limits(max_line_bytes=1024))  # several chunks
    reader = csv.reader(feed)
    for i in range(150):
        next(reader)
        assert feed.position() == ends[i]
    assert feed.offset_after(0) == 0
    assert feed.offset_after(120) == ends[119]
    feed.forget_before(140)
    with pytest.raises(LookupError):
        feed.offset_after(3)


def test_an_overlong_line_is_never_held_whole(tmp_path: Path, feed_of: FeedOf) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"a,b\n1,2\n" + b"9" * 5000 + b",3\n4,5\n" + b"z" * 3000)
    feed = feed_of(path)
    assert list(feed) == ["a,b\n", "1,2\n", "", "4,5\n", ""]
    reason, head = feed.notes[3]
    assert reason == "line is 5,003 bytes long (limit CSV_MAX_LINE_BYTES=1,024)"
    assert head == "9" * 100
    assert feed.notes[5][0] == "line is 3,000 bytes long (limit CSV_MAX_LINE_BYTES=1,024)"
    assert feed.tail_line == 5  # unterminated: the checkpoint stays before it


def test_a_chunk_that_is_not_utf8_is_decoded_line_by_line(tmp_path: Path, feed_of: FeedOf) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"a,b\n1,caf\xe9\n2," + "café".encode() + b"\n")
    feed = feed_of(path)
    assert list(feed) == ["a,b\n", "1,café\n", "2,café\n"]
    assert feed.latin1_line == 2
    assert feed.position() == path.stat().st_size


@pytest.mark.parametrize(
    ("head", "delimiter"),
    [
        (b"a,b,c\n", ","),
        (b"a;b;c\n1,5;2\n", ";"),
        (b"a\tb\n", "\t"),
        (b'"a;b",c\n', ","),
        (b"https://x\nDate|Close\n", "|"),
        (b"abc\n", ","),
    ],
)
def test_sniff_delimiter(head: bytes, delimiter: str) -> None:
    assert sniff_delimiter(head) == delimiter


def test_open_regular_refuses_what_could_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFile, match="a FIFO"):
        open_regular(str(fifo))  # returns at once: O_NONBLOCK, then fstat
    with pytest.raises(NotRegularFile, match="a directory"):
        open_regular(str(tmp_path))
    with pytest.raises(NotRegularFile, match="a character device"):
        open_regular("/dev/null")
    regular = tmp_path / "ok.csv"
    regular.write_text("x")
    fd, st = open_regular(str(regular))
    assert st.st_size == 1
    os.close(fd)


def test_echo() -> None:
    assert echo("short") == "short"
    assert echo("x" * 150) == "x" * 100 + "…(+50 chars)"
    assert echo_cells([str(i) for i in range(25)])[-1] == "…(+5 cells)"
    assert len(echo_cells(["y" * 10_000] * 1_000_000)) == 21
