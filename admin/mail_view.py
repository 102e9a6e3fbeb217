"""A safe look at a stored message (a Backup copy): its header fields decoded, the text of its
body, the list of its attachments. Pure and bounded, for hostile mail: at most `limit` bytes
are parsed, at most MAX_PARTS parts visited MAX_DEPTH deep, nothing raises on bad MIME, and
every string is safe to print on a terminal or put in a page as text (control characters
replaced; HTML is turned into its text by a linear tag stripper, never rendered)."""

from __future__ import annotations

import email.header
import email.parser
import email.policy
import re
from dataclasses import dataclass
from email.message import Message
from html import unescape

MAX_PARTS = 1000
MAX_DEPTH = 50
MAX_HEADERS = 500  # fields shown
MAX_HEADER_VALUE = 2000  # characters shown of one field
MAX_FIELD_BYTES = 16 * 1024  # bytes of one field parsed (more than the 4 * 2000 decoded)
REPLACEMENT = "\ufffd"
# C0 controls but tab and newline, DEL, C1 controls, and the characters that reorder or hide
# text on a display (bidi overrides and isolates, line and paragraph separators).
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int  # decoded bytes


@dataclass(frozen=True)
class MailView:
    headers: list[tuple[str, str]]
    text: str
    attachments: list[Attachment]
    truncated: bool  # the message is longer than the limit, or has more parts than shown


def safe_text(text: str) -> str:
    """Text with CRLF/CR as newlines and every unsafe character replaced."""
    return _UNSAFE.sub(REPLACEMENT, text.replace("\r\n", "\n").replace("\r", "\n"))


def safe_line(text: str) -> str:
    """One line: newlines and tabs are unsafe too (a decoded header cannot start a new field)."""
    return safe_text(text).replace("\n", REPLACEMENT).replace("\t", " ")


def _decode(data: bytes, charset: str | None) -> str:
    try:
        return data.decode(charset or "us-ascii", errors="replace")
    except (LookupError, ValueError):  # an unknown or unusable charset
        return data.decode("utf-8", errors="replace")


def _header_value(raw: object) -> str:
    """A field's value with its encoded words decoded; an undecodable word is kept as written."""
    text = str(raw)[:4 * MAX_HEADER_VALUE]  # what is decoded; the rest is never shown
    try:
        words = email.header.decode_header(text)
    except (ValueError, LookupError, AssertionError, IndexError):
        return safe_line(text)[:MAX_HEADER_VALUE]
    parts: list[str] = []
    for chunk, charset in words:
        parts.append(_decode(chunk, charset) if isinstance(chunk, bytes) else chunk)
    # decode_header keeps the folding whitespace between plain and encoded parts apart.
    joined = "".join(parts) if any(c for _w, c in words) else text
    return safe_line(re.sub(r"[ \t]*\r?\n[ \t]+", " ", joined))[:MAX_HEADER_VALUE]


# A tag ends at the first `>` before the next `<`, so no match attempt scans past the next
# `<` and the regex engine finds every tag in linear time; a `<` that starts no tag is text.
# (html.parser is quadratic on unclosed tags: 64 KiB of `<a ` took it 50 s of CPU.)
_TAG = re.compile(r"<!--|<(/?)([A-Za-z][A-Za-z0-9:-]*)[^<>]*>|<[!?/][^<>]*>")
_BLOCKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6",
                     "table", "blockquote", "pre", "hr", "title"})


def html_text(html: str) -> str:
    """The text of an HTML part: data kept (character references decoded), tags and comments
    dropped, script and style skipped."""
    parts: list[str] = []
    skipping: str | None = None  # inside script or style: until its end tag
    position = 0
    while (tag := _TAG.search(html, position)) is not None:
        if skipping is None:
            parts.append(unescape(html[position:tag.start()]))
        position = tag.end()
        if tag.group() == "<!--":  # a comment runs to `-->`, or to the end
            close = html.find("-->", position)
            position = len(html) if close < 0 else close + 3
            continue
        name, closing = (tag.group(2) or "").lower(), tag.group(1) == "/"
        if skipping is not None:
            skipping = None if closing and name == skipping else skipping
        elif name in ("script", "style") and not closing:
            skipping = name
        elif name in _BLOCKS:
            parts.append("\n")
    if skipping is None:
        parts.append(unescape(html[position:]))
    return re.sub(r"\n{3,}", "\n\n", "".join(parts)).strip("\n")


