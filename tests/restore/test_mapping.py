"""IdMapping: learning changed generated values from responses and rewriting later requests."""

from __future__ import annotations

from pathlib import Path

import orjson

from replay.record.entry import Entry, Request, Response, encode_entry
from replay.restore.mapping import IdMapping
from replay.restore.replayer import Replayer
from replay.restore.transport import WSGITransport

OLD_ARN = "arn:aws:sns:us-east-1:123456789012:topic:11111111-aaaa-bbbb-cccc-000000000001"
NEW_ARN = "arn:aws:sns:us-east-1:123456789012:topic:22222222-dddd-eeee-ffff-000000000002"


def test_learns_pairs_one_to_one() -> None:
    mapping = IdMapping()
    mapping.learn([(OLD_ARN, NEW_ARN)])
    assert mapping.pairs == {OLD_ARN: NEW_ARN}
    assert mapping.fits([(OLD_ARN, NEW_ARN)])
    assert not mapping.fits([(OLD_ARN, "arn:aws:sns:us-east-1:123456789012:topic:other")])  # a second target
    assert not mapping.fits([("arn:aws:sns:us-east-1:123456789012:topic:third", NEW_ARN)])  # a taken target
    assert len(mapping) == 1


def test_rewrites_path_query_headers_and_structured_bodies() -> None:
    mapping = IdMapping()
    mapping.learn([("OLDUPLOADID123", "NEW/UPLOAD+ID"), ("version-old-1", "version-new-2"), (OLD_ARN, NEW_ARN)])
    s3 = Request(
        "PUT",
        "/bkt/OLDUPLOADID123/x",
        "partNumber=1&uploadId=OLDUPLOADID123",
        [("x-amz-copy-source-version-id", "version-old-1"), ("Content-Type", "application/octet-stream")],
        b"OLDUPLOADID123 is opaque data here",
    )
    rewritten = mapping.rewrite(s3)
    assert rewritten.path == "/bkt/NEW%2FUPLOAD+ID/x"
    assert rewritten.query == "partNumber=1&uploadId=NEW%2FUPLOAD%2BID"
    assert rewritten.header("x-amz-copy-source-version-id") == "version-new-2"
    assert rewritten.body == s3.body  # object data is never rewritten

    form = Request(
        "POST",
        "/",
        "",
        [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
        b"Action=Unsubscribe&SubscriptionArn=" + OLD_ARN.replace(":", "%3A").encode(),
    )
    assert mapping.rewrite(form).body == b"Action=Unsubscribe&SubscriptionArn=" + NEW_ARN.replace(":", "%3A").encode()

    json_body = Request(
        "POST", "/", "", [("Content-Type", "application/x-amz-json-1.0")], orjson.dumps({"Arn": OLD_ARN, "n": 1})
    )
    assert orjson.loads(mapping.rewrite(json_body).body) == {"Arn": NEW_ARN, "n": 1}

    xml_body = Request("POST", "/bkt/k", "", [("Content-Type", "application/xml")], b"<A><Id>OLDUPLOADID123</Id></A>")
    assert mapping.rewrite(xml_body).body == b"<A><Id>NEW/UPLOAD+ID</Id></A>"


def test_rewrite_returns_the_same_request_when_nothing_applies() -> None:
    mapping = IdMapping()
    request = Request("GET", "/bkt/key", "a=b", [("Host", "h")], b"")
    assert mapping.rewrite(request) is request
    mapping.learn([("something-else", "other-value")])
    assert mapping.rewrite(request) is request


def test_replaying_a_multipart_upload_into_fresh_moto_converges(tmp_path: Path) -> None:
    from replay.serve.emulators import moto_emulator

    def auth(service: str) -> tuple[str, str]:
        scope = f"AK/20240101/us-east-1/{service}/aws4_request"
        return ("Authorization", f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host")

    app = moto_emulator().app
    live = WSGITransport(app)
    reset = Request("POST", "/moto-api/reset", "", [], b"")
    live.send(reset)
    calls = [Request("PUT", "/mapbkt", "", [auth("s3")], b"")]
    log = tmp_path / "recorded_api_calls.json"
    lines = []

    def record(request: Request) -> Response:
        response = live.send(request)
        assert response.ok, response.body
        lines.append(encode_entry(Entry(0.0, "s3", "op", request, response)))
        return response

    for call in calls:
        record(call)
    created = record(Request("POST", "/mapbkt/big.bin", "uploads", [auth("s3")], b""))
    upload_id = created.body.split(b"<UploadId>")[1].split(b"</UploadId>")[0].decode()
    part = record(Request("PUT", "/mapbkt/big.bin", f"partNumber=1&uploadId={upload_id}", [auth("s3")], b"x" * 100))
    etag = dict((k.lower(), v) for k, v in part.headers)["etag"]
    complete = (
        f"<CompleteMultipartUpload><Part><ETag>{etag}</ETag><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>"
    ).encode()
    record(Request("POST", "/mapbkt/big.bin", f"uploadId={upload_id}", [auth("s3")], complete))
    log.write_bytes(b"".join(lines))

    live.send(reset)
    plain = Replayer(live, mapping=False).replay(log)
    assert plain.failed == 2  # UploadPart and Complete name an upload id that no longer exists

    live.send(reset)
    report = Replayer(live).replay(log)
    assert (report.restored, report.failed) == (4, 0)
    assert report.mapped >= 1
    assert live.send(Request("GET", "/mapbkt/big.bin", "", [auth("s3")], b"")).body == b"x" * 100
