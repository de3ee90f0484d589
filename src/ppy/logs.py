"""Logging set-up: ``--log-format text`` for people, ``json`` (one object a line) for collectors.

Two guards sit on ppy's handler, because clients choose much of what gets logged:

* Control characters are escaped (an ESC byte is written ``\\x1b``): text from a client (a method name, an
  entry, a peer's bytes) can neither forge a log line nor drive a terminal.  In the text format a
  newline inside a log call's argument is escaped too (only the server's own formatted tracebacks keep
  theirs); an access-log line (``--access-log``) keeps no newline at all.  The json format escapes every
  newline anyway.
* :class:`RateLimit`: warnings and errors from one call site with the same subject are let through
  ``BURST`` times per ``WINDOW_S`` (``SITE_BURST`` whatever the subject); the rest are counted and
  reported as one "N more suppressed" line when the next one passes.  Failing calls in a tight loop
  then cost kilobytes of log a second, not tens of megabytes.  Any ``ppy.*`` logger gets this by
  logging at WARNING or above.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time

_EXTRA = ("method", "dialect", "code", "ms")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": escape(record.getMessage(), newlines=False),  # json.dumps escapes the newlines
        }
        for key in _EXTRA:
            if key in record.__dict__:
                doc[key] = record.__dict__[key]
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


#: C0 controls but tab and newline, DEL, C1 controls, and the Unicode line/paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_OR_NEWLINE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_one(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape(text: str, *, newlines: bool = True) -> str:
    """``text`` with control characters written as ``\\xNN`` (newlines too unless ``newlines=False``),
    for putting client-chosen text into a log message."""
    return (_CONTROL_OR_NEWLINE if newlines else _CONTROL).sub(_escape_one, text)


#: How the server's own formatted tracebacks begin: the only argument text whose newlines are kept.
_TRACEBACK_STARTS = ("Traceback (most recent call last):\n", "  + Exception Group Traceback (most recent call last):\n",
                     "traceback from the isolated worker:\n")


def _safe_arg(arg: object) -> object:
    if isinstance(arg, str):
        return escape(arg, newlines=not arg.startswith(_TRACEBACK_STARTS))
    return arg


class TextFormatter(logging.Formatter):
    """The text format, safe for client-chosen text: newlines inside an argument (a method name, a peer's
    bytes) are escaped, so one record is one line plus its traceback; other control characters are escaped
    everywhere; an access-log line keeps no newline at all."""

    def format(self, record: logging.LogRecord) -> str:
        args = record.args
        if isinstance(args, tuple) and args:
            record = logging.makeLogRecord(record.__dict__)  # the caller's record stays as it was
            record.args = tuple(_safe_arg(a) for a in args)
        elif isinstance(args, dict) and args:
            record = logging.makeLogRecord(record.__dict__)
            record.args = {k: _safe_arg(v) for k, v in args.items()}
        return escape(super().format(record), newlines=record.name == "ppy.access")


class RateLimit(logging.Filter):
    """Rate-limit warnings and errors (INFO and below are never limited), per call site and per subject.

    A record passes while its call site (logger, level, file, line) has passed fewer than ``SITE_BURST``
    and its subject fewer than ``BURST`` records in the current ``WINDOW_S``.  The subject is the
    record's ``ppy_key`` attribute (``log.warning(..., extra={"ppy_key": peer_host})``) if it has one,
    else its first argument (a method name, a peer).  The last record of a burst says that more are
    being suppressed; the first one after the window is preceded by "N more suppressed like the next
    line".  Installed on ppy's handler by :func:`setup`, so every ``ppy.*`` logger has it.
    """

    BURST = 10
    SITE_BURST = 50
    WINDOW_S = 5.0
    MAX_KEYS = 1024  # subjects tracked at once; past it a record is limited by its call site alone

    def __init__(self, handler: logging.Handler) -> None:
        super().__init__()
        self.handler = handler
        self._lock = threading.Lock()
        self._seen: dict[tuple[object, ...], list[float]] = {}  # key -> [window start, passed, suppressed]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or getattr(record, "ppy_summary", False):
            return True
        site: tuple[object, ...] = (record.name, record.levelno, record.pathname, record.lineno)
        subject = getattr(record, "ppy_key", None)
        if subject is None:
            args = record.args
            subject = str(args[0])[:200] if isinstance(args, tuple) and args else ""
        now = time.monotonic()
        with self._lock:
            if len(self._seen) >= self.MAX_KEYS:  # forget what finished its window with nothing to report
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.WINDOW_S or v[2]}
            ok, suppressed, last = self._take((*site, None), self.SITE_BURST, now)
            if not ok:
                return False
            if len(self._seen) < self.MAX_KEYS or (*site, subject) in self._seen:
                ok, more, last_of_subject = self._take((*site, subject), self.BURST, now)
                if not ok:
                    return False
                suppressed += more
                last = last or last_of_subject
        if last:
            record.msg = f"{record.msg} [further lines like this suppressed for up to {self.WINDOW_S:g} s]"
        if suppressed:
            self._summary(record, suppressed)
        return True

    def _take(self, key: tuple[object, ...], burst: int, now: float) -> tuple[bool, int, bool]:
        """Count one record under ``key``: (it passes, suppressed count to report now, it ends a burst)."""
        entry = self._seen.get(key)
        if entry is None or now - entry[0] >= self.WINDOW_S:
            self._seen[key] = [now, 1, 0]
            return True, int(entry[2]) if entry is not None else 0, burst == 1
        if entry[1] < burst:
            entry[1] += 1
            return True, 0, entry[1] == burst
        entry[2] += 1
        return False, 0, False

    def _summary(self, record: logging.LogRecord, suppressed: int) -> None:
        summary = logging.makeLogRecord({
            "name": record.name, "levelno": record.levelno, "levelname": record.levelname,
            "msg": "%d more suppressed like the next line (at most %d such lines every %g s)",
            "args": (suppressed, self.BURST, self.WINDOW_S), "ppy_summary": True, "created": record.created})
        self.handler.handle(summary)


def setup(log_format: str, *, access_log: bool = True, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RateLimit(handler))
    root = logging.getLogger("ppy")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.getLogger("ppy.access").disabled = not access_log
