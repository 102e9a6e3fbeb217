"""A bounded look at a raw message: subject, counts, depth, attachment names, problems.

The `email` package is not used on the message: its parser has measured blow-ups on hostile
input (nesting depth 300 -> RecursionError, 100,000 parts -> 23 s, 20,000 encoded words in a
Subject -> 8 s). This is a small single-pass scanner over the bytes instead:

- header blocks are read line by line, ending at the empty line, at a line that is neither a field
  nor a continuation, or at a boundary line of an enclosing multipart (as Python's feedparser);
- a body is skipped with `bytes.find` for lines starting with `--`; only those cost Python work,
  and a line is a delimiter when, without trailing white space, it is exactly `--boundary` or
  `--boundary--` for a multipart still open (innermost first), as in Python's feedparser;
- every limit in `Limits` is checked as the scan goes; the first one crossed is named in
  `problems` and, for the limits on work, the scan stops there (`complete` is False).

It never raises on any input (a bug would: tests fuzz it) and does work roughly linear in the size
of the message, bounded by `Limits.max_steps` Python-level steps.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from dataclasses import dataclass, field

_EW = re.compile(rb"=\?([^?\s]+)\?([BbQq])\?([^?\s]*)\?=")
_FIELD = re.compile(rb"([!-9;-~]+)[ \t]*:")
_CHARSET_NAME = re.compile(r"^[A-Za-z0-9_.:+-]{1,40}$")
# Decoders we never run on attacker-chosen text: UTF-7 hides markup from filters, the others are
# not charsets a mail can legitimately declare.
_DENIED_CODECS = frozenset({
    "utf-7", "idna", "punycode", "raw-unicode-escape", "unicode-escape", "undefined",
    "charmap", "mbcs", "oem",
})
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_QP_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")


@dataclass(frozen=True)
class Limits:
    max_depth: int = 100  # MIME nesting (Postfix's mime_nesting_limit); the top level is 0
    max_parts: int = 10_000  # MIME entities, the message itself included
    max_header_block_bytes: int = 1 << 20  # one entity's header block
    max_field_bytes: int = 102_400  # one header field, folded lines included (Postfix's limit)
    max_headers: int = 1_000  # fields in one header block
    max_encoded_words: int = 100  # decoded per header value
    max_steps: int = 400_000  # lines and boundary candidates looked at, all told
    max_names: int = 1_000  # attachment names listed
    max_name_chars: int = 255  # an attachment name longer than this is cut
    max_subject_chars: int = 2_000  # the decoded Subject is cut to this (the event's field)


@dataclass(frozen=True)
class Inspection:
    subject: str | None  # decoded, controls shown as U+FFFD, cut; None when there is none
    header_count: int  # fields in the top-level header block
    part_count: int  # MIME entities seen, the message itself included (like `walk()`)
    max_depth: int  # deepest entity seen; the top level is 0
    attachment_names: list[str]
    problems: list[str] = field(default_factory=list)
    complete: bool = True  # False when a work limit stopped the scan early


@dataclass
class _Frame:
    boundary: bytes
    depth: int
    digest: bool
    parts: int = 0


@dataclass
class _Entity:
    fields: int = 0
    subject: bytes | None = None
    subjects: int = 0
    content_type: bytes | None = None
    content_types: int = 0
    disposition: bytes | None = None
    encodings: set[bytes] = field(default_factory=set)


class _Stop(Exception):
    """A work limit was crossed: the scan ends with what it has."""


class _Scanner:
    def __init__(self, raw: bytes, limits: Limits) -> None:
        self.raw = raw
        self.limits = limits
        self.steps = 0
        self.problems: list[str] = []
        self.names: list[str] = []
        self.parts = 0
        self.deepest = 0
        self.stack: list[_Frame] = []
        self.open: dict[bytes, int] = {}  # boundary -> index in `stack` of the innermost user
        self.top: _Entity | None = None
        self.cursor = 0  # where the body of the entity just read starts
        self.complete = True
        self.charsets: dict[str, str | None] = {}  # charset name -> codec, for this message

    # -- bookkeeping --------------------------------------------------------------------------

    def problem(self, text: str) -> None:
        _add(self.problems, text)

    def step(self) -> None:
        self.steps += 1
        if self.steps > self.limits.max_steps:
            self.problem(f"inspection stopped after {self.limits.max_steps} steps (work limit)")
            raise _Stop

    def stop(self, text: str) -> None:
        self.problem(text)
        raise _Stop

    # -- the scan -----------------------------------------------------------------------------

    def run(self) -> None:
        pos: int | None = 0
        depth = 0
        default_type = b"text/plain"
        while pos is not None:
            body = self.entity(pos, depth, default_type)
            if body is not None:  # a message/rfc822 whose body is the next entity
                pos, depth, default_type = body, depth + 1, b"text/plain"
                continue
            pos, depth, default_type = self.seek(self.cursor)

    def entity(self, pos: int, depth: int, default_type: bytes) -> int | None:
        """Read one entity's header block; return the body offset when it is a message/*."""
        self.parts += 1
        if self.parts > self.limits.max_parts:
            self.stop(f"more than {self.limits.max_parts} MIME parts")
        self.deepest = max(self.deepest, depth)
        info = _Entity()
        if self.top is None:
            self.top = info  # kept even when a limit stops the scan inside the block
        body = self.headers(pos, info)
        self.cursor = body
        ctype, params = _parse_params(info.content_type or default_type, self)
        if info.content_types > 1:
            self.problem("duplicate Content-Type header")
        if len(info.encodings) > 1:
            self.problem("conflicting Content-Transfer-Encoding headers")
        composite = ctype.startswith((b"multipart/", b"message/rfc822", b"message/global"))
        if composite and depth >= self.limits.max_depth:
            self.deepest = max(self.deepest, depth + 1)
            self.problem(f"MIME nesting deeper than {self.limits.max_depth}")
            composite = False
        if composite and info.encodings - {b"7bit", b"8bit", b"binary"}:
            self.problem("composite part with a Content-Transfer-Encoding other than 7bit/8bit")
        self.note_name(info, params)
        if not composite:
            return None
        if ctype.startswith(b"message/"):
            return body
        boundary = params.get(b"boundary", b"")
        if not boundary:
            self.problem("multipart without a boundary")
            return None
        self.push(boundary, depth, ctype == b"multipart/digest")
        return None

    def push(self, boundary: bytes, depth: int, digest: bool) -> None:
        if len(boundary) > _MAX_BOUNDARY:
            self.problem(f"boundary longer than {_MAX_BOUNDARY} characters: parts not followed")
        for frame in self.stack[-8:]:
            if frame.boundary == boundary:
                self.problem("nested multipart reuses an enclosing boundary")
            elif boundary.startswith(frame.boundary) or frame.boundary.startswith(boundary):
                self.problem("a boundary is a prefix of another (parsers may disagree)")
        self.stack.append(_Frame(boundary, depth, digest))
        self.open[boundary] = len(self.stack) - 1

    def truncate(self, size: int) -> None:
        """Close every multipart above index `size - 1`."""
        if len(self.stack) > size:
            del self.stack[size:]
            self.open = {frame.boundary: index for index, frame in enumerate(self.stack)}

    def seek(self, pos: int) -> tuple[int | None, int, bytes]:
        """Skip body text to the next delimiter; return where the next entity starts."""
        raw = self.raw
        while self.stack:
            if raw.startswith(b"--", pos):
                line_start = pos
            else:
                found = raw.find(b"\n--", pos)
                if found < 0:
                    break
                line_start = found + 1
            self.step()
            newline = raw.find(b"\n", line_start)
            line_end = len(raw) if newline < 0 else newline + 1
            pos = line_end
            index, closing = self.delimiter(raw[line_start:line_end])
            if index < 0:
                continue
            if len(self.stack) > index + 1:
                self.problem("missing closing boundary")
            frame = self.stack[index]
            if closing:
                if frame.parts == 0:
                    self.problem("multipart with no parts")
                self.truncate(index)
                continue
            self.truncate(index + 1)
            frame.parts += 1
            return line_end, frame.depth + 1, b"message/rfc822" if frame.digest else b"text/plain"
        for frame in self.stack:
            self.problem("missing closing boundary")
            if frame.parts == 0:
                self.problem("multipart with no parts")
        self.truncate(0)
        return None, 0, b""

    def delimiter(self, line: bytes) -> tuple[int, bool]:
        """(index of the open multipart whose boundary this line is, closing?) or (-1, False)."""
        if not line.startswith(b"--"):
            return -1, False
        text = line[2:_MAX_BOUNDARY + 4].rstrip(b" \t\r\n")
        index = self.open.get(text)
        if index is not None:
            return index, False
        if text.endswith(b"--"):
            index = self.open.get(text[:-2])
            if index is not None:
                return index, True
        for frame in self.stack[-8:]:
            if text.startswith(frame.boundary):
                self.problem("a line starts with a boundary but is not a delimiter "
                             "(parsers may disagree)")
        return -1, False

    def headers(self, pos: int, info: _Entity) -> int:
        """Read a header block from `pos` into `info`; return where the body starts."""
        raw = self.raw
        limit = min(len(raw), pos + self.limits.max_header_block_bytes)
        current: bytes | None = None  # name of the field being read (lower case)
        value = bytearray()
        field_bytes = 0
        while pos < len(raw):
            self.step()
            newline = raw.find(b"\n", pos, limit)
            if newline < 0 and limit < len(raw):
                if raw[pos:pos + 1] not in (b" ", b"\t") and not _FIELD.match(raw, pos, limit):
                    break  # a (long) body line with no header block before it
                self.stop(f"header block larger than {self.limits.max_header_block_bytes} bytes")
            line_end = len(raw) if newline < 0 else newline + 1
            line = raw[pos:line_end]
            if line in (b"\r\n", b"\n"):
                pos = line_end
                break
            if line[:1] in (b" ", b"\t"):
                if current is not None:
                    field_bytes += len(line)
                    if field_bytes > self.limits.max_field_bytes:
                        self.problem(
                            f"header field larger than {self.limits.max_field_bytes} bytes"
                        )
                    elif current in _WANTED:
                        value += line
                pos = line_end
                continue
            if self.stack and line.startswith(b"--") and self.delimiter(line)[0] >= 0:
                break  # a part with no empty line after its headers
            match = _FIELD.match(line)
            if match is None:
                if pos == 0 and line.startswith(b"From "):
                    pos = line_end
                    continue
                break  # the body starts without an empty line
            self.finish(info, current, value)
            info.fields += 1
            if info.fields > self.limits.max_headers:
                self.problem(f"more than {self.limits.max_headers} header fields")
                return self.skip_headers(line_end, limit)
            current = match.group(1).lower()
            value = bytearray(line[match.end():]) if current in _WANTED else bytearray()
            field_bytes = len(line)
            if field_bytes > self.limits.max_field_bytes:
                self.problem(f"header field larger than {self.limits.max_field_bytes} bytes")
                value = value[: self.limits.max_field_bytes]
            pos = line_end
        self.finish(info, current, value)
        return pos

    def skip_headers(self, pos: int, limit: int) -> int:
        """After too many fields: find the empty line with `bytes.find`, not line by line."""
        raw = self.raw
        ends = [end for end in (raw.find(b"\n\n", pos - 1, limit),
                                raw.find(b"\n\r\n", pos - 1, limit)) if end >= 0]
        if not ends:
            if limit < len(raw):
                self.stop(f"header block larger than {self.limits.max_header_block_bytes} bytes")
            return len(raw)
        end = min(ends)
        return end + (2 if raw[end + 1] == 0x0A else 3)

    def finish(self, info: _Entity, name: bytes | None, value: bytearray) -> None:
        if name is None:
            return
        text = bytes(value).strip()
        if name == b"subject":
            info.subjects += 1
            if info.subject is None:
                info.subject = text
        elif name == b"content-type":
            info.content_types += 1
            if info.content_type is None:
                info.content_type = text
        elif name == b"content-disposition":
            if info.disposition is None:
                info.disposition = text
        elif name == b"content-transfer-encoding":
            info.encodings.add(text.lower())

    def note_name(self, info: _Entity, params: dict[bytes, bytes]) -> None:
        name = None
        if info.disposition is not None:
            name = _parse_params(info.disposition, self)[1].get(b"filename")
        if name is None:
            name = params.get(b"name")
        if name is None:
            return
        if len(self.names) >= self.limits.max_names:
            self.problem(f"more than {self.limits.max_names} attachment names: listed the first")
            return
        text = decode_words(name, min(self.limits.max_encoded_words, 20), self.problems,
                            "attachment name", self.charsets)
        if len(text) > self.limits.max_name_chars:
            self.problem(f"attachment name longer than {self.limits.max_name_chars} characters")
            text = text[: self.limits.max_name_chars] + "\u2026"
        self.names.append(_printable(text, self.problems, "attachment name"))


