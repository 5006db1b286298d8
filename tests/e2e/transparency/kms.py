"""KMS scenarios: keys and aliases, envelope encryption, key lifecycle, grants, key policies, signing keys."""

from __future__ import annotations

import json
from typing import Any

from transparency.core import ACCOUNT, Context, Observations, Scenario, error_of


def key_by_alias(kms: Any, alias: str) -> str:
    """The key id an alias points at."""
    return str(kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"])


def aliases_of(kms: Any, prefix: str) -> list[dict[str, Any]]:
    return sorted(
        (a for a in kms.list_aliases()["Aliases"] if a["AliasName"].startswith(prefix)), key=lambda a: a["AliasName"]
    )


class KeysAndAliases(Scenario):
    """A customer managed key with a description and tags, two aliases (one moved to a second key), rotation
    enabled, a description changed, a tag removed, and an alias that already exists refused."""

    name = "kms-keys-aliases"
    service = "kms"

    def run(self, ctx: Context) -> Observations:
        kms = ctx.client("kms")
        obs: Observations = {}
        obs["key"] = kms.create_key(
            Description="orders data",
            Tags=[{"TagKey": "team", "TagValue": "orders"}, {"TagKey": "tmp", "TagValue": "1"}],
        )
        key = obs["key"]["KeyMetadata"]["KeyId"]
        other = kms.create_key(Description="orders data, next")["KeyMetadata"]["KeyId"]
        obs["alias"] = kms.create_alias(AliasName="alias/tp-kms-orders", TargetKeyId=key)
        obs["alias 2"] = kms.create_alias(AliasName="alias/tp-kms-orders-next", TargetKeyId=key)
        obs["move"] = kms.update_alias(AliasName="alias/tp-kms-orders-next", TargetKeyId=other)
        obs["taken"] = error_of(kms.create_alias, AliasName="alias/tp-kms-orders", TargetKeyId=other)
        obs["rotation"] = kms.enable_key_rotation(KeyId=key)
        obs["describe"] = kms.update_key_description(KeyId=key, Description="orders data (pii)")
        obs["untag"] = kms.untag_resource(KeyId=key, TagKeys=["tmp"])
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        kms = ctx.client("kms")
        keys = [key_by_alias(kms, alias) for alias in ("alias/tp-kms-orders", "alias/tp-kms-orders-next")]
        return {
            "aliases": aliases_of(kms, "alias/tp-kms-orders"),
            "keys": [kms.describe_key(KeyId=key)["KeyMetadata"] for key in keys],
            "tags": kms.list_resource_tags(KeyId=keys[0])["Tags"],
            "rotation": kms.get_key_rotation_status(KeyId=keys[0]),
        }


class EnvelopeEncryption(Scenario):
    """Envelope encryption with an encryption context: encrypt, decrypt, a data key generated (plaintext and
    wrapped), re-encryption to another key, and a decrypt with the wrong context refused.  Ciphertexts are
    random per call, so their lengths and what they decrypt to are compared; after a restart, ciphertexts
    made before it must still decrypt."""

    name = "kms-envelope-encryption"
    service = "kms"

    def run(self, ctx: Context) -> Observations:
        kms = ctx.client("kms")
        obs: Observations = {}
        key = kms.create_key(Description="tp-kms-envelope")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/tp-kms-envelope", TargetKeyId=key)
        backup = kms.create_key(Description="tp-kms-envelope-backup")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/tp-kms-envelope-backup", TargetKeyId=backup)
        context = {"tenant": "acme", "purpose": "invoices"}
        encrypted = kms.encrypt(KeyId="alias/tp-kms-envelope", Plaintext=b"card 4111-1111", EncryptionContext=context)
        blob = encrypted.pop("CiphertextBlob")
        obs["encrypt"] = {**encrypted, "blob length": len(blob)}
        obs["decrypt"] = kms.decrypt(CiphertextBlob=blob, EncryptionContext=context)
        data_key = kms.generate_data_key(KeyId=key, KeySpec="AES_256", EncryptionContext=context)
        wrapped = data_key.pop("CiphertextBlob")
        plaintext = data_key.pop("Plaintext")
        obs["data key"] = {**data_key, "plaintext length": len(plaintext), "wrapped length": len(wrapped)}
        unwrapped = kms.decrypt(CiphertextBlob=wrapped, EncryptionContext=context)
        obs["unwrapped is the data key"] = unwrapped["Plaintext"] == plaintext
        again = kms.re_encrypt(
            CiphertextBlob=blob, SourceEncryptionContext=context, DestinationKeyId="alias/tp-kms-envelope-backup"
        )
        moved = again.pop("CiphertextBlob")
        obs["re-encrypt"] = again
        obs["decrypt moved"] = kms.decrypt(CiphertextBlob=moved)
        obs["wrong context"] = error_of(kms.decrypt, CiphertextBlob=blob, EncryptionContext={"tenant": "other"})
        ctx.kept["ciphertexts"] = {"blob": blob, "wrapped": wrapped, "moved": moved}
        ctx.kept["context"] = context
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        kms = ctx.client("kms")
        context = ctx.kept["context"]
        return {
            "aliases": aliases_of(kms, "alias/tp-kms-envelope"),
            "key": kms.describe_key(KeyId="alias/tp-kms-envelope")["KeyMetadata"],
            "decrypted": {
                "blob": kms.decrypt(CiphertextBlob=ctx.kept["ciphertexts"]["blob"], EncryptionContext=context),
                "wrapped": kms.decrypt(CiphertextBlob=ctx.kept["ciphertexts"]["wrapped"], EncryptionContext=context),
                "moved": kms.decrypt(CiphertextBlob=ctx.kept["ciphertexts"]["moved"]),
            },
        }


class KeyLifecycle(Scenario):
    """A key's life: disabled, enabled again, scheduled for deletion with a pending window, the deletion
    cancelled (the key stays disabled), another key left pending deletion, and an unknown alias's error."""

    name = "kms-key-lifecycle"
    service = "kms"

    def run(self, ctx: Context) -> Observations:
        kms = ctx.client("kms")
        obs: Observations = {}
        key = kms.create_key(Description="tp-kms-lifecycle")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/tp-kms-lifecycle", TargetKeyId=key)
        doomed = kms.create_key(Description="tp-kms-lifecycle-doomed")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/tp-kms-lifecycle-doomed", TargetKeyId=doomed)
        obs["disable"] = kms.disable_key(KeyId=key)
        obs["while disabled"] = kms.describe_key(KeyId=key)["KeyMetadata"]
        obs["enable"] = kms.enable_key(KeyId=key)
        obs["schedule"] = kms.schedule_key_deletion(KeyId=key, PendingWindowInDays=7)
        obs["cancel"] = kms.cancel_key_deletion(KeyId=key)
        obs["doom"] = kms.schedule_key_deletion(KeyId=doomed, PendingWindowInDays=30)
        obs["unknown alias"] = error_of(kms.describe_key, KeyId="alias/tp-kms-lifecycle-none")
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        kms = ctx.client("kms")
        return {
            alias: kms.describe_key(KeyId=alias)["KeyMetadata"]
            for alias in ("alias/tp-kms-lifecycle", "alias/tp-kms-lifecycle-doomed")
        }


class Grants(Scenario):
    """Grants on a key: two grants for other principals with operations and constraints, listed, one retired
    by its token and one revoked by id; a grant lets its grantee encrypt with the token."""

    name = "kms-grants"
    service = "kms"

    def run(self, ctx: Context) -> Observations:
        kms = ctx.client("kms")
        obs: Observations = {}
        key = kms.create_key(Description="tp-kms-grants")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/tp-kms-grants", TargetKeyId=key)
        obs["reader"] = kms.create_grant(
            KeyId=key,
            GranteePrincipal=f"arn:aws:iam::{ACCOUNT}:role/tp-kms-reader",
            Operations=["Decrypt", "DescribeKey"],
            Constraints={"EncryptionContextSubset": {"tenant": "acme"}},
            Name="tp-kms-reader-grant",
        )
        obs["writer"] = kms.create_grant(
            KeyId=key,
            GranteePrincipal=f"arn:aws:iam::{ACCOUNT}:role/tp-kms-writer",
            RetiringPrincipal=f"arn:aws:iam::{ACCOUNT}:role/tp-kms-admin",
            Operations=["Encrypt", "GenerateDataKey"],
            Name="tp-kms-writer-grant",
        )
        obs["temporary"] = kms.create_grant(
            KeyId=key,
            GranteePrincipal=f"arn:aws:iam::{ACCOUNT}:role/tp-kms-temp",
            Operations=["Decrypt"],
            Name="tp-kms-temp-grant",
        )
        obs["use token"] = kms.encrypt(KeyId=key, Plaintext=b"granted", GrantTokens=[obs["writer"]["GrantToken"]])
        obs["use token"].pop("CiphertextBlob")
        obs["retire"] = kms.retire_grant(GrantToken=obs["temporary"]["GrantToken"])
        obs["revoke"] = kms.revoke_grant(KeyId=key, GrantId=obs["reader"]["GrantId"])
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        kms = ctx.client("kms")
        return sorted(kms.list_grants(KeyId="alias/tp-kms-grants")["Grants"], key=lambda g: g["Name"])


class KeyPolicies(Scenario):
    """A key policy replaced: the default policy read, a new one put that allows a role to use the key, the
    policy names listed and the new policy read back."""

    name = "kms-key-policy"
    service = "kms"

    def run(self, ctx: Context) -> Observations:
        kms = ctx.client("kms")
        obs: Observations = {}
        key = kms.create_key(Description="tp-kms-policy")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/tp-kms-policy", TargetKeyId=key)
        obs["default"] = json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"])
        policy = {
            "Version": "2012-10-17",
            "Id": "tp-kms-policy",
            "Statement": [
                {
                    "Sid": "root",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "app",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/tp-kms-app"},
                    "Action": ["kms:Encrypt", "kms:Decrypt"],
                    "Resource": "*",
                },
            ],
        }
        obs["put"] = kms.put_key_policy(KeyId=key, PolicyName="default", Policy=json.dumps(policy))
        obs["read back"] = self.fingerprint(ctx)
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        kms = ctx.client("kms")
        key = key_by_alias(kms, "alias/tp-kms-policy")
        return {
            "names": kms.list_key_policies(KeyId=key)["PolicyNames"],
            "policy": json.loads(kms.get_key_policy(KeyId=key, PolicyName="default")["Policy"]),
        }


class SigningKeys(Scenario):
    """An asymmetric signing key (RSA 2048): a message signed and the signature verified, a tampered message
    refused; the key's metadata read back.  Signatures and the public key are random per server (and per
    process: key pairs are not reproduced after a restart), so only their validity and sizes are compared."""

    name = "kms-signing"
    service = "kms"

    def run(self, ctx: Context) -> Observations:
        kms = ctx.client("kms")
        obs: Observations = {}
        obs["key"] = kms.create_key(Description="tp-kms-signing", KeyUsage="SIGN_VERIFY", KeySpec="RSA_2048")
        key = obs["key"]["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName="alias/tp-kms-signing", TargetKeyId=key)
        signed = kms.sign(KeyId=key, Message=b"release 2.0", SigningAlgorithm="RSASSA_PSS_SHA_256")
        signature = signed.pop("Signature")
        obs["sign"] = {**signed, "signature length": len(signature)}
        obs["verify"] = kms.verify(
            KeyId=key, Message=b"release 2.0", Signature=signature, SigningAlgorithm="RSASSA_PSS_SHA_256"
        )
        obs["tampered"] = kms.verify(
            KeyId=key, Message=b"release 2.1", Signature=signature, SigningAlgorithm="RSASSA_PSS_SHA_256"
        )
        public = kms.get_public_key(KeyId=key)
        obs["public key"] = {**public, "PublicKey": len(public["PublicKey"])}
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return ctx.client("kms").describe_key(KeyId="alias/tp-kms-signing")["KeyMetadata"]
