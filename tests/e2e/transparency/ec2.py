"""EC2 scenarios: networks, security groups, instances, volumes and snapshots, key pairs and addresses,
launch templates and images."""

from __future__ import annotations

import base64
from typing import Any

from transparency.core import Context, Observations, Scenario, error_of

AMI = "ami-12c6146b"  # one of the images moto ships
# a public key made once for these tests: imported key pairs have a fingerprint derived from it alone
PUBLIC_KEY = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCvCrir+ymhkcThccCMuWC1r0I/8Y9qhhusPqwk3td6El72KcAWDGoGKXHKSmuYKxGqIpf"
    "Bx9tITIwMZUpuMiV4amtNb+il1aSkgq9mkgBxtfasrSsaqZjpVauf5hJ4EQBskoyAta8tODZDfP5EWPndVzYzmFHc2f6Rq/P2Tgv+zcRleQ2"
    "u6MZSD7XpNKEdlR5I3g/CDE4PdbPyTkaV3sLuHeP5Y3PxztaBb9v0yiR6Ioe7alb++K2jQkJhYswRfTwOOrIl6siCo81DhAfXaexYEnPyDxM"
    "vtGSunI6a+jWonbBvWCt5Vc3crYJCHp3cAgXoqn6NQvGNBhYrU2mMgm0L tp@example"
)


def tagged(key: str, value: str) -> list[dict[str, Any]]:
    return [{"Name": f"tag:{key}", "Values": [value]}]