_MAX_BOUNDARY = 200  # RFC 2046 allows 70; longer ones are never matched

_WANTED = frozenset({b"subject", b"content-type", b"content-disposition",
                     b"content-transfer-encoding"})


def inspect(raw: bytes, limits: Limits = Limits()) -> Inspection:
    """Look at `raw` within `limits`; never raises, names every limit crossed in `problems`."""
    scanner = _Scanner(raw, limits)
    try:
        scanner.run()
    except _Stop:
        scanner.complete = False
    top = scanner.top or _Entity()
    subject = None
    if top.subject is not None:
        subject = decode_words(top.subject, limits.max_encoded_words, scanner.problems,
                               "Subject", scanner.charsets)
        subject = _printable(subject, scanner.problems, "Subject")
        if len(subject) > limits.max_subject_chars:
            subject = subject[: limits.max_subject_chars - 1] + "\u2026"
    if top.subjects > 1:
        _add(scanner.problems, f"{top.subjects} Subject headers")
    return Inspection(
        subject=subject,
        header_count=top.fields,
        part_count=min(scanner.parts, limits.max_parts),
        max_depth=scanner.deepest,
        attachment_names=scanner.names,
        problems=scanner.problems,
        complete=scanner.complete,
    )


# -- header values ----------------------------------------------------------------------------


