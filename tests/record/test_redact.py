from __future__ import annotations

from replay.record.entry import Request
from replay.record.redact import redact

SIGNATURE = "f" * 64
SIGV4 = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/eu-west-1/s3/aws4_request, "
    f"SignedHeaders=host;x-amz-date, Signature={SIGNATURE}"
)


def test_sigv4_header_keeps_the_credential_scope_only() -> None:
    request = Request("PUT", "/b", "", [("Authorization", SIGV4), ("X-Amz-Security-Token", "TOKEN")], b"")
    safe = redact(request)
    assert safe.header("Authorization") == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/eu-west-1/s3/aws4_request, SignedHeaders=host;x-amz-date"
    )
    assert safe.header("X-Amz-Security-Token") is None
    assert SIGNATURE not in repr(safe.headers)


def test_sigv2_and_other_schemes() -> None:
    v2 = redact(Request("PUT", "/b", "", [("Authorization", "AWS AKIDEXAMPLE:c2lnbmF0dXJl")], b""))
    assert v2.header("Authorization") == "AWS AKIDEXAMPLE:"
    bearer = redact(Request("POST", "/x", "", [("Authorization", "Bearer secret"), ("Proxy-Authorization", "b")], b""))
    assert bearer.headers == ()


def test_presigned_query_parameters() -> None:
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20240101%2Fus-east-1%2Fs3%2Faws4_request"
        f"&X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={SIGNATURE}"
        "&X-Amz-Security-Token=TOKEN&uploadId=1"
    )
    safe = redact(Request("PUT", "/b/k", query, [], b"data"))
    assert "X-Amz-Credential=AK%2F20240101%2Fus-east-1%2Fs3%2Faws4_request" in safe.query
    assert "uploadId=1" in safe.query
    assert SIGNATURE not in safe.query and "TOKEN" not in safe.query
    v2 = redact(Request("PUT", "/b/k", "AWSAccessKeyId=AK&Signature=abc%3D&x-amz-security-token=T&Expires=1", [], b""))
    assert v2.query == "AWSAccessKeyId=AK&Expires=1"


def test_form_bodies_lose_sigv2_parameters() -> None:
    body = b"Action=CreateTopic&Name=t&AWSAccessKeyId=AK&Signature=abc&SignatureMethod=HmacSHA256&SecurityToken=T"
    headers = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")]
    safe = redact(Request("POST", "/", "", headers, body))
    assert safe.body == b"Action=CreateTopic&Name=t&AWSAccessKeyId=AK&SignatureMethod=HmacSHA256"
    opaque = Request("POST", "/", "", [("Content-Type", "application/octet-stream")], b"Signature=kept")
    assert redact(opaque) is opaque


def test_nothing_to_redact_returns_the_same_object() -> None:
    request = Request("POST", "/", "a=1", [("Host", "h")], b"{}")
    assert redact(request) is request


def test_signed_streaming_upload_is_stored_decoded() -> None:
    chunk_sig = "a" * 64
    payload = bytes(range(256)) * 3
    body = (
        f"{len(payload):x};chunk-signature={chunk_sig}\r\n".encode()
        + payload
        + f"\r\n0;chunk-signature={chunk_sig}\r\n".encode()
        + b"x-amz-checksum-crc32:AAAAAA==\r\nx-amz-trailer-signature:"
        + chunk_sig.encode()
        + b"\r\n\r\n"
    )
    headers = [
        ("Authorization", SIGV4),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"),
        ("Content-Encoding", "aws-chunked,gzip"),
        ("x-amz-decoded-content-length", str(len(payload))),
        ("x-amz-trailer", "x-amz-checksum-crc32"),
        ("Content-Length", str(len(body))),
    ]
    safe = redact(Request("PUT", "/b/k", "", headers, body))
    assert safe.body == payload
    assert chunk_sig.encode() not in safe.body
    assert chunk_sig not in repr(safe.headers)
    assert safe.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD"
    assert safe.header("Content-Length") == str(len(payload))
    assert safe.header("Content-Encoding") == "gzip"
    assert safe.header("x-amz-checksum-crc32") == "AAAAAA=="
    assert safe.header("x-amz-decoded-content-length") is None


def test_presigned_post_forms_lose_their_policy_signature_and_token_but_keep_the_upload() -> None:
    boundary = "----b0und4ry"
    secret_fields = {
        "policy": "eyJjb25kaXRpb25zIjogW119",
        "x-amz-signature": "9" * 64,
        "x-amz-security-token": "FwoGZXIvYXdzSessionToken",
        "signature": "c2lnbmF0dXJl",
    }
    kept_fields = {
        "key": "up/a.txt",
        "x-amz-credential": "AKID/20260101/us-east-1/s3/aws4_request",
        "x-amz-meta-a": "1",
    }
    parts = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in {**kept_fields, **secret_fields}.items()
    )
    body = (
        f'{parts}--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        f"Content-Type: text/plain\r\n\r\npayload bytes\r\n--{boundary}--\r\n"
    ).encode()
    headers = [("Content-Type", f"multipart/form-data; boundary={boundary}"), ("Content-Length", str(len(body)))]
    safe = redact(Request("POST", "/bucket", "", headers, body))
    for value in secret_fields.values():
        assert value.encode() not in safe.body
    for value in kept_fields.values():
        assert value.encode() in safe.body
    assert b"payload bytes" in safe.body and safe.body.endswith(f"--{boundary}--\r\n".encode())
    assert safe.header("Content-Length") == str(len(safe.body))
    plain = Request("POST", "/bucket", "", headers, body.replace(b"policy", b"note").replace(b"signature", b"sig"))
    stripped = redact(plain)
    assert b"x-amz-security-token" not in stripped.body  # the token field goes whatever else is there


def test_secrets_in_answers_are_kept_as_digests_that_still_compare() -> None:
    from replay.record.redact import REDACTED, conceals, redact_answer

    token, secret = "IQoJb3JpZ2luX2VjEXAMPLETOKEN", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    xml = (
        f"<Credentials><AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>"
        f"<SessionToken>{token}</SessionToken></Credentials>"
    )
    json_body = f'{{"AccessKey": {{"AccessKeyId": "AKIA1", "SecretAccessKey": "{secret}"}}}}'
    for body in (xml.encode(), json_body.encode()):
        safe = redact_answer(body)
        assert token.encode() not in safe and secret.encode() not in safe
        assert b"ASIA1" in safe or b"AKIA1" in safe
        assert REDACTED.encode() in safe
    digest = redact_answer(f"<SessionToken>{token}</SessionToken>".encode()).decode()[
        len("<SessionToken>") : -len("</SessionToken>")
    ]
    assert conceals(digest, token)
    assert not conceals(digest, token + "x")
    assert not conceals(token, token)
    plain = b'{"QueueUrl": "http://localhost/123456789012/q"}'
    assert redact_answer(plain) is plain
