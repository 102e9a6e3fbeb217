"""multipart/form-data of `POST /scans`: structure and the three documented fields."""

from __future__ import annotations

import pytest

from katagate.kata_emulator.multipart import FormError, parse_multipart, scan_form

CT = "multipart/form-data; boundary=XyZ"


def form(*parts: tuple[str, bytes], boundary: str = "XyZ") -> bytes:
    out = b""
    for name, value in parts:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                .encode() + value + b"\r\n")
    return out + f"--{boundary}--\r\n".encode()


def test_a_good_form():
    body = form(("content", b"\x00bin\r\n--Xy data"), ("scanId", b"abc123"),
                ("objectType", b"file"))
    result = scan_form(parse_multipart(body, CT))
    assert (result.scan_id, result.object_type, result.content) == (
        "abc123", "file", b"\x00bin\r\n--Xy data")


def test_file_part_with_filename_and_content_type():
    body = (b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"content\"; "
            b"filename=\"m.eml\"\r\nContent-Type: application/octet-stream\r\n\r\nDATA\r\n"
            + form(("scanId", b"a1"), ("objectType", b"file")))
    assert scan_form(parse_multipart(body, CT)).content == b"DATA"


@pytest.mark.parametrize(("parts", "message"), [
    ((("content", b"x"), ("objectType", b"file")), "field 'scanId' is missing"),
    ((("content", b"x"), ("scanId", b"a b"), ("objectType", b"file")), "field 'scanId' must"),
    ((("content", b"x"), ("scanId", b"a/1"), ("objectType", b"file")), "field 'scanId' must"),
    ((("content", b"x"), ("scanId", b"a" * 65), ("objectType", b"file")), "field 'scanId'"),
    ((("content", b"x"), ("scanId", b""), ("objectType", b"file")), "field 'scanId' must"),
    ((("content", b"x"), ("scanId", b"a1"), ("objectType", b"url")),
     "field 'objectType' must be 'file'"),
    ((("content", b"x"), ("scanId", b"a1")), "field 'objectType' is missing"),
    ((("scanId", b"a1"), ("objectType", b"file")), "field 'content' is missing"),
])
def test_field_errors_name_the_field(parts, message):
    with pytest.raises(FormError, match=message):
        scan_form(parse_multipart(form(*parts), CT))


@pytest.mark.parametrize(("body", "content_type", "message"), [
    (form(("scanId", b"a")), "application/json", "multipart/form-data"),
    (form(("scanId", b"a")), "multipart/form-data", "boundary"),
    (b"no boundary here", CT, "without its boundary"),
    (form(("scanId", b"a"))[:-9], CT, "not terminated"),
    (form(("scanId", b"a"), ("scanId", b"b")), CT, "given twice"),
    (b"--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--", CT, "name="),
    (b"--XyZ\r\nno headers end", CT, "not terminated"),
])
def test_structural_errors(body, content_type, message):
    with pytest.raises(FormError, match=message):
        parse_multipart(body, content_type)