def decode_words(value: bytes, max_words: int, problems: list[str], what: str = "header",
                 charsets: dict[str, str | None] | None = None) -> str:
    """Decode RFC 2047 encoded words in an unfolded or folded header value, at most `max_words`.

    White space between two encoded words is dropped (RFC 2047 6.2); text that is not in an
    encoded word is read as UTF-8 (RFC 6532), undecodable bytes as U+FFFD.
    """
    value = re.sub(rb"\r?\n(?=[ \t])", b"", value)
    out: list[str] = []
    pos = 0
    previous_end = -1
    for count, match in enumerate(_EW.finditer(value), start=1):
        if count > max_words:
            _add(problems, f"{what} has more than {max_words} encoded words: the rest is cut")
            out.append(value[pos:pos + 200].decode("utf-8", "replace") + "\u2026")
            return "".join(out)
        between = value[pos:match.start()]
        if previous_end < 0 or between.strip(b" \t") != b"":
            out.append(between.decode("utf-8", "replace"))
        out.append(_decode_word(match, problems, {} if charsets is None else charsets))
        pos = previous_end = match.end()
    out.append(value[pos:].decode("utf-8", "replace"))
    return "".join(out)


def _decode_word(match: re.Match[bytes], problems: list[str],
                 charsets: dict[str, str | None]) -> str:
    charset_bytes, encoding, text = match.group(1), match.group(2), match.group(3)
    charset = charset_bytes.split(b"*", 1)[0].decode("ascii", "replace")  # RFC 2231 language
    codec = _cached_codec(charset, charsets)
    if codec is None:
        _add(problems, f"unknown or refused charset {charset[:40]!r}: encoded word kept as is")
        return match.group(0).decode("ascii", "replace")
    try:
        if encoding in b"Bb":
            data = base64.b64decode(text + b"=" * (-len(text) % 4))
        else:
            data = _QP_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), text.replace(b"_", b" "))
        return data.decode(codec, "replace")
    except (binascii.Error, ValueError, LookupError, UnicodeError):
        _add(problems, "an encoded word could not be decoded: kept as is")
        return match.group(0).decode("ascii", "replace")


