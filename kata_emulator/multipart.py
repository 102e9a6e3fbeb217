"""multipart/form-data for `POST /scans`: split the body, then check the three fields.

The body arrives already bounded by the server (Content-Length checked against the maximum
object size); here only its structure is checked, and every refusal names the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message

from katagate.schemas.errors import KatagateError

SCAN_ID = re.compile(r"[A-Za-z0-9]{1,64}")
MAX_PARTS = 16
MAX_HEADER_BYTES = 8192


class FormError(KatagateError, ValueError):
    """The request body is not the form the API documents; the message says which field."""


@dataclass(frozen=True)
class ScanForm:
    scan_id: str
    object_type: str
    content: bytes


def boundary_of(content_type: str) -> str:
    header = Message()
    header["Content-Type"] = content_type
    if header.get_content_type() != "multipart/form-data":
        raise FormError("the body must be multipart/form-data")
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not 1 <= len(boundary) <= 70:
        raise FormError("multipart/form-data without a valid boundary")
    return boundary


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """Field name -> value. Duplicates, missing names and an unterminated body are refused."""
    delimiter = b"\r\n--" + boundary_of(content_type).encode("latin-1")
    data = b"\r\n" + body  # the first delimiter needs no preceding CRLF
    start = data.find(delimiter)
    if start < 0:
        raise FormError("multipart body without its boundary")
    fields: dict[str, bytes] = {}
    position = start + len(delimiter)
    while True:
        if data.startswith(b"--", position):
            return fields
        if not data.startswith(b"\r\n", position):
            raise FormError("malformed multipart delimiter")
        end = data.find(delimiter, position)
        if end < 0:
            raise FormError("multipart body is not terminated")
        name, value = _part(data[position + 2:end])
        if name in fields:
            raise FormError(f"field '{name}' given twice")
        if len(fields) >= MAX_PARTS:
            raise FormError(f"more than {MAX_PARTS} form fields")
        fields[name] = value
        position = end + len(delimiter)


def _part(part: bytes) -> tuple[str, bytes]:
    split = part.find(b"\r\n\r\n")
    if split < 0 or split > MAX_HEADER_BYTES:
        raise FormError("a form part without headers")
    headers = Message()
    for line in part[:split].decode("latin-1").split("\r\n"):
        key, sep, value = line.partition(":")
        if not sep:
            raise FormError("a malformed form part header")
        headers[key.strip()] = value.strip()
    disposition = headers.get("Content-Disposition", "")
    name = headers.get_param("name", header="Content-Disposition")
    if not disposition.lower().startswith("form-data") or not isinstance(name, str) or not name:
        raise FormError("a form part without Content-Disposition: form-data; name=...")
    return name, part[split + 4:]


def scan_form(fields: dict[str, bytes]) -> ScanForm:
    """The three documented fields: `scanId` (letters and digits), `objectType=file`, `content`."""
    if "scanId" not in fields:
        raise FormError("field 'scanId' is missing")
    scan_id = fields["scanId"].decode("latin-1").strip()
    if not SCAN_ID.fullmatch(scan_id):
        raise FormError("field 'scanId' must be 1-64 letters and digits, no spaces or special "
                        "characters")
    if "objectType" not in fields:
        raise FormError("field 'objectType' is missing")
    object_type = fields["objectType"].decode("latin-1").strip()
    if object_type != "file":
        raise FormError(f"field 'objectType' must be 'file', not {object_type[:32]!r}")
    if "content" not in fields:
        raise FormError("field 'content' is missing")
    return ScanForm(scan_id=scan_id, object_type=object_type, content=fields["content"])
