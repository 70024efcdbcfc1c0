"""Container logs as kubelet serves them: CRI log files read with ``follow``, ``tailLines``,
``sinceSeconds``/``sinceTime``, ``timestamps`` and ``limitBytes`` (``cri-client``'s
``logs.ReadLogs``).

A CRI log line is ``<RFC3339Nano time> <stdout|stderr> <F|P> <text>``; ``P`` (partial) lines
continue on the next line without a newline. What goes out is the text, each record
prefixed by its time in a fixed nine-digit form when ``timestamps`` is on::

    opts = parse_log_options({"follow": ["true"], "tailLines": ["10"]}, now=time.time())
    await stream_log(path, opts, write=send, running=is_running)

Files are read in a thread (the event loop never blocks on the disk); a followed log is
polled, reopened when rotated, and ends once the container has stopped and everything
written is out.
"""

from __future__ import annotations

import asyncio
import calendar
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from pykubeedge.core.clock import Sleep
from pykubeedge.core.errors import DecodeError

READ_BLOCK: Final = 256 * 1024
FOLLOW_POLL: Final = 0.2
RUNNING_CHECK: Final = 1.0
MAX_LINE: Final = 1 << 20
"""A CRI line longer than this (the runtime splits at 16 KiB) is cut, not buffered."""
_TIME: Final = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$")


class LogOptionsError(DecodeError):
    """A logs query kubelet would refuse; ``code`` is its HTTP status (400 or 422)."""

    def __init__(self, message: str, code: int = 400) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class LogOptions:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    since: float | None = None
    """Unix seconds: records older are skipped."""
    tail_lines: int | None = None
    limit_bytes: int | None = None


def _flag(params: Mapping[str, Sequence[str]], name: str) -> bool:
    values = params.get(name)
    if not values:
        return False
    value = values[-1].lower()
    if value in ("true", "1", "t", ""):
        return True
    if value in ("false", "0", "f"):
        return False
    raise LogOptionsError("Unable to decode query.")


def _int(params: Mapping[str, Sequence[str]], name: str) -> int | None:
    values = params.get(name)
    if not values:
        return None
    try:
        return int(values[-1])
    except ValueError:
        raise LogOptionsError("Unable to decode query.") from None


def parse_time(text: str) -> float:
    """RFC 3339 (any fraction, ``Z`` or an offset) as Unix seconds.

    >>> parse_time("1970-01-01T00:01:00.5+00:01")
    0.5
    """
    m = _TIME.match(text)
    if m is None:
        raise DecodeError(f"not an RFC 3339 time: {text[:40]!r}")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    fraction = m.group(7)
    if fraction:
        seconds += int(fraction) / 10 ** len(fraction)
    zone = m.group(8)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return seconds


def parse_log_options(params: Mapping[str, Sequence[str]], *, now: float) -> LogOptions:
    """Kubelet's ``PodLogOptions`` from the query (``tail`` is kubelet's old alias)."""
    since_seconds = _int(params, "sinceSeconds")
    since_time = params.get("sinceTime")
    if since_seconds is not None and since_time:
        raise LogOptionsError("at most one of sinceTime or sinceSeconds may be specified", 422)
    since: float | None = None
    if since_seconds is not None:
        if since_seconds < 1:
            raise LogOptionsError("sinceSeconds must be greater than 0", 422)
        since = now - since_seconds
    elif since_time:
        try:
            since = parse_time(since_time[-1])
        except DecodeError:
            raise LogOptionsError("Unable to decode query.") from None
    tail = _int(params, "tailLines")
    legacy = params.get("tail")
    if tail is None and legacy and legacy[-1] != "all":
        tail = _int(params, "tail")
    if tail is not None and tail < 0:
        tail = None  # kubelet: a negative tail is "all"
    limit = _int(params, "limitBytes")
    if limit is not None and limit < 1:
        raise LogOptionsError("limitBytes must be greater than 0", 422)
    return LogOptions(follow=_flag(params, "follow"), previous=_flag(params, "previous"),
                      timestamps=_flag(params, "timestamps"), since=since, tail_lines=tail,
                      limit_bytes=limit)


# -- CRI log lines ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogRecord:
    time: str
    stream: str
    partial: bool
    text: bytes


def parse_cri_line(line: bytes) -> LogRecord | None:
    """One line of a CRI log file (without its newline); None if it is not one.

    >>> parse_cri_line(b"2024-01-01T00:00:00.5Z stdout F hello")
    LogRecord(time='2024-01-01T00:00:00.5Z', stream='stdout', partial=False, text=b'hello')
    """
    parts = line.split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr"):
        return None
    tag = parts[2]
    text = parts[3] if len(parts) > 3 else b""
    return LogRecord(parts[0].decode("ascii", "replace"), parts[1].decode(), tag.startswith(b"P"),
                     text)