def _payload(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except (ValueError, LookupError, AssertionError, TypeError):
        data = None
    return data if isinstance(data, bytes) else b""


_HEAD_END = re.compile(rb"\r?\n\r?\n")
_FIELD_START = re.compile(rb"\r?\n(?![ \t])")  # a line break that does not fold a field


def _entity(data: bytes) -> tuple[Message, bytes]:
    """A part's header fields (parsed alone: the standard parser recurses once per nesting
    level, which hostile mail turns into a RecursionError) and its raw body."""
    end = _HEAD_END.search(data)
    head, body = (data, b"") if end is None else (data[:end.start()], data[end.end():])
    # Only what can be shown is parsed: MAX_HEADERS fields and one more (to tell that more
    # follow), each cut past what `_header_value` decodes. 1 MiB of `X: a` lines took 3 s to
    # parse whole, 1 MiB of RFC 2231 filename continuations 3.3 s.
    fields = _FIELD_START.split(head, MAX_HEADERS + 1)[:MAX_HEADERS + 1]
    head = b"\r\n".join(field[:MAX_FIELD_BYTES] for field in fields)
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(
        head + b"\r\n\r\n")
    return parsed, body


def _children(body: bytes, boundary: str, most: int) -> tuple[list[bytes], bool]:
    """The first `most` parts between a multipart body's delimiter lines (RFC 2046 5.1.1),
    and whether more follow; the preamble and the epilogue are dropped, a missing close
    delimiter ends the last part at the end."""
    delimiter = re.compile(rb"(?m)^--" + re.escape(boundary.encode("utf-8", "replace"))
                           + rb"(--)?[ \t]*\r?$")
    parts: list[bytes] = []
    start: int | None = None
    for match in delimiter.finditer(body):
        if start is not None:
            if len(parts) == most:
                return parts, True
            parts.append(body[start:max(start, match.start() - 1)].rstrip(b"\r"))
        if match.group(1):
            return parts, False
        start = match.end() + 1
    if start is not None:
        if len(parts) == most:
            return parts, True
        parts.append(body[start:])
    return parts, False


def _parts(data: bytes) -> tuple[Message, list[Message], bool]:
    """The top entity and the leaf parts in reading order, depth-first without recursion,
    each leaf with its body as payload; True when parts were left out (too many or too deep)."""
    top, top_body = _entity(data)
    leaves: list[Message] = []
    stack: list[tuple[Message, bytes, int]] = [(top, top_body, 0)]
    visited, cut = 0, False
    while stack:
        part, body, depth = stack.pop()
        visited += 1
        boundary = part.get_boundary() if part.get_content_maintype() == "multipart" else None
        if boundary:
            if depth >= MAX_DEPTH:
                return top, leaves, True
            # Only the parts that can still be visited are parsed: 1 MiB of `--b` lines is
            # 260,000 parts, whose headers took 17 s to parse when all were.
            children, more = _children(body, boundary, MAX_PARTS - visited - len(stack))
            cut = cut or more
            stack.extend((*_entity(child), depth + 1) for child in reversed(children))
        else:
            part.set_payload(body.decode("latin-1"))  # bytes kept one to one for decoding
            leaves.append(part)
    return top, leaves, cut


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except (ValueError, LookupError, AssertionError, TypeError):
        return "(unreadable name)"
    return None if name is None else safe_line(_header_value(name))[:255]


def view(data: bytes, limit: int) -> MailView:
    """The view of `data`'s first `limit` bytes."""
    truncated = len(data) > limit
    message, leaves, cut = _parts(data[:limit])
    fields = message.items()
    headers = [(safe_line(str(name))[:200], _header_value(value))
               for name, value in fields[:MAX_HEADERS]]
    texts: list[str] = []
    html: list[str] = []
    attachments: list[Attachment] = []
    for part in leaves:
        content_type = safe_line(part.get_content_type())[:200]
        filename = _filename(part)
        disposition = str(part.get("Content-Disposition", "")).split(";")[0].strip().lower()
        body = _payload(part)
        if filename is None and disposition != "attachment" and content_type in (
                "text/plain", "text/html"):
            text = _decode(body, part.get_content_charset())
            (texts if content_type == "text/plain" else html).append(text)
        else:
            attachments.append(Attachment(filename or "", content_type, len(body)))
    # HTML stands in for the text only when the message has no plain text at all.
    shown = texts if texts else [html_text(h) for h in html]
    return MailView(headers=headers, text=safe_text("\n\n".join(shown)),
                    attachments=attachments,
                    truncated=truncated or cut or len(fields) > MAX_HEADERS)