def named(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Resources sorted by their Name tag (moto lists some by their random id)."""

    def name(item: dict[str, Any]) -> str:
        return next((t["Value"] for t in item.get("Tags", []) if t["Key"] == "Name"), "")

    return sorted(items, key=name)


def tag_spec(kind: str, name: str, **extra: str) -> list[dict[str, Any]]:
    tags = [{"Key": "Name", "Value": name}, *({"Key": k, "Value": v} for k, v in extra.items())]
    return [{"ResourceType": kind, "Tags": tags}]


def instances(ec2: Any, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The instances matching ``filters``, sorted by Name tag, reservations flattened."""
    found = [i for r in ec2.describe_instances(Filters=filters)["Reservations"] for i in r["Instances"]]
    return named(found)


class VpcNetwork(Scenario):
    """A two-tier VPC: DNS attributes, a public and a private subnet, an internet gateway attached, a route
    table with a default route associated to the public subnet, public IPs on launch, and a duplicate CIDR
    subnet refused."""

    name = "ec2-vpc-network"
    service = "ec2"

    def run(self, ctx: Context) -> Observations:
        ec2 = ctx.client("ec2")
        obs: Observations = {}
        obs["vpc"] = ec2.create_vpc(CidrBlock="10.20.0.0/16", TagSpecifications=tag_spec("vpc", "tp-ec2-net", tp="net"))
        vpc = obs["vpc"]["Vpc"]["VpcId"]
        obs["dns"] = ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        public = ec2.create_subnet(
            VpcId=vpc,
            CidrBlock="10.20.1.0/24",
            AvailabilityZone="us-east-1a",
            TagSpecifications=tag_spec("subnet", "tp-ec2-net-public", tp="net"),
        )
        private = ec2.create_subnet(
            VpcId=vpc,
            CidrBlock="10.20.2.0/24",
            AvailabilityZone="us-east-1b",
            TagSpecifications=tag_spec("subnet", "tp-ec2-net-private", tp="net"),
        )
        obs["subnets"] = [public, private]
        public_id = public["Subnet"]["SubnetId"]
        obs["map public ip"] = ec2.modify_subnet_attribute(SubnetId=public_id, MapPublicIpOnLaunch={"Value": True})
        gateway = ec2.create_internet_gateway(
            TagSpecifications=tag_spec("internet-gateway", "tp-ec2-net-igw", tp="net")
        )
        obs["igw"] = gateway
        gateway_id = gateway["InternetGateway"]["InternetGatewayId"]
        obs["attach"] = ec2.attach_internet_gateway(InternetGatewayId=gateway_id, VpcId=vpc)
        table = ec2.create_route_table(VpcId=vpc, TagSpecifications=tag_spec("route-table", "tp-ec2-net-rt", tp="net"))
        obs["route table"] = table
        table_id = table["RouteTable"]["RouteTableId"]
        obs["route"] = ec2.create_route(RouteTableId=table_id, DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway_id)
        obs["associate"] = ec2.associate_route_table(RouteTableId=table_id, SubnetId=public_id)
        obs["overlap"] = error_of(ec2.create_subnet, VpcId=vpc, CidrBlock="10.20.1.0/24")
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        ec2 = ctx.client("ec2")
        [vpc] = ec2.describe_vpcs(Filters=tagged("tp", "net"))["Vpcs"]
        in_vpc = [{"Name": "vpc-id", "Values": [vpc["VpcId"]]}]
        return {
            "vpc": vpc,
            "dns hostnames": ec2.describe_vpc_attribute(VpcId=vpc["VpcId"], Attribute="enableDnsHostnames"),
            "subnets": named(ec2.describe_subnets(Filters=in_vpc)["Subnets"]),
            "gateways": ec2.describe_internet_gateways(Filters=tagged("tp", "net"))["InternetGateways"],
            "route tables": named(ec2.describe_route_tables(Filters=in_vpc)["RouteTables"]),
        }


class SecurityGroups(Scenario):
    """Security groups of a web tier: ingress from anywhere on 443, from the web group to the database group
    on 5432, an egress rule replaced, a rule revoked, a duplicate rule refused, tags on the groups."""

    name = "ec2-security-groups"
    service = "ec2"

    def run(self, ctx: Context) -> Observations:
        ec2 = ctx.client("ec2")
        obs: Observations = {}
        vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16", TagSpecifications=tag_spec("vpc", "tp-ec2-sg-vpc"))["Vpc"][
            "VpcId"
        ]
        web = ec2.create_security_group(
            GroupName="tp-ec2-web",
            Description="web tier",
            VpcId=vpc,
            TagSpecifications=tag_spec("security-group", "tp-ec2-web", tp="sg"),
        )
        db = ec2.create_security_group(
            GroupName="tp-ec2-db",
            Description="database tier",
            VpcId=vpc,
            TagSpecifications=tag_spec("security-group", "tp-ec2-db", tp="sg"),
        )
        obs["groups"] = [web, db]
        https = {
            "IpProtocol": "tcp",
            "FromPort": 443,
            "ToPort": 443,
            "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "https"}],
        }
        obs["https"] = ec2.authorize_security_group_ingress(GroupId=web["GroupId"], IpPermissions=[https])
        obs["ssh"] = ec2.authorize_security_group_ingress(
            GroupId=web["GroupId"],
            IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "192.0.2.0/24"}]}
            ],
        )
        obs["postgres"] = ec2.authorize_security_group_ingress(
            GroupId=db["GroupId"],
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": 5432,
                    "ToPort": 5432,
                    "UserIdGroupPairs": [{"GroupId": web["GroupId"]}],
                }
            ],
        )
        obs["revoke ssh"] = ec2.revoke_security_group_ingress(
            GroupId=web["GroupId"],
            IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "192.0.2.0/24"}]}
            ],
        )
        obs["revoke egress"] = ec2.revoke_security_group_egress(
            GroupId=db["GroupId"], IpPermissions=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
        )
        obs["egress"] = ec2.authorize_security_group_egress(
            GroupId=db["GroupId"],
            IpPermissions=[
                {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "10.30.0.0/16"}]}
            ],
        )
        obs["duplicate"] = error_of(ec2.authorize_security_group_ingress, GroupId=web["GroupId"], IpPermissions=[https])
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        ec2 = ctx.client("ec2")
        groups = sorted(
            ec2.describe_security_groups(Filters=tagged("tp", "sg"))["SecurityGroups"], key=lambda g: g["GroupName"]
        )
        names = {g["GroupId"]: g["GroupName"] for g in groups}
        rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": list(names)}])
        return {
            "groups": groups,
            "rules": sorted(
                rules["SecurityGroupRules"],
                key=lambda r: (names[r["GroupId"]], r["IsEgress"], r.get("FromPort", -1), r.get("CidrIpv4", "")),
            ),
        }


class InstancesLifecycle(Scenario):
    """Instances through their life: two launched with tags and user data into a subnet, one stopped, its type
    changed while stopped and started again, the other terminated; states and attributes read back."""

    name = "ec2-instances-lifecycle"
    service = "ec2"

    def run(self, ctx: Context) -> Observations:
        ec2 = ctx.client("ec2")
        obs: Observations = {}
        vpc = ec2.create_vpc(CidrBlock="10.40.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.40.1.0/24", AvailabilityZone="us-east-1c")["Subnet"][
            "SubnetId"
        ]
        launched = []
        for role in ("api", "worker"):
            launched.append(
                ec2.run_instances(
                    ImageId=AMI,
                    MinCount=1,
                    MaxCount=1,
                    InstanceType="t3.micro",
                    SubnetId=subnet,
                    UserData=base64.b64encode(f"#!/bin/sh\necho {role}\n".encode()).decode(),
                    TagSpecifications=tag_spec("instance", f"tp-ec2-{role}", tp="lifecycle", role=role),
                )
            )
        obs["launched"] = launched
        api, worker = (r["Instances"][0]["InstanceId"] for r in launched)
        obs["stop"] = ec2.stop_instances(InstanceIds=[api])
        obs["resize"] = ec2.modify_instance_attribute(InstanceId=api, InstanceType={"Value": "t3.large"})
        obs["start"] = ec2.start_instances(InstanceIds=[api])
        obs["terminate"] = ec2.terminate_instances(InstanceIds=[worker])
        obs["type"] = ec2.describe_instance_attribute(InstanceId=api, Attribute="instanceType")
        obs["user data"] = ec2.describe_instance_attribute(InstanceId=api, Attribute="userData")
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        ec2 = ctx.client("ec2")
        found = instances(ec2, tagged("tp", "lifecycle"))
        return {
            "instances": found,
            "status": sorted(
                ec2.describe_instance_status(InstanceIds=[i["InstanceId"] for i in found], IncludeAllInstances=True)[
                    "InstanceStatuses"
                ],
                key=lambda s: s["InstanceState"]["Name"],
            ),
        }


