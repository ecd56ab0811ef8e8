"""Reading one file: from its checkpoint to batches.

A full read finds the header, the layout, the day/month order and the file's series
(:mod:`.prepass`), then streams the rows. A resumed read (the prefix hash matched) takes
header, dialect, date order and series from the checkpoint and reads only what follows.

Each batch holds up to ``batch_size`` rows (and about :data:`BATCH_BYTES` of lines) of one
file, with ONE RawPayload (header, first line number, and ``text``: the batch's lines exactly as
they are in the file, read back with one ``pread`` that also feeds the prefix hash), the complete
cursor and ``processed`` = rows looked at. Rejects are keyed ``<path>:<line>`` (``<path>:0``
for the file itself) with a payload that a re-read reproduces exactly.

Trailing line rule: a last line without a newline IS processed at end of file (many exports
end that way), but ``offset`` only ever moves past newline-terminated lines; if the file grows,
that line is read again, now complete, and its row upserts onto the same identity.

Records that are not plain rows (blank, too wide, broken quotes): :mod:`.recovery`.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator
from operator import attrgetter
from typing import TYPE_CHECKING, Final

from cryptoetl.sources.base import Batch, RawPayload, Record, Reject, SourceError
from cryptoetl.sources.csv.checkpoint import (
    VERSION,
    FileState,
    RunStates,
    hash_range,
    prefix_matches,
)
from cryptoetl.sources.csv.dates import naive_iso_suffix
from cryptoetl.sources.csv.layout import CsvLayout, detect_layout
from cryptoetl.sources.csv.options import FileOptions, options_hash
from cryptoetl.sources.csv.prepass import (
    Restart,
    date_parser,
    detect_series,
    find_header,
    sample_rows,
    tolerant,
)
from cryptoetl.sources.csv.recovery import (
    BLANK,
    Broken,
    Rejected,
    csv_error_reason,
    odd_record,
    recover,
)
from cryptoetl.sources.csv.rows import RowParser, RowRejected, SeriesResolver, make_row_parser
from cryptoetl.sources.csv.stream import Limits, LineFeed, echo, echo_cells, sniff_delimiter

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

SNIFF_BYTES: Final = 65536  # bytes read to check the encoding and find the delimiter
BATCH_BYTES: Final = 16 << 20
_timestamp_of = attrgetter("source_timestamp")  # of our records, all MarketRecords
# What a resumed read takes over from the checkpoint (the rest is measured again).
_CARRIED: Final = ("header", "delimiter", "date_order", "date_order_from", "dm_evidence",
                   "date_sep", "last_timestamp", "series")  # fmt: skip


class FileReader:
    """Reads one file from its checkpoint (``prev``: None for a full read) into batches."""

    def __init__(
        self,
        run: RunStates,
        path: str,
        prev: FileState | None,
        options: FileOptions | None,
        batch_size: int,
        limits: Limits,
        note: str,
    ) -> None:
        self.run = run
        self.path = path
        self.file_name = os.path.basename(path)
        self.prev = prev
        self.options = options or FileOptions(pattern="")
        self.options_hash = options_hash(options)
        self.batch_size = batch_size
        self.limits = limits
        self.warnings: list[str] = [f"re-reading from the start: {note}"] if note else []
        self.state = FileState(dev=0, inode=0, size=0, mtime_ns=0)
        self.fd = -1
        self.limit = 0
        self.hasher = hashlib.sha256()
        self.hashed = 0  # the hasher has seen bytes [0, hashed)
        self.raw_from = 0  # where the next batch's raw bytes begin
        self.latin1_line = 0
        self.layout = CsvLayout(header=(), date=0)

    # -- entry point ----------------------------------------------------------------------

    def batches(self, fd: int, st: os.stat_result) -> Iterator[Batch]:
        """Batches of the open regular file ``fd`` (``st``: its fstat)."""
        self.fd, self.limit = fd, st.st_size
        csv.field_size_limit(self.limits.max_line_bytes)  # bounds a runaway quoted field
        self.start_state(st)
        prev = self.prev
        try:
            if prev is not None and not self._prefix_unchanged(prev):
                self.warnings.append(
                    "re-reading from the start: the part read before has changed (rewritten "
                    "in place)"
                )
                prev = None
            try:
                yield from self._read(prev)
            except Restart as restart:
                self.warnings.append(str(restart))
                self.start_state(st)
                yield from self._read(None)
        except SourceError as exc:
            yield self.file_reject(str(exc))
        except OSError as exc:
            # The checkpoint keeps the last committed offset: the next run resumes there.
            self.warnings.append(f"read error: {exc}")
            yield Batch(cursor=self.run.cursor(), warnings=self._take_warnings())

    def _prefix_unchanged(self, prev: FileState) -> bool:
        hasher = prefix_matches(self.fd, prev) if prev.offset <= self.limit else None
        if hasher is None:
            return False
        self.hasher, self.hashed = hasher, prev.offset
        self.raw_from = prev.offset
        return True

    # -- checkpoint helpers ---------------------------------------------------------------

    def start_state(self, st: os.stat_result) -> None:
        self.state = FileState(
            version=VERSION,
            dev=st.st_dev,
            inode=st.st_ino,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            options_hash=self.options_hash,
        )
        self.hasher, self.hashed, self.raw_from = hashlib.sha256(), 0, 0

    def _take_warnings(self) -> list[str]:
        # Emptied in place: the resolver and the date parser keep appending to this list.
        taken = [f"csv: {self.path}: {w}" for w in self.warnings]
        self.warnings.clear()
        return taken

    def file_reject(self, reason: str) -> Batch:
        """The whole file is unusable: record it (and skip it until it changes)."""
        state = self.state
        header = state.header
        state.error, state.eof, state.offset, state.header = echo(reason, 1000), True, 0, None
        self.run.states[self.path] = state
        self.warnings.append(f"file rejected: {state.error}")
        payload = {"file": self.path, "header": echo_cells(header) if header else None}
        return Batch(
            rejects=[Reject(source_key=f"{self.path}:0", payload=payload, reason=state.error)],
            cursor=self.run.cursor(),
            processed=1,  # the file itself is the rejected item: processed = valid + rejected
            warnings=self._take_warnings(),
        )

    # -- reading --------------------------------------------------------------------------

    def _read(self, prev: FileState | None) -> Iterator[Batch]:
        state = self.state
        if prev is None:
            head = os.pread(self.fd, SNIFF_BYTES, 0)
            if head.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise SourceError(f"{self.path}: UTF-16 encoded; save the file as UTF-8")
            if b"\r" in head and b"\n" not in head:
                raise SourceError(f"{self.path}: CR-only line ends are not supported; use LF/CRLF")
            if self.limit == 0 or (b"\n" not in head and self.limit <= len(head)):
                # Empty, or a header still being written: nothing to read yet.
                state.eof = True
                self.run.states[self.path] = state
                yield Batch(cursor=self.run.cursor(), warnings=self._take_warnings())
                return
            state.delimiter = sniff_delimiter(head)
            feed = self._feed(0)
            reader = csv.reader(feed, delimiter=state.delimiter)
            state.header, banner = find_header(
                self.path, feed, reader, self.options, self.limits, self._feed
            )
            base_line = 0
        else:
            for field in _CARRIED:
                setattr(state, field, getattr(prev, field))
            feed = self._feed(prev.offset)
            reader = csv.reader(feed, delimiter=state.delimiter)
            base_line, banner = prev.line, []
        assert state.header is not None
        options = self.options
        layout = detect_layout(
            state.header,
            self.path,
            columns=options.columns,
            default_symbol=options.default_symbol,
            volume_unit=options.volume_unit,
        )
        self.layout = layout
        data_start = feed.position()
        dates = date_parser(layout, options, state, prev, data_start, self._feed, self.warnings)
        rows = csv.reader(self._feed(data_start), delimiter=state.delimiter)
        sample = sample_rows(layout, dates, tolerant(rows))
        facts = state.series
        if facts is None:
            facts, said = detect_series(self.file_name, options, layout, sample, banner)
            self.warnings.extend(said)
        resolver = SeriesResolver(
            layout,
            facts,
            declared_quote=options.quote,
            file_name=self.file_name,
            # Said on the read that detected the series; appends continue it quietly.
            warnings=self.warnings if state.series is None else [],
        )
        if state.series is None and sample.date_cells:  # no rows yet: the next read decides
            state.series = facts
        parse = make_row_parser(
            layout,
            dates,
            resolver,
            decimal_comma=state.delimiter == ";",
            iso_suffix=None if layout.date_is_unix else naive_iso_suffix(sample.date_cells),
        )
        yield from self._rows(feed, reader, parse, base_line)

    def _feed(self, start: int, sanitize_until: int = 0) -> LineFeed:
        return LineFeed(
            self.fd,
            start,
            self.limit,
            self.limits,
            delimiter=self.state.delimiter,
            sanitize_until=sanitize_until,
        )

    # -- rows -----------------------------------------------------------------------------

    def _rows(
        self, feed: LineFeed, reader: CsvReader, parse: RowParser, base_line: int
    ) -> Iterator[Batch]:
        path, header, batch_size = self.path, self.state.header or [], self.batch_size
        width = len(header)
        reader_next = reader.__next__
        taken = 0  # records of this batch (valid and rejected)
        records: list[Record] = []
        rejects: list[Reject] = []
        byte_cap = feed.read_to + BATCH_BYTES
        line = reader.line_num  # feed lines taken up to the last handled record
        first_line = 0
        odd: Rejected | Broken | None
        while True:
            # Checked before the next row is taken: the feed's position is still the end of
            # the last handled record, which is where the checkpoint goes.
            if taken >= batch_size or feed.read_to > byte_cap:
                yield self._batch(taken, records, rejects, first_line, feed, base_line, line)
                taken, records, rejects = 0, [], []
                byte_cap = feed.read_to + BATCH_BYTES
                feed.forget_before(line)
            try:
                row = reader_next()
                start, line = line, reader.line_num
                odd = (
                    None
                    if line - start == 1 and len(row) == width
                    else odd_record(
                        row,
                        feed,
                        number=base_line + start + 1,
                        taken=line,
                        span=line - start,
                        needed=self.layout.needed,
                        header=header,
                        limits=self.limits,
                    )
                )
            except StopIteration:
                break
            except csv.Error as exc:
                start, line = line, reader.line_num
                odd = Broken(csv_error_reason(exc, self.limits))
            if odd is None:
                if not taken:
                    first_line = base_line + start + 1
                taken += 1
                try:
                    records.append(parse(row))
                except RowRejected as exc:
                    number = base_line + start + 1
                    rejects.append(
                        Reject(
                            source_key=f"{path}:{number}",
                            payload={"line": number, "row": row, "header": header},
                            reason=str(exc),
                        )
                    )
                continue
            if odd is BLANK:
                continue
            if isinstance(odd, Broken):  # reject the record's first line, read on after it
                self._note_latin1(feed, base_line)
                feed, base_line, odd = recover(
                    feed,
                    self._feed,
                    base_line=base_line,
                    start=start,
                    taken=line,
                    reason=odd.reason,
                )
                reader = csv.reader(feed, delimiter=self.state.delimiter)
                reader_next, line = reader.__next__, 0
                byte_cap = feed.read_to + BATCH_BYTES
            if not taken:
                first_line = odd.number
            taken += 1
            rejects.append(
                Reject(source_key=f"{path}:{odd.number}", payload=odd.payload, reason=odd.reason)
            )
        self._note_latin1(feed, base_line)
        if self.latin1_line:
            self.warnings.append(
                f"line {self.latin1_line} and maybe later ones are not UTF-8; decoded as Latin-1"
            )
        self.state.eof = True
        yield self._batch(taken, records, rejects, first_line, feed, base_line, line)

    def _note_latin1(self, feed: LineFeed, base_line: int) -> None:
        if feed.latin1_line and not self.latin1_line:
            self.latin1_line = base_line + feed.latin1_line

    def _batch(
        self,
        taken: int,
        records: list[Record],
        rejects: list[Reject],
        first_line: int,
        feed: LineFeed,
        base_line: int,
        line: int,
    ) -> Batch:
        """A batch ending after feed line ``line``; checkpointed before an unterminated last
        line (the trailing line rule)."""
        state = self.state
        if feed.tail_line and line >= feed.tail_line:
            state.offset, state.line = feed.tail_start, base_line + feed.tail_line - 1
        else:
            state.offset, state.line = feed.position(), base_line + line
        raw = self._raw_bytes(feed, feed.position(), state.offset)
        state.prefix_hash = self.hasher.hexdigest()
        newest = max(map(_timestamp_of, records), default=None)
        if newest is not None:
            iso = newest.isoformat().replace("+00:00", "Z")
            if state.last_timestamp is None or iso > state.last_timestamp:
                state.last_timestamp = iso
        self.run.states[self.path] = state
        payload = {"header": state.header, "first_line": first_line, "text": _text(raw)}
        return Batch(
            raw=[RawPayload(source_key=self.path, payload=payload)] if taken else [],
            records=records,
            rejects=rejects,
            cursor=self.run.cursor(),
            processed=taken,
            warnings=self._take_warnings(),
        )

    def _raw_bytes(self, feed: LineFeed, end: int, checkpoint: int) -> bytes:
        """The file's bytes since the last batch, as read (the raw payload), with every line
        over CSV_MAX_LINE_BYTES replaced by a note of its size (such a line is rejected, and
        never held whole); the prefix hash moves on to ``checkpoint`` over the same bytes, in
        the same read when no line was cut."""
        start = self.raw_from
        cut = [(at, n) for at, n in feed.overlong if start <= at < end]
        if not cut:
            data = os.pread(self.fd, end - start, start) if end > start else b""
            if self.hashed == start and checkpoint <= end:
                self.hasher.update(memoryview(data)[: checkpoint - start])
            else:
                hash_range(self.fd, self.hasher, self.hashed, checkpoint)
        else:
            pieces, pos = [], start
            for at, length in cut:
                pieces.append(os.pread(self.fd, at - pos, pos))
                pieces.append(f"[a line of {length:,} bytes, over CSV_MAX_LINE_BYTES]\n".encode())
                pos = at + length
            pieces.append(os.pread(self.fd, max(0, end - pos), pos))
            data = b"".join(pieces)
            hash_range(self.fd, self.hasher, self.hashed, checkpoint)
        self.hashed, self.raw_from = checkpoint, end
        return data


def _text(raw: bytes) -> str:
    """Raw bytes as JSON-able text, decoded the way the rows were (Latin-1 when not UTF-8)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")