def _cached_codec(charset: str, charsets: dict[str, str | None]) -> str | None:
    """`_codec`, remembered per inspection; an unknown name costs a failed import (~40 us), so
    beyond `_MAX_CHARSETS` distinct names the rest count as unknown."""
    key = charset.lower()
    if key not in charsets:
        if len(charsets) >= _MAX_CHARSETS:
            return None
        charsets[key] = _codec(charset)
    return charsets[key]


_MAX_CHARSETS = 32


def _codec(charset: str) -> str | None:
    if not _CHARSET_NAME.match(charset):
        return None
    try:
        info = codecs.lookup(charset)
    except LookupError:
        return None
    if info.name in _DENIED_CODECS or not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def _parse_params(value: bytes, scanner: _Scanner) -> tuple[bytes, dict[bytes, bytes]]:
    """`type/subtype; a=b; c="d"` -> (b"type/subtype", {b"a": b"b", ...}), RFC 2231 joined."""
    value = re.sub(rb"\r?\n", b"", value[:16_384])
    head, _, rest = value.partition(b";")
    params: dict[bytes, bytes] = {}
    pieces: dict[bytes, dict[int, tuple[bool, bytes]]] = {}
    for count, match in enumerate(_PARAM.finditer(rest)):
        if count >= 100:
            scanner.problem("more than 100 parameters in a header: the rest ignored")
            break
        name = match.group(1).lower()
        raw_value = match.group(2)
        if len(raw_value) >= 2 and raw_value[:1] == raw_value[-1:] == b'"':
            raw_value = re.sub(rb"\\(.)", rb"\1", raw_value[1:-1])
        else:
            raw_value = raw_value.strip(b'"')
        section = _SECTION.match(name)
        if section is None or section.group(2) is section.group(3) is None:
            params.setdefault(name, raw_value)
            continue
        base, number, star = section.group(1), section.group(2), section.group(3)
        index = int(number) if number and len(number) < 4 else 0
        pieces.setdefault(base, {}).setdefault(index, (star is not None, raw_value))
    for base, sections in pieces.items():
        joined = b"".join(
            _pct_decode(text, index == 0) if encoded else text
            for index, (encoded, text) in sorted(sections.items())
        )
        charset = b"utf-8"
        if sections.get(0, (False, b""))[0]:
            charset = sections[0][1].split(b"'", 1)[0] or b"utf-8"
        codec = _cached_codec(charset.decode("ascii", "replace"), scanner.charsets) or "utf-8"
        params[base] = joined.decode(codec, "replace").encode("utf-8")
    return head.strip().lower(), params


_PARAM = re.compile(rb'([^\s=;"]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')
_SECTION = re.compile(rb"^([^*]+)(?:\*(\d+))?(\*)?$")  # name, name*, name*0, name*0*


def _pct_decode(text: bytes, first: bool) -> bytes:
    if first:  # charset'language'text
        parts = text.split(b"'", 2)
        text = parts[2] if len(parts) == 3 else text
    return _PCT.sub(lambda m: bytes([int(m.group(1), 16)]), text)


_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")


def _printable(text: str, problems: list[str], what: str) -> str:
    if _CONTROL.search(text) is None:
        return text
    _add(problems, f"{what} decodes to control or line-break characters (shown as U+FFFD)")
    return _CONTROL.sub("\ufffd", text)


MAX_PROBLEMS = 50


def _add(problems: list[str], text: str) -> None:
    if text in problems:
        return
    if len(problems) < MAX_PROBLEMS:
        problems.append(text)
    elif problems[-1] != _MORE:
        problems.append(_MORE)


_MORE = "more problems than listed"