class VolumesAndSnapshots(Scenario):
    """Block storage: an encrypted gp3 volume created, attached to an instance, snapshotted with a description
    and tags, the snapshot copied, a second volume restored from the snapshot, and a detach."""

    name = "ec2-volumes-snapshots"
    service = "ec2"

    def run(self, ctx: Context) -> Observations:
        ec2 = ctx.client("ec2")
        obs: Observations = {}
        instance = ec2.run_instances(
            ImageId=AMI,
            MinCount=1,
            MaxCount=1,
            Placement={"AvailabilityZone": "us-east-1a"},
            TagSpecifications=tag_spec("instance", "tp-ec2-db-host", tp="storage"),
        )["Instances"][0]["InstanceId"]
        obs["volume"] = ec2.create_volume(
            AvailabilityZone="us-east-1a",
            Size=20,
            VolumeType="gp3",
            Encrypted=True,
            TagSpecifications=tag_spec("volume", "tp-ec2-data", tp="storage"),
        )
        volume = obs["volume"]["VolumeId"]
        obs["attach"] = ec2.attach_volume(VolumeId=volume, InstanceId=instance, Device="/dev/sdf")
        obs["snapshot"] = ec2.create_snapshot(
            VolumeId=volume,
            Description="nightly",
            TagSpecifications=tag_spec("snapshot", "tp-ec2-nightly", tp="storage"),
        )
        snapshot = obs["snapshot"]["SnapshotId"]
        obs["copy"] = ec2.copy_snapshot(
            SourceSnapshotId=snapshot, SourceRegion="us-east-1", Description="copy of nightly"
        )
        ec2.create_tags(
            Resources=[obs["copy"]["SnapshotId"]],
            Tags=[{"Key": "tp", "Value": "storage"}, {"Key": "Name", "Value": "tp-ec2-copy"}],
        )
        obs["restored"] = ec2.create_volume(
            AvailabilityZone="us-east-1a",
            SnapshotId=snapshot,
            TagSpecifications=tag_spec("volume", "tp-ec2-restored", tp="storage"),
        )
        obs["detach"] = ec2.detach_volume(VolumeId=volume, InstanceId=instance)
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        ec2 = ctx.client("ec2")
        return {
            "volumes": named(ec2.describe_volumes(Filters=tagged("tp", "storage"))["Volumes"]),
            "snapshots": named(ec2.describe_snapshots(OwnerIds=["self"], Filters=tagged("tp", "storage"))["Snapshots"]),
        }


class KeyPairsAndAddresses(Scenario):
    """Access to a bastion host: an imported SSH key pair (its fingerprint derives from the key), an instance
    launched with it, an Elastic IP allocated, associated, moved off and released; a duplicate key name fails."""

    name = "ec2-keys-addresses"
    service = "ec2"

    def run(self, ctx: Context) -> Observations:
        ec2 = ctx.client("ec2")
        obs: Observations = {}
        obs["import"] = ec2.import_key_pair(
            KeyName="tp-ec2-bastion-key",
            PublicKeyMaterial=PUBLIC_KEY.encode(),
            TagSpecifications=tag_spec("key-pair", "tp-ec2-bastion-key", tp="bastion"),
        )
        obs["duplicate"] = error_of(
            ec2.import_key_pair, KeyName="tp-ec2-bastion-key", PublicKeyMaterial=PUBLIC_KEY.encode()
        )
        instance = ec2.run_instances(
            ImageId=AMI,
            MinCount=1,
            MaxCount=1,
            KeyName="tp-ec2-bastion-key",
            TagSpecifications=tag_spec("instance", "tp-ec2-bastion", tp="bastion"),
        )["Instances"][0]["InstanceId"]
        obs["allocate"] = ec2.allocate_address(
            Domain="vpc", TagSpecifications=tag_spec("elastic-ip", "tp-ec2-bastion-ip", tp="bastion")
        )
        obs["spare"] = ec2.allocate_address(
            Domain="vpc", TagSpecifications=tag_spec("elastic-ip", "tp-ec2-spare-ip", tp="bastion")
        )
        obs["associate"] = ec2.associate_address(AllocationId=obs["allocate"]["AllocationId"], InstanceId=instance)
        obs["disassociate"] = ec2.disassociate_address(AssociationId=obs["associate"]["AssociationId"])
        obs["reassociate"] = ec2.associate_address(AllocationId=obs["allocate"]["AllocationId"], InstanceId=instance)
        obs["release"] = ec2.release_address(AllocationId=obs["spare"]["AllocationId"])
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        ec2 = ctx.client("ec2")
        return {
            "keys": ec2.describe_key_pairs(KeyNames=["tp-ec2-bastion-key"])["KeyPairs"],
            "addresses": named(ec2.describe_addresses(Filters=tagged("tp", "bastion"))["Addresses"]),
            "instances": instances(ec2, tagged("tp", "bastion")),
        }


