from __future__ import annotations

import pytest

from replay.record.classify import Call, DefaultClassifier, s3_operation
from replay.record.entry import Request


def sigv4(service: str) -> tuple[str, str]:
    return (
        "Authorization",
        f"AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/{service}/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "ab" * 32,
    )


def json_call(target: str, service: str) -> Request:
    return Request(
        "POST",
        "/",
        "",
        [sigv4(service), ("X-Amz-Target", target), ("Content-Type", "application/x-amz-json-1.0")],
        b"{}",
    )


def query_call(action: str, service: str, method: str = "POST") -> Request:
    if method == "GET":
        return Request("GET", "/", f"Action={action}&Version=2010-03-31", [sigv4(service)], b"")
    headers = [sigv4(service), ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")]
    return Request(method, "/", "", headers, f"Version=2010-03-31&Action={action}&Name=x".encode())


def rest_call(method: str, path: str, query: str = "", headers: tuple[tuple[str, str], ...] = ()) -> Request:
    return Request(method, path, query, [sigv4("s3"), *headers], b"")


classify = DefaultClassifier()


@pytest.mark.parametrize(
    ("target", "service", "expected"),
    [
        ("AmazonSQS.CreateQueue", "sqs", Call("sqs", "CreateQueue", True)),
        ("AmazonSQS.SendMessage", "sqs", Call("sqs", "SendMessage", True)),
        ("AmazonSQS.ReceiveMessage", "sqs", Call("sqs", "ReceiveMessage", True)),
        ("AmazonSQS.ListQueues", "sqs", Call("sqs", "ListQueues", False)),
        ("AmazonSQS.GetQueueUrl", "sqs", Call("sqs", "GetQueueUrl", False)),
        ("DynamoDB_20120810.PutItem", "dynamodb", Call("dynamodb", "PutItem", True)),
        ("DynamoDB_20120810.BatchWriteItem", "dynamodb", Call("dynamodb", "BatchWriteItem", True)),
        ("DynamoDB_20120810.Query", "dynamodb", Call("dynamodb", "Query", False)),
        ("DynamoDB_20120810.Scan", "dynamodb", Call("dynamodb", "Scan", False)),
        ("DynamoDB_20120810.BatchGetItem", "dynamodb", Call("dynamodb", "BatchGetItem", False)),
        ("DynamoDB_20120810.DescribeTable", "dynamodb", Call("dynamodb", "DescribeTable", False)),
        ("TrentService.Decrypt", "kms", Call("kms", "Decrypt", False)),
        ("TrentService.CreateKey", "kms", Call("kms", "CreateKey", True)),
    ],
)
def test_json_protocol(target: str, service: str, expected: Call) -> None:
    assert classify(json_call(target, service)) == expected


@pytest.mark.parametrize(
    ("action", "service", "method", "mutating"),
    [
        ("CreateTopic", "sns", "POST", True),
        ("ListTopics", "sns", "POST", False),
        ("Publish", "sns", "POST", True),
        ("CreateUser", "iam", "POST", True),
        ("GetUser", "iam", "POST", False),
        ("RunInstances", "ec2", "POST", True),
        ("DescribeInstances", "ec2", "POST", False),
        ("DescribeInstances", "ec2", "GET", False),
        ("CreateVpc", "ec2", "GET", True),
        ("AssumeRole", "sts", "POST", True),  # moto keeps the session: the key maps to the role's account
        ("AssumeRoleWithWebIdentity", "sts", "POST", True),
        ("GetCallerIdentity", "sts", "POST", False),
        ("GetSessionToken", "sts", "POST", False),
    ],
)
def test_query_protocol_reads_sent_as_post_are_reads(action: str, service: str, method: str, mutating: bool) -> None:
    assert classify(query_call(action, service, method)) == Call(service, action, mutating)


def test_query_action_needs_a_form_body() -> None:
    request = Request("POST", "/upload", "", [sigv4("s3"), ("Content-Type", "application/octet-stream")], b"Action=x")
    assert classify(request).operation != "x"


@pytest.mark.parametrize(
    ("method", "path", "query", "headers", "operation", "mutating"),
    [
        ("GET", "/", "", (), "ListBuckets", False),
        ("PUT", "/bucket", "", (), "CreateBucket", True),
        ("DELETE", "/bucket", "", (), "DeleteBucket", True),
        ("HEAD", "/bucket", "", (), "HeadBucket", False),
        ("GET", "/bucket", "list-type=2&prefix=a", (), "ListObjectsV2", False),
        ("GET", "/bucket", "versions", (), "ListObjectVersions", False),
        ("PUT", "/bucket", "versioning", (), "PutBucketVersioning", True),
        ("PUT", "/bucket", "tagging", (), "PutBucketTagging", True),
        ("DELETE", "/bucket", "policy", (), "DeleteBucketPolicy", True),
        ("GET", "/bucket", "location", (), "GetBucketLocation", False),
        ("PUT", "/bucket", "object-lock", (), "PutObjectLockConfiguration", True),
        ("POST", "/bucket", "delete", (), "DeleteObjects", True),
        ("PUT", "/bucket/a/b%20c.txt", "", (), "PutObject", True),
        ("PUT", "/bucket/key", "", (("x-amz-copy-source", "/src/k"),), "CopyObject", True),
        ("GET", "/bucket/key", "", (), "GetObject", False),
        ("HEAD", "/bucket/key", "", (), "HeadObject", False),
        ("DELETE", "/bucket/key", "", (), "DeleteObject", True),
        ("POST", "/bucket/key", "uploads", (), "CreateMultipartUpload", True),
        ("PUT", "/bucket/key", "partNumber=1&uploadId=abc", (), "UploadPart", True),
        ("PUT", "/bucket/key", "partNumber=1&uploadId=abc", (("x-amz-copy-source", "/s/k"),), "UploadPartCopy", True),
        ("POST", "/bucket/key", "uploadId=abc", (), "CompleteMultipartUpload", True),
        ("DELETE", "/bucket/key", "uploadId=abc", (), "AbortMultipartUpload", True),
        ("GET", "/bucket/key", "uploadId=abc", (), "ListParts", False),
        ("PUT", "/bucket/key", "tagging", (), "PutObjectTagging", True),
        ("POST", "/bucket/key", "restore", (), "RestoreObject", True),
        ("POST", "/bucket/key", "select&select-type=2", (), "SelectObjectContent", False),
    ],
)
def test_s3_rest(
    method: str, path: str, query: str, headers: tuple[tuple[str, str], ...], operation: str, mutating: bool
) -> None:
    request = rest_call(method, path, query, headers)
    assert s3_operation(request) == operation
    assert classify(request) == Call("s3", operation, mutating)


def test_presigned_urls_name_their_service() -> None:
    v4 = Request(
        "PUT",
        "/b/k",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20240101%2Fus-east-1%2Fs3%2Faws4_request",
        [],
        b"x",
    )
    assert classify(v4) == Call("s3", "PutObject", True)
    v2 = Request("PUT", "/b/k", "AWSAccessKeyId=AK&Signature=abc&Expires=1", [], b"x")
    assert classify(v2) == Call("s3", "PutObject", True)


def test_other_rest_services_are_named_by_method_and_path() -> None:
    request = Request("POST", "/2015-03-31/functions", "", [sigv4("lambda")], b"{}")
    assert classify(request) == Call("lambda", "POST /2015-03-31/functions", True)
    assert not classify(Request("GET", "/2015-03-31/functions", "", [sigv4("lambda")], b"")).mutating


def test_control_paths_are_not_recorded_except_moto_reset() -> None:
    assert not classify(Request("POST", "/_localstack/state/save", "", [], b"")).mutating
    assert not classify(Request("POST", "/moto-api/seed", "a=42", [], b"")).mutating
    assert classify(Request("POST", "/moto-api/reset", "", [], b"")) == Call("moto", "Reset", True)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/_localstack/state/sqs/reset", Call("sqs", "ResetState", True)),
        ("POST", "/_localstack/state/cognito-idp/reset/", Call("cognito-idp", "ResetState", True)),
        ("GET", "/_localstack/state/sqs/reset", Call("control", "/_localstack/state/sqs/reset", False)),
        ("POST", "/_localstack/state/reset", Call("control", "/_localstack/state/reset", False)),
        ("POST", "/_localstack/state/sqs/save", Call("control", "/_localstack/state/sqs/save", False)),
        ("POST", "/_localstack/state/../reset", Call("control", "/_localstack/state/../reset", False)),
    ],
)
def test_resetting_one_service_is_that_services_recorded_change(method: str, path: str, expected: Call) -> None:
    assert classify(Request(method, path, "", [], b"")) == expected


