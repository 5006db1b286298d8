"""IAM scenarios: users and groups, roles and instance profiles, managed policy versions, tags, account settings,
identity providers."""

from __future__ import annotations

import json
from typing import Any

from transparency.core import ACCOUNT, Context, Observations, Scenario, error_of


def document(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def allow(action: str | list[str], resource: str = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


def trust(service: str) -> str:
    return document({"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"})


def policy_arn(name: str, path: str = "/") -> str:
    return f"arn:aws:iam::{ACCOUNT}:policy{path}{name}"


class UsersAndGroups(Scenario):
    """People and teams: users created under a path, a group with an inline policy, membership added and
    removed, a login profile, access keys (one deactivated, one deleted) and the errors for a missing user."""

    name = "iam-users-groups"
    service = "iam"

    def run(self, ctx: Context) -> Observations:
        iam = ctx.client("iam")
        obs: Observations = {}
        obs["users"] = [iam.create_user(UserName=f"tp-iam-{name}", Path="/staff/") for name in ("ann", "bob", "cid")]
        obs["group"] = iam.create_group(GroupName="tp-iam-developers", Path="/teams/")
        obs["inline"] = iam.put_group_policy(
            GroupName="tp-iam-developers", PolicyName="read-logs", PolicyDocument=document(allow("logs:Get*"))
        )
        for name in ("ann", "bob", "cid"):
            iam.add_user_to_group(GroupName="tp-iam-developers", UserName=f"tp-iam-{name}")
        obs["remove"] = iam.remove_user_from_group(GroupName="tp-iam-developers", UserName="tp-iam-cid")
        obs["login"] = iam.create_login_profile(
            UserName="tp-iam-ann", Password="Corr3ct-Horse!", PasswordResetRequired=True
        )
        first = iam.create_access_key(UserName="tp-iam-bob")
        second = iam.create_access_key(UserName="tp-iam-bob")
        obs["keys"] = [first, second]
        obs["deactivate"] = iam.update_access_key(
            UserName="tp-iam-bob", AccessKeyId=first["AccessKey"]["AccessKeyId"], Status="Inactive"
        )
        obs["delete key"] = iam.delete_access_key(UserName="tp-iam-bob", AccessKeyId=second["AccessKey"]["AccessKeyId"])
        obs["missing"] = error_of(iam.get_user, UserName="tp-iam-nobody")
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        iam = ctx.client("iam")
        return {
            "users": iam.list_users(PathPrefix="/staff/")["Users"],
            "group": iam.get_group(GroupName="tp-iam-developers"),
            "group policy": iam.get_group_policy(GroupName="tp-iam-developers", PolicyName="read-logs"),
            "groups of cid": iam.list_groups_for_user(UserName="tp-iam-cid")["Groups"],
            "login": iam.get_login_profile(UserName="tp-iam-ann")["LoginProfile"],
            "keys": iam.list_access_keys(UserName="tp-iam-bob")["AccessKeyMetadata"],
        }


class RolesAndInstanceProfiles(Scenario):
    """A service role: trust policy, inline and attached managed policies, a permissions boundary, a description
    and max session changed, an instance profile holding it; detaching a policy and the role listings."""

    name = "iam-roles-profiles"
    service = "iam"

    def run(self, ctx: Context) -> Observations:
        iam = ctx.client("iam")
        obs: Observations = {}
        obs["role"] = iam.create_role(
            RoleName="tp-iam-app-role",
            Path="/apps/",
            AssumeRolePolicyDocument=trust("ec2.amazonaws.com"),
            Description="runs the app",
            Tags=[{"Key": "app", "Value": "shop"}],
        )
        obs["inline"] = iam.put_role_policy(
            RoleName="tp-iam-app-role",
            PolicyName="queue-access",
            PolicyDocument=document(allow(["sqs:SendMessage", "sqs:ReceiveMessage"])),
        )
        managed = [
            iam.create_policy(PolicyName=f"tp-iam-app-{name}", PolicyDocument=document(allow(action)))["Policy"]["Arn"]
            for name, action in (("s3", "s3:GetObject"), ("ddb", "dynamodb:Query"), ("boundary", "*"))
        ]
        for arn in managed[:2]:
            iam.attach_role_policy(RoleName="tp-iam-app-role", PolicyArn=arn)
        obs["boundary"] = iam.put_role_permissions_boundary(RoleName="tp-iam-app-role", PermissionsBoundary=managed[2])
        obs["detach"] = iam.detach_role_policy(RoleName="tp-iam-app-role", PolicyArn=managed[1])
        obs["update"] = iam.update_role(
            RoleName="tp-iam-app-role", Description="runs the shop", MaxSessionDuration=7200
        )
        obs["trust"] = iam.update_assume_role_policy(
            RoleName="tp-iam-app-role", PolicyDocument=trust("ecs-tasks.amazonaws.com")
        )
        obs["profile"] = iam.create_instance_profile(InstanceProfileName="tp-iam-app-profile", Path="/apps/")
        obs["add"] = iam.add_role_to_instance_profile(
            InstanceProfileName="tp-iam-app-profile", RoleName="tp-iam-app-role"
        )
        obs["in use"] = error_of(iam.delete_role, RoleName="tp-iam-app-role")
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        iam = ctx.client("iam")
        return {
            "role": iam.get_role(RoleName="tp-iam-app-role")["Role"],
            "inline": iam.get_role_policy(RoleName="tp-iam-app-role", PolicyName="queue-access"),
            "attached": iam.list_attached_role_policies(RoleName="tp-iam-app-role")["AttachedPolicies"],
            "profile": iam.get_instance_profile(InstanceProfileName="tp-iam-app-profile")["InstanceProfile"],
            "roles under /apps/": iam.list_roles(PathPrefix="/apps/")["Roles"],
        }


class PolicyVersions(Scenario):
    """A managed policy edited over time: versions created, the newest made default, an old one deleted, the
    five-version limit hit, and the policy attached to a user and a group."""

    name = "iam-policy-versions"
    service = "iam"

    def run(self, ctx: Context) -> Observations:
        iam = ctx.client("iam")
        obs: Observations = {}
        obs["create"] = iam.create_policy(
            PolicyName="tp-iam-buckets",
            Path="/shared/",
            Description="bucket access",
            PolicyDocument=document(allow("s3:ListBucket")),
        )
        arn = obs["create"]["Policy"]["Arn"]
        obs["versions"] = [
            iam.create_policy_version(
                PolicyArn=arn, PolicyDocument=document(allow(["s3:ListBucket", action])), SetAsDefault=False
            )
            for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:GetBucketTagging")
        ]
        obs["limit"] = error_of(iam.create_policy_version, PolicyArn=arn, PolicyDocument=document(allow("s3:*")))
        obs["default"] = iam.set_default_policy_version(PolicyArn=arn, VersionId="v4")
        obs["delete v2"] = iam.delete_policy_version(PolicyArn=arn, VersionId="v2")
        obs["cannot delete default"] = error_of(iam.delete_policy_version, PolicyArn=arn, VersionId="v4")
        iam.create_user(UserName="tp-iam-auditor")
        iam.create_group(GroupName="tp-iam-auditors")
        obs["attach user"] = iam.attach_user_policy(UserName="tp-iam-auditor", PolicyArn=arn)
        obs["attach group"] = iam.attach_group_policy(GroupName="tp-iam-auditors", PolicyArn=arn)
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        iam = ctx.client("iam")
        arn = policy_arn("tp-iam-buckets", "/shared/")
        return {
            "policy": iam.get_policy(PolicyArn=arn)["Policy"],
            "versions": iam.list_policy_versions(PolicyArn=arn)["Versions"],
            "default document": iam.get_policy_version(PolicyArn=arn, VersionId="v4")["PolicyVersion"],
            "entities": iam.list_entities_for_policy(PolicyArn=arn),
        }


class Tagging(Scenario):
    """Tags on IAM resources: users, roles and policies tagged, retagged and untagged, listed back; tagging a
    missing user fails."""

    name = "iam-tags"
    service = "iam"

    def run(self, ctx: Context) -> Observations:
        iam = ctx.client("iam")
        obs: Observations = {}
        iam.create_user(UserName="tp-iam-tagged-user", Tags=[{"Key": "dept", "Value": "finance"}])
        iam.create_role(RoleName="tp-iam-tagged-role", AssumeRolePolicyDocument=trust("lambda.amazonaws.com"))
        arn = iam.create_policy(PolicyName="tp-iam-tagged-policy", PolicyDocument=document(allow("sns:Publish")))[
            "Policy"
        ]["Arn"]
        obs["tag user"] = iam.tag_user(
            UserName="tp-iam-tagged-user", Tags=[{"Key": "dept", "Value": "sales"}, {"Key": "level", "Value": "3"}]
        )
        obs["tag role"] = iam.tag_role(
            RoleName="tp-iam-tagged-role", Tags=[{"Key": "owner", "Value": "platform"}, {"Key": "temp", "Value": "x"}]
        )
        obs["untag role"] = iam.untag_role(RoleName="tp-iam-tagged-role", TagKeys=["temp"])
        obs["tag policy"] = iam.tag_policy(PolicyArn=arn, Tags=[{"Key": "reviewed", "Value": "2024"}])
        obs["missing user"] = error_of(iam.tag_user, UserName="tp-iam-untagged", Tags=[{"Key": "k", "Value": "v"}])
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        iam = ctx.client("iam")
        return {
            "user": iam.list_user_tags(UserName="tp-iam-tagged-user")["Tags"],
            "role": iam.list_role_tags(RoleName="tp-iam-tagged-role")["Tags"],
            "policy": iam.list_policy_tags(PolicyArn=policy_arn("tp-iam-tagged-policy"))["Tags"],
        }


class AccountSettings(Scenario):
    """Account-wide IAM settings: an account alias and a password policy set, read, and the policy tightened;
    the account summary counts what exists."""

    name = "iam-account-settings"
    service = "iam"

    def run(self, ctx: Context) -> Observations:
        iam = ctx.client("iam")
        obs: Observations = {}
        obs["alias"] = iam.create_account_alias(AccountAlias="tp-iam-company")
        obs["policy"] = iam.update_account_password_policy(
            MinimumPasswordLength=12, RequireSymbols=True, RequireNumbers=True, MaxPasswordAge=90
        )
        obs["tighten"] = iam.update_account_password_policy(
            MinimumPasswordLength=16,
            RequireSymbols=True,
            RequireNumbers=True,
            RequireUppercaseCharacters=True,
            PasswordReusePrevention=5,
            MaxPasswordAge=60,
        )
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        iam = ctx.client("iam")
        return {
            "aliases": iam.list_account_aliases()["AccountAliases"],
            "password policy": iam.get_account_password_policy()["PasswordPolicy"],
        }


class IdentityProviders(Scenario):
    """Federation: an OpenID Connect provider with a client id and a thumbprint (thumbprints replaced, a tag
    added), and a SAML provider with its metadata document."""

    name = "iam-identity-providers"
    service = "iam"

    def run(self, ctx: Context) -> Observations:
        iam = ctx.client("iam")
        obs: Observations = {}
        obs["oidc"] = iam.create_open_id_connect_provider(
            Url="https://tp-iam-login.example.com",
            ClientIDList=["web-app"],
            ThumbprintList=["a" * 40],
            Tags=[{"Key": "idp", "Value": "corporate"}],
        )
        arn = obs["oidc"]["OpenIDConnectProviderArn"]
        obs["tag"] = iam.tag_open_id_connect_provider(
            OpenIDConnectProviderArn=arn, Tags=[{"Key": "owner", "Value": "security"}]
        )
        obs["thumbprint"] = iam.update_open_id_connect_provider_thumbprint(
            OpenIDConnectProviderArn=arn, ThumbprintList=["b" * 40, "c" * 40]
        )
        metadata = (
            '<?xml version="1.0"?><EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" '
            'entityID="https://tp-iam-sso.example.com"><IDPSSODescriptor '
            'protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            + "".join(
                f'<SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-{binding}" '
                f'Location="https://tp-iam-sso.example.com/saml/{binding.lower()}/{n}"/>'
                for n in range(6)
                for binding in ("POST", "Redirect")
            )
            + "</IDPSSODescriptor></EntityDescriptor>"
        )
        obs["saml"] = iam.create_saml_provider(Name="tp-iam-sso", SAMLMetadataDocument=metadata)
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        iam = ctx.client("iam")
        oidc = f"arn:aws:iam::{ACCOUNT}:oidc-provider/tp-iam-login.example.com"
        saml = f"arn:aws:iam::{ACCOUNT}:saml-provider/tp-iam-sso"
        return {
            "oidc": iam.get_open_id_connect_provider(OpenIDConnectProviderArn=oidc),
            "saml": iam.get_saml_provider(SAMLProviderArn=saml),
        }