class LaunchTemplates(Scenario):
    """A launch template with three versions: the second made default, versions listed, and an instance
    launched from the template's default version."""

    name = "ec2-launch-templates"
    service = "ec2"

    def run(self, ctx: Context) -> Observations:
        ec2 = ctx.client("ec2")
        obs: Observations = {}
        obs["create"] = ec2.create_launch_template(
            LaunchTemplateName="tp-ec2-template",
            VersionDescription="first",
            LaunchTemplateData={"ImageId": AMI, "InstanceType": "t3.small", "Monitoring": {"Enabled": True}},
            TagSpecifications=tag_spec("launch-template", "tp-ec2-template", tp="template"),
        )
        template = obs["create"]["LaunchTemplate"]["LaunchTemplateId"]
        obs["v2"] = ec2.create_launch_template_version(
            LaunchTemplateId=template,
            SourceVersion="1",
            VersionDescription="bigger",
            LaunchTemplateData={"InstanceType": "t3.large"},
        )
        obs["v3"] = ec2.create_launch_template_version(
            LaunchTemplateId=template,
            VersionDescription="mistake",
            LaunchTemplateData={"ImageId": AMI, "InstanceType": "x1.32xlarge"},
        )
        obs["default"] = ec2.modify_launch_template(LaunchTemplateId=template, DefaultVersion="2")
        obs["launch"] = ec2.run_instances(
            MinCount=1,
            MaxCount=1,
            LaunchTemplate={"LaunchTemplateId": template, "Version": "$Default"},
            TagSpecifications=tag_spec("instance", "tp-ec2-from-template", tp="template"),
        )
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        ec2 = ctx.client("ec2")
        return {
            "templates": ec2.describe_launch_templates(LaunchTemplateNames=["tp-ec2-template"])["LaunchTemplates"],
            "versions": ec2.describe_launch_template_versions(LaunchTemplateName="tp-ec2-template")[
                "LaunchTemplateVersions"
            ],
            "instances": instances(ec2, tagged("tp", "template")),
        }


class Images(Scenario):
    """A golden image: made from a running instance, tagged, shared with another account by launch permission,
    described with its attribute, and a second image deregistered."""

    name = "ec2-images"
    service = "ec2"

    def run(self, ctx: Context) -> Observations:
        ec2 = ctx.client("ec2")
        obs: Observations = {}
        instance = ec2.run_instances(
            ImageId=AMI,
            MinCount=1,
            MaxCount=1,
            TagSpecifications=tag_spec("instance", "tp-ec2-golden-src", tp="images"),
        )["Instances"][0]["InstanceId"]
        obs["image"] = ec2.create_image(
            InstanceId=instance,
            Name="tp-ec2-golden",
            Description="golden image",
            TagSpecifications=tag_spec("image", "tp-ec2-golden", tp="images"),
        )
        image = obs["image"]["ImageId"]
        obs["share"] = ec2.modify_image_attribute(ImageId=image, LaunchPermission={"Add": [{"UserId": "111122223333"}]})
        obs["permission"] = ec2.describe_image_attribute(ImageId=image, Attribute="launchPermission")
        scratch = ec2.create_image(InstanceId=instance, Name="tp-ec2-scratch")["ImageId"]
        obs["deregister"] = ec2.deregister_image(ImageId=scratch)
        obs["gone"] = ec2.describe_images(Filters=[{"Name": "name", "Values": ["tp-ec2-scratch"]}])["Images"]
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        ec2 = ctx.client("ec2")
        images = ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": ["tp-ec2-golden"]}])["Images"]
        return {
            "images": images,
            "permissions": [
                ec2.describe_image_attribute(ImageId=i["ImageId"], Attribute="launchPermission") for i in images
            ],
        }
