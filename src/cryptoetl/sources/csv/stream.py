"""Streaming and dialect: opening a file safely, bounded lines for csv.reader, the delimiter.

Opening
    ``os.open(O_RDONLY | O_NONBLOCK | O_NOCTTY)``, then ``fstat`` on the descriptor: anything
    but a regular file (a FIFO swapped in after discovery, a device, a directory) is refused
    without a single read, so no file can block the reader.

Lines (:class:`LineFeed`)
    Bytes are read with ``pread`` (feeds are independent: a pre-pass never moves the main
    read) in chunks of at most ``CSV_MAX_LINE_BYTES``, decoded a chunk at a time and handed to
    csv.reader through ``io.StringIO(newline="\\n")``: only ``\\n`` ends a line (``\\r``
    before it is csv's business), and no Python code runs per line. A line longer than
    ``CSV_MAX_LINE_BYTES`` (its line end included) is never held in memory: it is skipped to
    its newline and replaced by an empty line with a *note* (the reader turns it into a reject
    showing its first characters). Reading stops at ``limit``, the size when the file was
    opened; an unterminated last line is handed out only if the file has not grown since (else
    a writer is still writing it, and it waits for the next run). A UTF-8 byte order mark is
    dropped; a chunk that is not UTF-8 is decoded line by line, Latin-1 for the lines that are
    not.

Dialect
    The delimiter is the most frequent of ``, ; TAB |`` outside quotes in the first line that
    has one (ties go to ``,``).
"""

from __future__ import annotations

import csv
import io
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from typing import Final, NamedTuple

import msgspec

BOM: Final = b"\xef\xbb\xbf"
MAX_CHUNK: Final = 1 << 20
ECHO_CHARS: Final = 100  # an echoed value (reasons, warnings, payload notes) is cut here
ECHO_CELLS: Final = 20
_PREAMBLE_LINES: Final = 10
_INDEXED_CHUNKS: Final = 256  # offsets of lines this many chunks back can still be found
_FILE_KINDS: Final = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISSOCK, "a socket"),
)


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """Bounds on what one file may make the reader hold (settings ``CSV_MAX_*``)."""

    max_line_bytes: int = 65_536
    max_fields: int = 512
    max_record_lines: int = 10


def echo(text: str, limit: int = ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}…(+{len(text) - limit} chars)"


def echo_cells(cells: Sequence[str]) -> list[str]:
    """The first cells of a row or header, each cut, saying how many were left out."""
    shown = [echo(cell) for cell in cells[:ECHO_CELLS]]
    if len(cells) > ECHO_CELLS:
        shown.append(f"…(+{len(cells) - ECHO_CELLS} cells)")
    return shown


class NotRegularFile(OSError):
    """The path is not a regular file (FIFO, device, directory, socket)."""