def format_cri_line(when: float, stream: str, text: str, *, partial: bool = False) -> bytes:
    """A CRI log line as containerd writes it (UTC, nanoseconds).

    >>> format_cri_line(0.25, "stdout", "hi")
    b'1970-01-01T00:00:00.250000000Z stdout F hi\\n'
    """
    whole = int(when)
    nanos = round((when - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, 0
    y, mo, d, h, mi, s = time.gmtime(whole)[:6]
    stamp = f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}.{nanos:09d}Z"
    return f"{stamp} {stream} {'P' if partial else 'F'} {text}\n".encode()


def fixed_timestamp(stamp: str) -> str:
    """Kubelet's output form of a record's time: nine fraction digits, the zone kept.

    >>> fixed_timestamp("2024-01-01T00:00:00.5Z")
    '2024-01-01T00:00:00.500000000Z'
    """
    m = _TIME.match(stamp)
    if m is None:
        return stamp
    fraction = (m.group(7) or "").ljust(9, "0")
    return f"{stamp[:19]}.{fraction}{m.group(8)}"


class RecordWriter:
    """Turns records into output bytes, honouring ``since``, ``timestamps`` and
    ``limitBytes``; :attr:`done` once the byte limit is reached."""

    def __init__(self, opts: LogOptions) -> None:
        self.opts = opts
        self.remaining = opts.limit_bytes
        self.done = False

    def render(self, record: LogRecord) -> bytes:
        opts = self.opts
        if opts.since is not None:
            try:
                if parse_time(record.time) < opts.since:
                    return b""
            except DecodeError:
                return b""
        out = record.text if record.partial else record.text + b"\n"
        if opts.timestamps:
            out = fixed_timestamp(record.time).encode() + b" " + out
        if self.remaining is not None:
            if len(out) >= self.remaining:
                out = out[: self.remaining]
                self.done = True
            self.remaining -= len(out)
        return out


# -- files --------------------------------------------------------------------------------------


def tail_offset(path: str, lines: int) -> int:
    """Where the last ``lines`` lines of the file start (blocking)."""
    if lines <= 0:
        with open(path, "rb") as f:
            return f.seek(0, os.SEEK_END)
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        found = 0
        # a trailing newline ends the last line; it does not start another
        skip_last = True
        while pos > 0:
            size = min(READ_BLOCK, pos)
            pos -= size
            f.seek(pos)
            block = f.read(size)
            index = len(block)
            while True:
                index = block.rfind(b"\n", 0, index)
                if index < 0:
                    break
                if skip_last and pos + index == end - 1:
                    skip_last = False
                    continue
                skip_last = False
                found += 1
                if found == lines:
                    return pos + index + 1
        return 0


class _LogFile:
    """A log file read forward in blocks (blocking methods; called in a thread)."""

    def __init__(self, path: str, offset: int) -> None:
        self.path = path
        self.file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.file.seek(offset)
        self.inode = os.fstat(self.file.fileno()).st_ino

    def read(self) -> bytes:
        return self.file.read(READ_BLOCK)

    def rotated(self) -> bool:
        """The path now names another file (or a shorter one: truncated)."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        return stat.st_ino != self.inode or stat.st_size < self.file.tell()

    def reopen(self) -> None:
        self.file.close()
        self.file = open(self.path, "rb")  # noqa: SIM115
        self.inode = os.fstat(self.file.fileno()).st_ino

    def close(self) -> None:
        self.file.close()


async def stream_log(path: str, opts: LogOptions, *, write: Callable[[bytes], Awaitable[None]],
                     running: Callable[[], Awaitable[bool]], sleep: Sleep = asyncio.sleep,
                     poll: float = FOLLOW_POLL, running_check: float = RUNNING_CHECK,
                     on_open: Callable[[], Awaitable[None]] | None = None) -> int:
    """Write the log at ``path`` as ``opts`` say; the bytes written. With ``follow`` it
    returns once ``running()`` says the container stopped and the file has no more to give.
    ``on_open`` is awaited once the file is open at its starting point (the caller answers
    then: what is written afterwards is in the stream).

    The file handle is closed whatever happens (cancellation included).
    """
    offset = 0
    if opts.tail_lines is not None:
        offset = await asyncio.to_thread(tail_offset, path, opts.tail_lines)
    log_file = await asyncio.to_thread(_LogFile, path, offset)
    renderer = RecordWriter(opts)
    pending = b""
    written = 0
    idle = 0.0
    stopped = False
    try:
        if on_open is not None:
            await on_open()
        while True:
            block = await asyncio.to_thread(log_file.read)
            if block:
                idle = 0.0
                pending += block
                lines = pending.split(b"\n")
                pending = lines.pop()
                if len(pending) > MAX_LINE:
                    lines.append(pending[:MAX_LINE])
                    pending = b""
                out = bytearray()
                for line in lines:
                    record = parse_cri_line(line)
                    if record is None:
                        continue
                    out += renderer.render(record)
                    if renderer.done:
                        break
                if out:
                    await write(bytes(out))
                    written += len(out)
                if renderer.done:
                    return written
                continue
            if not opts.follow or stopped:
                return written
            if await asyncio.to_thread(log_file.rotated):
                await asyncio.to_thread(log_file.reopen)
                pending = b""
                continue
            if idle >= running_check:
                idle = 0.0
                if not await running():
                    stopped = True  # one more read for what it wrote before it stopped
                    continue
            await sleep(poll)
            idle += poll
    finally:
        await asyncio.to_thread(log_file.close)
