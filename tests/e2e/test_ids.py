"""Ids generated before a restart are the same after it (moto, seeded per call), over real HTTP.

Each scenario is stopped once with SIGTERM and once with kill -9, then served
again from the same data dir on another port.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import AwsClients, ReplayServer, Servers

pytestmark = pytest.mark.e2e

ACCOUNT = "123456789012"


def make_ids(aws: AwsClients, server: ReplayServer) -> tuple[dict[str, Any], bytes]:
    """Create resources whose ids moto makes up; return the ids and a KMS ciphertext."""
    sqs, sns, ec2, kms, s3, iam, secrets, ssm = (
        aws(name, server) for name in ("sqs", "sns", "ec2", "kms", "s3", "iam", "secretsmanager", "ssm")
    )
    ids: dict[str, Any] = {}
    queue = sqs.create_queue(QueueName="ids")["QueueUrl"]
    ids["message"] = sqs.send_message(QueueUrl=queue, MessageBody="first")["MessageId"]
    topic = sns.create_topic(Name="ids")["TopicArn"]
    ids["subscription"] = sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=f"arn:aws:sqs:us-east-1:{ACCOUNT}:ids"
    )["SubscriptionArn"]

    ec2.describe_vpcs()  # an unseeded read first: must not change what the seeded calls generate
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    web = ec2.create_security_group(GroupName="web", Description="web", VpcId=vpc)["GroupId"]
    db = ec2.create_security_group(GroupName="db", Description="db", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=db,
        IpPermissions=[{"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": web}]}],
    )
    instance = ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]
    ec2.create_tags(Resources=[instance["InstanceId"], vpc], Tags=[{"Key": "team", "Value": "ids"}])
    ids["ec2"] = {"vpc": vpc, "subnet": subnet, "web": web, "db": db, "instance": instance["InstanceId"]}
    ids["default_vpcs"] = sorted(
        v["VpcId"] for v in ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    )

    key = kms.create_key(Description="ids")["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName="alias/ids", TargetKeyId=key)
    ids["key"] = key
    ciphertext = kms.encrypt(KeyId="alias/ids", Plaintext=b"secret before restart")["CiphertextBlob"]

    s3.create_bucket(Bucket="ids-versions")
    s3.put_bucket_versioning(Bucket="ids-versions", VersioningConfiguration={"Status": "Enabled"})
    ids["versions"] = [s3.put_object(Bucket="ids-versions", Key="k", Body=body)["VersionId"] for body in (b"1", b"2")]
    ids["upload"] = s3.create_multipart_upload(Bucket="ids-versions", Key="in-progress")["UploadId"]

    iam.create_user(UserName="ids")
    ids["access_key"] = iam.create_access_key(UserName="ids")["AccessKey"]["AccessKeyId"]
    ids["secret_versions"] = [
        secrets.create_secret(Name="ids", SecretString="v1")["VersionId"],
        secrets.put_secret_value(SecretId="ids", SecretString="v2")["VersionId"],
    ]
    ssm.put_parameter(Name="/ids", Value="a", Type="String")
    ssm.put_parameter(Name="/ids", Value="b", Type="String", Overwrite=True)
    return ids, ciphertext


def read_ids(aws: AwsClients, server: ReplayServer) -> dict[str, Any]:
    sqs, sns, ec2, kms, s3, iam, secrets = (
        aws(name, server) for name in ("sqs", "sns", "ec2", "kms", "s3", "iam", "secretsmanager")
    )
    ids: dict[str, Any] = {}
    queue = sqs.get_queue_url(QueueName="ids")["QueueUrl"]
    ids["message"] = sqs.receive_message(QueueUrl=queue)["Messages"][0]["MessageId"]
    topic = f"arn:aws:sns:us-east-1:{ACCOUNT}:ids"
    ids["subscription"] = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"][0]["SubscriptionArn"]
    [vpc] = [v["VpcId"] for v in ec2.describe_vpcs(Filters=[{"Name": "tag:team", "Values": ["ids"]}])["Vpcs"]]
    [subnet] = [s["SubnetId"] for s in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]]
    groups = {
        g["GroupName"]: g
        for g in ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
    }
    [pair] = groups["db"]["IpPermissions"][0]["UserIdGroupPairs"]
    assert pair["GroupId"] == groups["web"]["GroupId"]  # the rule still references the other group
    [reservation] = ec2.describe_instances(Filters=[{"Name": "tag:team", "Values": ["ids"]}])["Reservations"]
    ids["ec2"] = {
        "vpc": vpc,
        "subnet": subnet,
        "web": groups["web"]["GroupId"],
        "db": groups["db"]["GroupId"],
        "instance": reservation["Instances"][0]["InstanceId"],
    }
    ids["default_vpcs"] = sorted(
        v["VpcId"] for v in ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    )
    ids["key"] = kms.describe_key(KeyId="alias/ids")["KeyMetadata"]["KeyId"]
    versions = s3.list_object_versions(Bucket="ids-versions", Prefix="k")["Versions"]
    ids["versions"] = [v["VersionId"] for v in reversed(versions)]  # listed newest first
    ids["upload"] = s3.list_multipart_uploads(Bucket="ids-versions")["Uploads"][0]["UploadId"]
    ids["access_key"] = iam.list_access_keys(UserName="ids")["AccessKeyMetadata"][0]["AccessKeyId"]
    listed = secrets.list_secret_version_ids(SecretId="ids")["Versions"]
    ids["secret_versions"] = [v["VersionId"] for v in sorted(listed, key=lambda v: "AWSCURRENT" in v["VersionStages"])]
    return ids


@pytest.mark.parametrize("stop", ["sigterm", "kill -9"])
def test_generated_ids_survive_a_restart(servers: Servers, aws: AwsClients, tmp_path: Path, stop: str) -> None:
    data = tmp_path / "data"
    first = servers.start(data)
    before, ciphertext = make_ids(aws, first)
    if stop == "sigterm":
        first.stop()
    else:
        first.kill()
    second = servers.start(data, avoid_ports=[first.port])
    after = read_ids(aws, second)
    assert after == before

    # what a client kept from before the restart still works after it
    kms = aws("kms", second)
    assert kms.decrypt(CiphertextBlob=ciphertext)["Plaintext"] == b"secret before restart"
    s3 = aws("s3", second)
    part = s3.upload_part(Bucket="ids-versions", Key="in-progress", UploadId=before["upload"], PartNumber=1, Body=b"x")
    s3.complete_multipart_upload(
        Bucket="ids-versions",
        Key="in-progress",
        UploadId=before["upload"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert s3.get_object(Bucket="ids-versions", Key="in-progress")["Body"].read() == b"x"
    ec2 = aws("ec2", second)
    assert ec2.describe_instances(InstanceIds=[before["ec2"]["instance"]])["Reservations"]
    assert "0 recorded API calls failed on replay" in second.stderr()
    assert "0 replayed API calls diverged from their recording" in second.stderr(), second.stderr()