def open_regular(path: str) -> tuple[int, os.stat_result]:
    """A read-only descriptor of ``path`` and its ``fstat``; never blocks (module doc)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _FILE_KINDS if test(st.st_mode)), "special")
            raise NotRegularFile(f"not a regular file ({kind}); skipped")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def sniff_delimiter(head: bytes) -> str:
    """The delimiter of the first line that has one (outside quotes); ties go to ","."""
    for line in head.decode("utf-8", errors="replace").splitlines()[:_PREAMBLE_LINES]:
        counts = dict.fromkeys(",;\t|", 0)
        quoted = False
        for char in line:
            if char == '"':
                quoted = not quoted
            elif not quoted and char in counts:
                counts[char] += 1
        best = max(counts, key=lambda c: (counts[c], c == ","))
        if counts[best]:
            return best
    return ","


def balanced(line: str, delimiter: str) -> bool:
    """Whether ``line`` is a complete CSV record by itself (no quote left open)."""
    try:
        next(csv.reader([line], delimiter=delimiter, strict=True), None)
    except csv.Error:
        return False
    return True


class _Chunk(NamedTuple):
    first_line: int  # feed-relative number of its first line
    lines: int  # lines in it
    start: int  # byte offset of its first line
    end: int  # byte offset after its last line


class _Current(NamedTuple):
    """The piece csv.reader is reading: enough to turn its position into a byte offset."""

    chunk: _Chunk
    text_io: io.StringIO | None  # None: a one-line piece (a placeholder, the tail)
    text: str
    data: bytes
    identity: bool  # one character per byte: the position in the text IS the byte offset


class LineFeed:
    """Lines of ``fd`` from byte ``start`` to ``limit``, for csv.reader (module doc).

    Line numbers are relative to the feed (its first line is 1): the reader adds its base.
    ``notes`` maps a line replaced by an empty one to (reason, its first characters).
    ``sanitize_until``: lines ending at or before this offset are checked one by one, and a
    line that leaves a quote open is replaced by an empty one with a note (recovery after a
    runaway quoted field; see the reader).
    """

    def __init__(
        self,
        fd: int,
        start: int,
        limit: int,
        limits: Limits,
        *,
        delimiter: str = ",",
        sanitize_until: int = 0,
    ) -> None:
        self.fd = fd
        self.limit = limit
        self.limits = limits
        self.delimiter = delimiter
        self.sanitize_until = sanitize_until
        self.first_offset = start
        self.notes: dict[int, tuple[str, str]] = {}
        self.latin1_line = 0  # the first line that was not UTF-8, if any
        self.tail_line = 0  # an unterminated last line (handed out, but not checkpointed past)
        self.tail_start = 0
        self._start = start
        self.read_to = start  # bytes read so far (a batch's size is bounded by it)
        self._index: list[_Chunk] = []
        self._current: _Current | None = None
        # (start, length) of every line over the limit: never read whole, not even for raw
        self.overlong: list[tuple[int, int]] = []

    def __iter__(self) -> Iterator[str]:
        return chain.from_iterable(self._pieces())

    # -- positions ------------------------------------------------------------------------

    def position(self) -> int:
        """Byte offset after the last line csv.reader has taken."""
        current = self._current
        if current is None:
            return self.first_offset
        if current.text_io is None:
            return current.chunk.end
        chars = current.text_io.tell()
        if current.identity:
            return current.chunk.start + chars
        return current.chunk.start + _after_lines(current.data, current.text.count("\n", 0, chars))

    def offset_after(self, line: int) -> int:
        """Byte offset after feed line ``line`` (0: the feed's start), for lines since
        :meth:`forget_before`."""
        if line == 0:
            return self.first_offset
        for chunk in reversed(self._index):
            if chunk.first_line <= line < chunk.first_line + chunk.lines:
                if line == chunk.first_line + chunk.lines - 1:
                    return chunk.end
                data = os.pread(self.fd, chunk.end - chunk.start, chunk.start)
                return chunk.start + _after_lines(data, line - chunk.first_line + 1)
        raise LookupError(f"line {line} is no longer indexed")

    def forget_before(self, line: int) -> None:
        """Offsets of lines before ``line`` will not be asked for again."""
        self._index = [c for c in self._index if c.first_line + c.lines > line]

    # -- reading --------------------------------------------------------------------------

    def _pieces(self) -> Iterator[Iterable[str]]:
        max_line = self.limits.max_line_bytes
        size = min(max_line, MAX_CHUNK)  # so a line inside one chunk is never too long
        pos, line = self._start, 0
        carry = b""
        skipped = 0  # > 0: inside an overlong line, this many bytes of it so far
        head = b""
        while pos < self.limit:
            want = min(size, self.limit - pos)
            if pos < self.sanitize_until:
                want = min(want, self.sanitize_until - pos)
            data = os.pread(self.fd, want, pos)
            if not data:
                break  # the file shrank under us: what is left is read next run
            if pos == 0 and data.startswith(BOM):
                data, pos, self.first_offset = data[3:], 3, 3
            start, pos = pos - len(carry) - skipped, pos + len(data)
            self.read_to = pos
            if skipped:
                newline = data.find(b"\n")
                if newline < 0:
                    skipped += len(data)
                    continue
                line += 1
                yield self._overlong(line, start, skipped + newline + 1, head)
                start += skipped + newline + 1
                data, skipped = data[newline + 1 :], 0
            buf = carry + data
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                carry = b""
                if len(buf) >= max_line:  # with its newline still to come, it is too long
                    skipped, head = len(buf), buf[:ECHO_CHARS]
                else:
                    carry = buf
                continue
            first = buf.find(b"\n") + 1
            if first > max_line:  # the line carried over from the last chunk is too long
                line += 1
                yield self._overlong(line, start, first, buf[:ECHO_CHARS])
                buf, start, cut = buf[first:], start + first, cut - first
            carry = buf[cut:]
            if cut:
                piece = self._piece(buf[:cut], start, line + 1, start < self.sanitize_until)
                line += piece.chunk.lines
                yield [] if piece.text_io is None else piece.text_io
        # The tail is announced before csv.reader gets it: the row may end a batch at once.
        if skipped:
            self.tail_line, self.tail_start = line + 1, pos - skipped
            yield self._overlong(line + 1, pos - skipped, skipped, head)
        elif carry and not os.pread(self.fd, 1, self.limit):
            # An unterminated last line, and the file has not grown: it is complete.
            self.tail_line, self.tail_start = line + 1, pos - len(carry)
            yield [self._piece(carry, pos - len(carry), line + 1, False, tail=True).text]

    def _overlong(self, line: int, start: int, length: int, head: bytes) -> list[str]:
        reason = (
            f"line is {length:,} bytes long (limit CSV_MAX_LINE_BYTES="
            f"{self.limits.max_line_bytes:,})"
        )
        self.notes[line] = (reason, echo(head.decode("utf-8", errors="replace")))
        self.overlong.append((start, length))
        self._register(_Chunk(line, 1, start, start + length), None, "", b"", identity=False)
        return [""]

    def _piece(
        self, data: bytes, start: int, first_line: int, sanitize: bool, *, tail: bool = False
    ) -> _Current:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = self._decode_by_line(data, first_line)
        if sanitize:
            text = self._sanitize(text, first_line)
        chunk = _Chunk(first_line, data.count(b"\n") + tail, start, start + len(data))
        text_io = None if tail else io.StringIO(text, newline="\n")
        return self._register(chunk, text_io, text, data, identity=len(text) == len(data))

    def _register(
        self,
        chunk: _Chunk,
        text_io: io.StringIO | None,
        text: str,
        data: bytes,
        *,
        identity: bool,
    ) -> _Current:
        self._index.append(chunk)
        if len(self._index) > 2 * _INDEXED_CHUNKS:  # pre-pass feeds never forget
            del self._index[:-_INDEXED_CHUNKS]
        self._current = _Current(chunk, text_io, text, data, identity)
        return self._current

    def _decode_by_line(self, data: bytes, first_line: int) -> str:
        texts: list[str] = []
        for number, raw in enumerate(data.split(b"\n"), first_line):
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                # Spreadsheet exports are sometimes cp1252/Latin-1: keep the row readable
                # (numbers and dates are ASCII anyway); the reader says so once.
                texts.append(raw.decode("latin-1"))
                self.latin1_line = self.latin1_line or number
        return "\n".join(texts)

    def _sanitize(self, text: str, first_line: int) -> str:
        lines = text.split("\n")
        for number, line in enumerate(lines[:-1], first_line):
            if not balanced(line, self.delimiter):
                self.notes[number] = (
                    "unterminated quote: the quoted field does not end on its line",
                    echo(line),
                )
                lines[number - first_line] = ""
        return "\n".join(lines)


def _after_lines(data: bytes, count: int) -> int:
    """Byte offset in ``data`` after its first ``count`` lines."""
    pos = 0
    for _ in range(count):
        pos = data.index(b"\n", pos) + 1
    return pos


def read_line_at(fd: int, offset: int, end: int, max_bytes: int) -> str:
    """The text of the line at ``offset`` (ending before ``end``), at most ``max_bytes``."""
    data = os.pread(fd, min(max_bytes, max(0, end - offset)), offset)
    return data.rstrip(b"\r\n").decode("utf-8", errors="replace")