def test_target_without_credentials_names_the_service_from_the_prefix() -> None:
    request = Request("POST", "/", "", [("X-Amz-Target", "AmazonSQS.CreateQueue")], b"{}")
    assert classify(request) == Call("sqs", "CreateQueue", True)


def test_reads_that_change_state_are_recorded_and_unsigned_cognito_calls_name_their_service() -> None:
    get_id = Request("POST", "/", "", [("X-Amz-Target", "AWSCognitoIdentityService.GetId")], b"{}")
    assert classify(get_id) == Call("cognito-identity", "GetId", True)
    sign_up = Request("POST", "/", "", [("X-Amz-Target", "AWSCognitoIdentityProviderService.SignUp")], b"{}")
    assert classify(sign_up) == Call("cognito-idp", "SignUp", True)
    assert classify(json_call("Logs_20140328.StartQuery", "logs")) == Call("logs", "StartQuery", True)
    assert classify(json_call("AmazonDMSv20160101.TestConnection", "dms")).mutating
    assert not classify(json_call("Logs_20140328.FilterLogEvents", "logs")).mutating


def test_presigned_post_forms_are_s3_uploads() -> None:
    boundary = "b0und4ry"

    def form(fields: dict[str, str]) -> Request:
        parts = "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        )
        upload = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nx\r\n'
        body = f"{parts}{upload}--{boundary}--\r\n"
        headers = [("Content-Type", f"multipart/form-data; boundary={boundary}")]
        return Request("POST", "/bucket", "", headers, body.encode())

    v4 = form({"key": "k", "x-amz-credential": "AKID/20260101/us-east-1/s3/aws4_request", "x-amz-signature": "f" * 64})
    assert classify(v4) == Call("s3", "PostObject", True)
    v2 = form({"key": "k", "AWSAccessKeyId": "AKID", "signature": "c2ln"})
    assert classify(v2) == Call("s3", "PostObject", True)


def test_overrides() -> None:
    custom = DefaultClassifier(extra_reads={"SendMessage"}, extra_mutations={"ReceiveMessage", "GET /things"})
    assert not custom(json_call("AmazonSQS.SendMessage", "sqs")).mutating
    assert custom(json_call("AmazonSQS.ReceiveMessage", "sqs")).mutating
    assert custom(Request("GET", "/things", "", [], b"")).mutating


def test_a_receive_is_recorded_only_when_it_returned_messages() -> None:
    call = classify(json_call("AmazonSQS.ReceiveMessage", "sqs"))
    assert classify.recordable(call, 200, b'{"Messages": [{"MessageId": "m", "ReceiptHandle": "h"}]}')
    assert not classify.recordable(call, 200, b"{}")
    assert classify.recordable(
        call, 200, b"<ReceiveMessageResult><Message><Body>x</Body></Message></ReceiveMessageResult>"
    )
    assert not classify.recordable(call, 200, b"<ReceiveMessageResult/>")
    assert classify.recordable(classify(json_call("AmazonSQS.SendMessage", "sqs")), 200, b"{}")
