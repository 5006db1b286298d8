"""Scenarios that must restore exactly, compared by a state fingerprint: everything a client can read back.

One server records every scenario; each service's fingerprint is read; the server is stopped (SIGTERM, or
kill -9) and a new one serves the same data dir on another port; the fingerprints must be equal, service by
service.  What reading itself changes is left out and said so: SQS receive counts (a receive is what
changes them) and Secrets Manager's LastAccessedDate (reads are not recorded); so is what moto makes up at
read time (the CreatedDate of ListSecretVersionIds).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import requests

if TYPE_CHECKING:
    from conftest import AwsClients, ReplayServer, Servers

pytestmark = pytest.mark.e2e

ACCOUNT = "123456789012"
Scenario = Callable[["AwsClients", "ReplayServer"], None]


def canon(value: Any) -> Any:
    """JSON-comparable: datetimes as ISO strings, bytes as digests, ResponseMetadata dropped."""
    if isinstance(value, dict):
        return {k: canon(v) for k, v in value.items() if k not in ("ResponseMetadata", "LastAccessedDate")}
    if isinstance(value, list):
        return [canon(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return hashlib.sha256(value).hexdigest()
    return value


# scenarios


def sqs_scenario(aws: AwsClients, server: ReplayServer) -> None:
    sqs = aws("sqs", server)
    plain = sqs.create_queue(QueueName="fp-plain", Attributes={"VisibilityTimeout": "45"}, tags={"team": "fp"})[
        "QueueUrl"
    ]
    for body in ("a", "b", "c"):
        sqs.send_message(
            QueueUrl=plain, MessageBody=body, MessageAttributes={"k": {"DataType": "String", "StringValue": body}}
        )
    received = sqs.receive_message(QueueUrl=plain, MaxNumberOfMessages=10, VisibilityTimeout=0)["Messages"]
    for message in received:
        if message["Body"] == "b":
            sqs.delete_message(QueueUrl=plain, ReceiptHandle=message["ReceiptHandle"])
    sqs.set_queue_attributes(QueueUrl=plain, Attributes={"DelaySeconds": "0", "MaximumMessageSize": "2048"})

    fifo = sqs.create_queue(
        QueueName="fp-order.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"}
    )["QueueUrl"]
    for body in ["first", "second", "third", "second"]:  # the last one is a duplicate
        sqs.send_message(QueueUrl=fifo, MessageBody=body, MessageGroupId="g", MessageDeduplicationId=f"d-{body}")
    [head] = sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=1)["Messages"]
    assert head["Body"] == "first"
    sqs.delete_message(QueueUrl=fifo, ReceiptHandle=head["ReceiptHandle"])


def sqs_fingerprint(aws: AwsClients, server: ReplayServer) -> Any:
    sqs = aws("sqs", server)
    queues = {}
    for url in sorted(sqs.list_queues(QueueNamePrefix="fp-").get("QueueUrls", [])):
        name = url.rsplit("/", 1)[1]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        queues[name] = {"attributes": attributes, "tags": sqs.list_queue_tags(QueueUrl=url).get("Tags", {})}
    return queues


def s3_scenario(aws: AwsClients, server: ReplayServer) -> None:
    import requests

    s3 = aws("s3", server)
    s3.create_bucket(Bucket="fp-versions")
    s3.put_bucket_versioning(Bucket="fp-versions", VersioningConfiguration={"Status": "Enabled"})
    for body in (b"one", b"two", b"three"):
        s3.put_object(Bucket="fp-versions", Key="doc ü+.txt", Body=body)
    s3.put_object(Bucket="fp-versions", Key="gone", Body=b"x")
    s3.delete_object(Bucket="fp-versions", Key="gone")  # a delete marker
    s3.put_bucket_tagging(Bucket="fp-versions", Tagging={"TagSet": [{"Key": "team", "Value": "fp"}]})

    s3.create_bucket(Bucket="fp-plain")
    upload = s3.create_multipart_upload(Bucket="fp-plain", Key="big/multi.bin", Metadata={"m": "1"})["UploadId"]
    parts = []
    for number, chunk in enumerate((bytes(range(256)) * 20_480, b"tail"), 1):  # 5 MiB, then the last part
        etag = s3.upload_part(Bucket="fp-plain", Key="big/multi.bin", UploadId=upload, PartNumber=number, Body=chunk)
        parts.append({"PartNumber": number, "ETag": etag["ETag"]})
    s3.complete_multipart_upload(
        Bucket="fp-plain", Key="big/multi.bin", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    s3.copy_object(Bucket="fp-plain", Key="copy.bin", CopySource={"Bucket": "fp-plain", "Key": "big/multi.bin"})
    s3.put_object(Bucket="fp-plain", Key="to-delete", Body=b"x")
    s3.delete_objects(Bucket="fp-plain", Delete={"Objects": [{"Key": "to-delete"}]})
    url = s3.generate_presigned_url("put_object", Params={"Bucket": "fp-plain", "Key": "presigned €.bin"})
    assert requests.put(url, data=bytes(range(255, -1, -1)), timeout=10).ok


def s3_fingerprint(aws: AwsClients, server: ReplayServer) -> Any:
    s3 = aws("s3", server)
    state: dict[str, Any] = {}
    for bucket in s3.list_buckets()["Buckets"]:
        name = bucket["Name"]
        if not name.startswith("fp-"):
            continue
        versions = s3.list_object_versions(Bucket=name)
        contents = {}
        for version in versions.get("Versions", []):
            got = s3.get_object(Bucket=name, Key=version["Key"], VersionId=version["VersionId"])
            contents[f"{version['Key']}@{version['VersionId']}"] = (got["Body"].read(), got.get("Metadata"))
        state[name] = {
            "bucket": bucket,
            "versioning": s3.get_bucket_versioning(Bucket=name),
            "versions": versions.get("Versions", []),
            "delete_markers": versions.get("DeleteMarkers", []),
            "contents": contents,
            "uploads": s3.list_multipart_uploads(Bucket=name).get("Uploads", []),
        }
    return state


def dynamodb_scenario(aws: AwsClients, server: ReplayServer) -> None:
    ddb = aws("dynamodb", server)
    ddb.create_table(
        TableName="fp-orders",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
            {"AttributeName": "status", "AttributeType": "S"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "by-status",
                "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    ddb.batch_write_item(
        RequestItems={
            "fp-orders": [
                {"PutRequest": {"Item": {"pk": {"S": "u1"}, "sk": {"N": str(n)}, "status": {"S": "new"}}}}
                for n in range(5)
            ]
        }
    )
    ddb.update_item(
        TableName="fp-orders",
        Key={"pk": {"S": "u1"}, "sk": {"N": "1"}},
        UpdateExpression="SET #s = :s, amount = :a",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "paid"}, ":a": {"N": "12.5"}},
    )
    ddb.put_item(
        TableName="fp-orders",
        Item={"pk": {"S": "u1"}, "sk": {"N": "2"}, "status": {"S": "shipped"}},
        ConditionExpression="attribute_exists(pk)",
    )
    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):  # a failed condition changes nothing
        ddb.put_item(
            TableName="fp-orders",
            Item={"pk": {"S": "u1"}, "sk": {"N": "3"}},
            ConditionExpression="attribute_not_exists(pk)",
        )
    ddb.delete_item(TableName="fp-orders", Key={"pk": {"S": "u1"}, "sk": {"N": "4"}})


def dynamodb_fingerprint(aws: AwsClients, server: ReplayServer) -> Any:
    ddb = aws("dynamodb", server)
    table = ddb.describe_table(TableName="fp-orders")["Table"]
    items = ddb.scan(TableName="fp-orders")["Items"]
    paid = ddb.query(
        TableName="fp-orders",
        IndexName="by-status",
        KeyConditionExpression="#s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "paid"}},
    )["Items"]
    return {"tables": ddb.list_tables()["TableNames"], "table": table, "items": items, "paid": paid}


def sns_scenario(aws: AwsClients, server: ReplayServer) -> None:
    sns, sqs = aws("sns", server), aws("sqs", server)
    sqs.create_queue(QueueName="fp-inbox")
    topic = sns.create_topic(Name="fp-events", Attributes={"DisplayName": "Events"}, Tags=[{"Key": "t", "Value": "1"}])[
        "TopicArn"
    ]
    kept = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=f"arn:aws:sqs:us-east-1:{ACCOUNT}:fp-inbox")
    sns.set_subscription_attributes(
        SubscriptionArn=kept["SubscriptionArn"], AttributeName="RawMessageDelivery", AttributeValue="true"
    )
    gone = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=f"arn:aws:sqs:us-east-1:{ACCOUNT}:fp-elsewhere")
    sns.unsubscribe(SubscriptionArn=gone["SubscriptionArn"])


def sns_fingerprint(aws: AwsClients, server: ReplayServer) -> Any:
    sns = aws("sns", server)
    topics = [t["TopicArn"] for t in sns.list_topics()["Topics"] if ":fp-" in t["TopicArn"]]
    return {
        topic: {
            "attributes": sns.get_topic_attributes(TopicArn=topic)["Attributes"],
            "tags": sns.list_tags_for_resource(ResourceArn=topic)["Tags"],
            "subscriptions": [
                {**s, "attributes": sns.get_subscription_attributes(SubscriptionArn=s["SubscriptionArn"])["Attributes"]}
                for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
            ],
        }
        for topic in topics
    }


def ec2_scenario(aws: AwsClients, server: ReplayServer) -> None:
    ec2 = aws("ec2", server)
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.7.1.0/24")["Subnet"]["SubnetId"]
    web = ec2.create_security_group(GroupName="fp-web", Description="web", VpcId=vpc)["GroupId"]
    db = ec2.create_security_group(GroupName="fp-db", Description="db", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=db,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": web}]}],
    )
    [instance] = ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet, SecurityGroupIds=[web]
    )["Instances"]
    ec2.create_tags(Resources=[vpc, subnet, instance["InstanceId"]], Tags=[{"Key": "fp", "Value": "yes"}])
    ec2.stop_instances(InstanceIds=[instance["InstanceId"]])


def ec2_fingerprint(aws: AwsClients, server: ReplayServer) -> Any:
    ec2 = aws("ec2", server)
    tagged = [{"Name": "tag:fp", "Values": ["yes"]}]
    [vpc] = ec2.describe_vpcs(Filters=tagged)["Vpcs"]
    in_vpc = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
    return {
        "vpc": vpc,
        "default_vpcs": ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"],
        "subnets": ec2.describe_subnets(Filters=in_vpc)["Subnets"],
        "groups": sorted(ec2.describe_security_groups(Filters=in_vpc)["SecurityGroups"], key=lambda g: g["GroupName"]),
        "instances": ec2.describe_instances(Filters=tagged)["Reservations"],
    }


def iam_scenario(aws: AwsClients, server: ReplayServer) -> None:
    iam = aws("iam", server)
    iam.create_user(UserName="fp-user", Tags=[{"Key": "team", "Value": "fp"}])
    iam.create_access_key(UserName="fp-user")
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    iam.create_role(RoleName="fp-role", AssumeRolePolicyDocument=json.dumps(trust))
    document = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
    policy = iam.create_policy(PolicyName="fp-read", PolicyDocument=json.dumps(document))["Policy"]["Arn"]
    iam.create_policy_version(PolicyArn=policy, PolicyDocument=json.dumps(document), SetAsDefault=True)
    iam.attach_role_policy(RoleName="fp-role", PolicyArn=policy)
    iam.attach_user_policy(UserName="fp-user", PolicyArn=policy)


def iam_fingerprint(aws: AwsClients, server: ReplayServer) -> Any:
    iam = aws("iam", server)
    policy = f"arn:aws:iam::{ACCOUNT}:policy/fp-read"
    return {
        "user": iam.get_user(UserName="fp-user")["User"],
        "keys": iam.list_access_keys(UserName="fp-user")["AccessKeyMetadata"],
        "role": iam.get_role(RoleName="fp-role")["Role"],
        "role_policies": iam.list_attached_role_policies(RoleName="fp-role")["AttachedPolicies"],
        "user_policies": iam.list_attached_user_policies(UserName="fp-user")["AttachedPolicies"],
        "policy": iam.get_policy(PolicyArn=policy)["Policy"],
        "versions": iam.list_policy_versions(PolicyArn=policy)["Versions"],
    }


def secrets_scenario(aws: AwsClients, server: ReplayServer) -> None:
    secrets = aws("secretsmanager", server)
    secrets.create_secret(Name="fp-secret", SecretString="v1", Tags=[{"Key": "t", "Value": "1"}])
    secrets.put_secret_value(SecretId="fp-secret", SecretString="v2")
    secrets.put_secret_value(SecretId="fp-secret", SecretBinary=b"\x00v3", VersionStages=["AWSCURRENT"])


def secrets_fingerprint(aws: AwsClients, server: ReplayServer) -> Any:
    secrets = aws("secretsmanager", server)
    versions = secrets.list_secret_version_ids(SecretId="fp-secret")["Versions"]
    return {
        "secret": secrets.describe_secret(SecretId="fp-secret"),
        # moto answers ListSecretVersionIds with CreatedDate = the time of the listing: not state
        "versions": [{k: v for k, v in version.items() if k != "CreatedDate"} for version in versions],
        "values": [secrets.get_secret_value(SecretId="fp-secret", VersionId=v["VersionId"]) for v in versions],
    }


def ssm_scenario(aws: AwsClients, server: ReplayServer) -> None:
    ssm = aws("ssm", server)
    ssm.put_parameter(Name="/fp/param", Value="a", Type="String")
    ssm.put_parameter(Name="/fp/param", Value="b", Type="String", Overwrite=True)
    ssm.put_parameter(Name="/fp/secure", Value="s", Type="SecureString")
    ssm.label_parameter_version(Name="/fp/param", ParameterVersion=1, Labels=["first"])


def ssm_fingerprint(aws: AwsClients, server: ReplayServer) -> Any:
    ssm = aws("ssm", server)
    return {
        "history": ssm.get_parameter_history(Name="/fp/param", WithDecryption=True)["Parameters"],
        "secure": ssm.get_parameter(Name="/fp/secure", WithDecryption=True)["Parameter"],
        "described": ssm.describe_parameters()["Parameters"],
    }


def kms_scenario(aws: AwsClients, server: ReplayServer) -> None:
    kms = aws("kms", server)
    key = kms.create_key(Description="fp", Tags=[{"TagKey": "t", "TagValue": "1"}])["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/fp", TargetKeyId=key)
    other = kms.create_key(Description="fp-disabled")["KeyMetadata"]["KeyId"]
    kms.disable_key(KeyId=other)


def kms_fingerprint(aws: AwsClients, server: ReplayServer) -> Any:
    kms = aws("kms", server)
    keys = [k["KeyId"] for k in kms.list_keys()["Keys"]]
    return {
        "keys": [kms.describe_key(KeyId=key)["KeyMetadata"] for key in keys],
        "aliases": kms.list_aliases()["Aliases"],
    }


SCENARIOS: dict[str, tuple[Scenario, Callable[[AwsClients, ReplayServer], Any]]] = {
    "sqs": (sqs_scenario, sqs_fingerprint),
    "s3": (s3_scenario, s3_fingerprint),
    "dynamodb": (dynamodb_scenario, dynamodb_fingerprint),
    "sns": (sns_scenario, sns_fingerprint),
    "ec2": (ec2_scenario, ec2_fingerprint),
    "iam": (iam_scenario, iam_fingerprint),
    "secretsmanager": (secrets_scenario, secrets_fingerprint),
    "ssm": (ssm_scenario, ssm_fingerprint),
    "kms": (kms_scenario, kms_fingerprint),
}


def fingerprints(aws: AwsClients, server: ReplayServer) -> dict[str, Any]:
    return {name: canon(fingerprint(aws, server)) for name, (_, fingerprint) in SCENARIOS.items()}


@dataclasses.dataclass
class Restart:
    before: dict[str, Any]
    after: dict[str, Any]
    server: ReplayServer


# checkpoints as often as the server can take them: every second while calls come in, plus one asked for
CHECKPOINTING = ("--checkpoint-percentage", "100", "--checkpoint-min-size", "2kb")
# the defaults of `replay serve`: a checkpoint when the log has grown enough, and one when the server stops
DEFAULTS = ("--checkpoint-percentage", "100", "--checkpoint-min-size", "1mb")
ALL_MODES = {
    "sigterm": (),
    "kill -9": (),
    "checkpoints, kill -9": CHECKPOINTING,
    "defaults, sigterm": DEFAULTS,
}
# the default run (CI) takes the two that cover the most: checkpoints under a kill, and the last one at a stop;
# REPLAY_FINGERPRINTS=all runs every mode (whole-log replays are also covered by test_restart and test_ids)
MODES = (
    ALL_MODES
    if os.environ.get("REPLAY_FINGERPRINTS", "").strip().lower() == "all"
    else {name: ALL_MODES[name] for name in ("checkpoints, kill -9", "defaults, sigterm")}
)


@pytest.fixture(scope="module", params=list(MODES))
def restart(
    request: pytest.FixtureRequest,
    module_servers: Servers,
    module_aws: AwsClients,
    tmp_path_factory: pytest.TempPathFactory,
) -> Restart:
    """Every scenario recorded by one server, stopped as the param says, served again on another port.

    Without checkpoints the restart replays the whole log.  With frequent checkpoints the log is folded
    while the scenarios run (automatically, and once on request half-way), so the restart after a kill
    loads a checkpoint and replays the calls since.  With the defaults, stopping takes a last checkpoint,
    so the restart replays nothing at all.
    """
    data = tmp_path_factory.mktemp("fingerprints") / "data"
    args = MODES[request.param]
    first = module_servers.start(data, *args)
    for number, (scenario, _) in enumerate(SCENARIOS.values()):
        scenario(module_aws, first)
        if args == CHECKPOINTING and number == len(SCENARIOS) // 2:
            answer = requests.post(f"{first.endpoint}/_replay/compact", timeout=60)
            assert answer.status_code == 200 and answer.json()["kind"] == "checkpoint", answer.text
    before = fingerprints(module_aws, first)
    if request.param.endswith("sigterm"):
        first.stop()
    else:
        first.kill()
    second = module_servers.start(data, *args, avoid_ports=[first.port])
    if args:
        assert "Loaded checkpoint" in second.stderr()
    if args == DEFAULTS:  # everything came from the checkpoint taken at shutdown, and is counted
        restored = re.search(r"Restored (\d+) API calls from persistent file", second.stderr())
        assert restored is not None and int(restored.group(1)) > 0, second.stderr()
        assert "replayed from the log since it" in second.stderr()
    return Restart(before, fingerprints(module_aws, second), second)


@pytest.mark.parametrize("service", list(SCENARIOS))
def test_restores_exactly(restart: Restart, service: str) -> None:
    assert restart.after[service] == restart.before[service]


def test_the_restart_replayed_cleanly(restart: Restart) -> None:
    stderr = restart.server.stderr()
    assert "0 recorded API calls failed on replay" in stderr, stderr
    assert "0 replayed API calls diverged from their recording" in stderr, stderr


def test_fifo_order_and_deduplication_hold_after_the_restart(restart: Restart, module_aws: AwsClients) -> None:
    sqs = module_aws("sqs", restart.server)
    fifo = sqs.get_queue_url(QueueName="fp-order.fifo")["QueueUrl"]
    sqs.send_message(QueueUrl=fifo, MessageBody="second", MessageGroupId="g", MessageDeduplicationId="d-second")
    bodies = []
    for _ in range(4):
        batch = sqs.receive_message(QueueUrl=fifo, MaxNumberOfMessages=1).get("Messages", [])
        if not batch:
            break
        bodies.append(batch[0]["Body"])
        sqs.delete_message(QueueUrl=fifo, ReceiptHandle=batch[0]["ReceiptHandle"])
    assert bodies == ["second", "third"]  # order kept, the deleted head stays deleted, duplicates dropped


def test_sns_still_delivers_to_sqs_after_the_restart(restart: Restart, module_aws: AwsClients) -> None:
    module_aws("sns", restart.server).publish(TopicArn=f"arn:aws:sns:us-east-1:{ACCOUNT}:fp-events", Message="after")
    sqs = module_aws("sqs", restart.server)
    inbox = sqs.get_queue_url(QueueName="fp-inbox")["QueueUrl"]
    messages = sqs.receive_message(QueueUrl=inbox, WaitTimeSeconds=0).get("Messages", [])
    assert [m["Body"] for m in messages] == ["after"]  # raw delivery, as the restored subscription says
