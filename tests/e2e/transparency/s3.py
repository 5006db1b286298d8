"""S3 scenarios: objects, presigned POST forms and URLs, multipart uploads, versioning, bucket configuration."""

from __future__ import annotations

import json
from typing import Any

import requests

from transparency.core import Context, Observations, Scenario, error_of, read_body

PART = bytes(range(256)) * 20_480  # 5 MiB: the smallest part but the last


def objects_of(s3: Any, bucket: str) -> dict[str, Any]:
    """Every object of an unversioned bucket with its content, metadata and tags."""
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    contents = {}
    for item in listed:
        key = item["Key"]
        got = read_body(s3.get_object(Bucket=bucket, Key=key))
        contents[key] = {
            "body": got["Body"],
            "type": got.get("ContentType"),
            "metadata": got.get("Metadata"),
            "etag": got["ETag"],
            "tags": s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"],
        }
    return {"listing": listed, "contents": contents}


class ObjectsBasic(Scenario):
    """Everyday object use: puts with content type and user metadata, get and head, a listing by prefix and
    delimiter, a server-side copy with replaced metadata, a batch delete, and a missing key's error."""

    name = "s3-objects-basic"
    service = "s3"

    def run(self, ctx: Context) -> Observations:
        s3 = ctx.client("s3")
        obs: Observations = {}
        obs["bucket"] = s3.create_bucket(Bucket="tp-s3-basic")
        for key, body in [
            ("reports/2024/jan.csv", b"a,b\n1,2\n"),
            ("reports/2024/feb.csv", b"a,b\n3,4\n"),
            ("reports/readme.txt", "ünïcode ✓".encode()),
            ("images/logo.bin", bytes(range(256)) * 40),
        ]:
            obs[f"put {key}"] = s3.put_object(
                Bucket="tp-s3-basic", Key=key, Body=body, ContentType="text/csv", Metadata={"source": "tp"}
            )
        obs["get"] = read_body(s3.get_object(Bucket="tp-s3-basic", Key="reports/readme.txt"))
        obs["head"] = s3.head_object(Bucket="tp-s3-basic", Key="images/logo.bin")
        obs["range"] = read_body(s3.get_object(Bucket="tp-s3-basic", Key="images/logo.bin", Range="bytes=10-19"))
        obs["by prefix"] = s3.list_objects_v2(Bucket="tp-s3-basic", Prefix="reports/", Delimiter="/")
        obs["copy"] = s3.copy_object(
            Bucket="tp-s3-basic",
            Key="archive/jan.csv",
            CopySource={"Bucket": "tp-s3-basic", "Key": "reports/2024/jan.csv"},
            MetadataDirective="REPLACE",
            Metadata={"archived": "yes"},
            ContentType="text/plain",
        )
        obs["delete"] = s3.delete_objects(
            Bucket="tp-s3-basic",
            Delete={"Objects": [{"Key": "reports/2024/feb.csv"}, {"Key": "never/there"}]},
        )
        obs["missing"] = error_of(s3.get_object, Bucket="tp-s3-basic", Key="reports/2024/feb.csv")
        obs["all"] = s3.list_objects_v2(Bucket="tp-s3-basic")
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return objects_of(ctx.client("s3"), "tp-s3-basic")


class PresignedPost(Scenario):
    """A browser-style upload: generate_presigned_post with conditions, then multipart/form-data POSTs with
    requests (a SigV4 form answered 201, a SigV2 form answered 204 with user metadata); the objects are there
    with their content and metadata."""

    name = "s3-presigned-post"
    service = "s3"

    def run(self, ctx: Context) -> Observations:
        s3 = ctx.client("s3")
        obs: Observations = {}
        s3.create_bucket(Bucket="tp-s3-uploads")
        post = ctx.client("s3", signature_version="s3v4").generate_presigned_post(
            Bucket="tp-s3-uploads",
            Key="avatars/${filename}",
            Fields={"success_action_status": "201", "Content-Type": "image/png"},
            Conditions=[
                {"success_action_status": "201"},
                {"Content-Type": "image/png"},
                ["starts-with", "$key", "avatars/"],
                ["content-length-range", 1, 1_000_000],
            ],
            ExpiresIn=600,
        )
        obs["form fields"] = sorted(post["fields"])
        picture = b"\x89PNG\r\n\x1a\n" + bytes(range(200))
        answer = requests.post(
            post["url"], data=post["fields"], files={"file": ("me.png", picture, "image/png")}, timeout=30
        )
        obs["post 201"] = {"status": answer.status_code, "body": answer.text}
        plain = s3.generate_presigned_post(
            Bucket="tp-s3-uploads", Key="docs/notes.txt", Fields={"x-amz-meta-origin": "form"}, ExpiresIn=600
        )
        answer = requests.post(
            plain["url"], data=plain["fields"], files={"file": ("notes.txt", b"uploaded by a form\n")}, timeout=30
        )
        obs["post 204"] = {"status": answer.status_code, "body": answer.text}
        obs["listing"] = s3.list_objects_v2(Bucket="tp-s3-uploads")
        obs["avatar"] = read_body(s3.get_object(Bucket="tp-s3-uploads", Key="avatars/me.png"))
        obs["notes"] = read_body(s3.get_object(Bucket="tp-s3-uploads", Key="docs/notes.txt"))
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return objects_of(ctx.client("s3"), "tp-s3-uploads")


class PresignedUrls(Scenario):
    """Presigned URLs used with plain HTTP: a PUT of binary content with a content type, a GET of it, a GET of
    a missing key (404), and a presigned DELETE."""

    name = "s3-presigned-urls"
    service = "s3"

    def run(self, ctx: Context) -> Observations:
        s3 = ctx.client("s3")
        obs: Observations = {}
        s3.create_bucket(Bucket="tp-s3-presigned")
        body = bytes(range(255, -1, -1)) * 3
        put = s3.generate_presigned_url(
            "put_object", Params={"Bucket": "tp-s3-presigned", "Key": "shared/€ file.bin"}, ExpiresIn=600
        )
        answer = requests.put(put, data=body, timeout=30)
        obs["put"] = {"status": answer.status_code, "etag": answer.headers.get("ETag")}
        get = s3.generate_presigned_url("get_object", Params={"Bucket": "tp-s3-presigned", "Key": "shared/€ file.bin"})
        answer = requests.get(get, timeout=30)
        obs["get"] = {"status": answer.status_code, "same body": answer.content == body}
        s3.put_object(Bucket="tp-s3-presigned", Key="temp.txt", Body=b"temporary")
        delete = s3.generate_presigned_url("delete_object", Params={"Bucket": "tp-s3-presigned", "Key": "temp.txt"})
        obs["delete"] = requests.delete(delete, timeout=30).status_code
        missing = s3.generate_presigned_url("get_object", Params={"Bucket": "tp-s3-presigned", "Key": "nope"})
        obs["missing"] = requests.get(missing, timeout=30).status_code
        obs["listing"] = s3.list_objects_v2(Bucket="tp-s3-presigned")
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        return objects_of(ctx.client("s3"), "tp-s3-presigned")


class MultipartUpload(Scenario):
    """A multipart upload of two parts (5 MiB and a tail) listed, completed and read back; a second upload
    left open with one part; a third aborted; the listing of open uploads shows just the open one."""

    name = "s3-multipart"
    service = "s3"

    def run(self, ctx: Context) -> Observations:
        s3 = ctx.client("s3")
        obs: Observations = {}
        s3.create_bucket(Bucket="tp-s3-multipart")
        obs["create"] = s3.create_multipart_upload(
            Bucket="tp-s3-multipart", Key="backups/db.dump", Metadata={"db": "orders"}
        )
        upload = obs["create"]["UploadId"]
        parts = []
        for number, chunk in enumerate((PART, b"the tail of the dump"), 1):
            answer = s3.upload_part(
                Bucket="tp-s3-multipart", Key="backups/db.dump", UploadId=upload, PartNumber=number, Body=chunk
            )
            parts.append({"PartNumber": number, "ETag": answer["ETag"]})
        obs["parts"] = s3.list_parts(Bucket="tp-s3-multipart", Key="backups/db.dump", UploadId=upload)
        obs["complete"] = s3.complete_multipart_upload(
            Bucket="tp-s3-multipart", Key="backups/db.dump", UploadId=upload, MultipartUpload={"Parts": parts}
        )
        obs["head"] = s3.head_object(Bucket="tp-s3-multipart", Key="backups/db.dump")
        obs["object"] = read_body(s3.get_object(Bucket="tp-s3-multipart", Key="backups/db.dump"))
        open_upload = s3.create_multipart_upload(Bucket="tp-s3-multipart", Key="backups/open.dump")["UploadId"]
        s3.upload_part(
            Bucket="tp-s3-multipart", Key="backups/open.dump", UploadId=open_upload, PartNumber=1, Body=b"x" * 1024
        )
        aborted = s3.create_multipart_upload(Bucket="tp-s3-multipart", Key="backups/aborted.dump")["UploadId"]
        obs["abort"] = s3.abort_multipart_upload(Bucket="tp-s3-multipart", Key="backups/aborted.dump", UploadId=aborted)
        obs["uploads"] = s3.list_multipart_uploads(Bucket="tp-s3-multipart")
        obs["too small"] = error_of(
            s3.complete_multipart_upload,
            Bucket="tp-s3-multipart",
            Key="backups/open.dump",
            UploadId=open_upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"not-the-etag"'}]},
        )
        ctx.kept["open upload"] = open_upload
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        s3 = ctx.client("s3")
        uploads = s3.list_multipart_uploads(Bucket="tp-s3-multipart").get("Uploads", [])
        return {
            **objects_of(s3, "tp-s3-multipart"),
            "uploads": uploads,
            "open parts": [
                s3.list_parts(Bucket="tp-s3-multipart", Key=u["Key"], UploadId=u["UploadId"]).get("Parts", [])
                for u in uploads
            ],
        }


class Versioning(Scenario):
    """A versioned bucket: three versions of a key, a delete marker, a read of an old version by id, a
    deletion of one specific version, then versioning suspended and a null-version put."""

    name = "s3-versioning"
    service = "s3"

    def run(self, ctx: Context) -> Observations:
        s3 = ctx.client("s3")
        obs: Observations = {}
        s3.create_bucket(Bucket="tp-s3-versions")
        obs["enable"] = s3.put_bucket_versioning(Bucket="tp-s3-versions", VersioningConfiguration={"Status": "Enabled"})
        versions = [
            s3.put_object(Bucket="tp-s3-versions", Key="config.json", Body=json.dumps({"v": n}).encode())
            for n in (1, 2, 3)
        ]
        obs["puts"] = versions
        obs["old"] = read_body(
            s3.get_object(Bucket="tp-s3-versions", Key="config.json", VersionId=versions[0]["VersionId"])
        )
        obs["drop version 2"] = s3.delete_object(
            Bucket="tp-s3-versions", Key="config.json", VersionId=versions[1]["VersionId"]
        )
        s3.put_object(Bucket="tp-s3-versions", Key="removed.txt", Body=b"soon gone")
        obs["marker"] = s3.delete_object(Bucket="tp-s3-versions", Key="removed.txt")
        obs["behind the marker"] = error_of(s3.get_object, Bucket="tp-s3-versions", Key="removed.txt")
        obs["suspend"] = s3.put_bucket_versioning(
            Bucket="tp-s3-versions", VersioningConfiguration={"Status": "Suspended"}
        )
        obs["null put"] = s3.put_object(Bucket="tp-s3-versions", Key="config.json", Body=b'{"v": "null"}')
        obs["versions"] = s3.list_object_versions(Bucket="tp-s3-versions")
        obs["status"] = s3.get_bucket_versioning(Bucket="tp-s3-versions")
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        s3 = ctx.client("s3")
        listed = s3.list_object_versions(Bucket="tp-s3-versions")
        bodies = {
            f"{v['Key']}@{v['VersionId']}": read_body(
                s3.get_object(Bucket="tp-s3-versions", Key=v["Key"], VersionId=v["VersionId"])
            )["Body"]
            for v in listed.get("Versions", [])
        }
        return {
            "versioning": s3.get_bucket_versioning(Bucket="tp-s3-versions"),
            "versions": listed.get("Versions", []),
            "markers": listed.get("DeleteMarkers", []),
            "bodies": bodies,
        }


class BucketConfiguration(Scenario):
    """A website bucket's configuration: tags, a bucket policy, CORS rules, a lifecycle rule, a website
    configuration, default encryption and a public access block, all read back."""

    name = "s3-bucket-config"
    service = "s3"

    def run(self, ctx: Context) -> Observations:
        s3 = ctx.client("s3")
        obs: Observations = {}
        s3.create_bucket(Bucket="tp-s3-site")
        obs["tags"] = s3.put_bucket_tagging(
            Bucket="tp-s3-site", Tagging={"TagSet": [{"Key": "site", "Value": "www"}, {"Key": "tier", "Value": "1"}]}
        )
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "PublicRead",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::tp-s3-site/*",
                }
            ],
        }
        obs["policy"] = s3.put_bucket_policy(Bucket="tp-s3-site", Policy=json.dumps(policy))
        obs["cors"] = s3.put_bucket_cors(
            Bucket="tp-s3-site",
            CORSConfiguration={
                "CORSRules": [
                    {"AllowedMethods": ["GET", "HEAD"], "AllowedOrigins": ["https://example.org"], "MaxAgeSeconds": 300}
                ]
            },
        )
        obs["lifecycle"] = s3.put_bucket_lifecycle_configuration(
            Bucket="tp-s3-site",
            LifecycleConfiguration={
                "Rules": [
                    {
                        "ID": "expire-logs",
                        "Status": "Enabled",
                        "Filter": {"Prefix": "logs/"},
                        "Expiration": {"Days": 30},
                    }
                ]
            },
        )
        obs["website"] = s3.put_bucket_website(
            Bucket="tp-s3-site",
            WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}, "ErrorDocument": {"Key": "404.html"}},
        )
        obs["encryption"] = s3.put_bucket_encryption(
            Bucket="tp-s3-site",
            ServerSideEncryptionConfiguration={
                "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
            },
        )
        obs["public access"] = s3.put_public_access_block(
            Bucket="tp-s3-site",
            PublicAccessBlockConfiguration={
                "BlockPublicAcls": True,
                "IgnorePublicAcls": True,
                "BlockPublicPolicy": False,
                "RestrictPublicBuckets": False,
            },
        )
        obs["read back"] = self.fingerprint(ctx)
        obs["no replication"] = error_of(s3.get_bucket_replication, Bucket="tp-s3-site")
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        s3 = ctx.client("s3")
        return {
            "tags": s3.get_bucket_tagging(Bucket="tp-s3-site"),
            "policy": json.loads(s3.get_bucket_policy(Bucket="tp-s3-site")["Policy"]),
            "cors": s3.get_bucket_cors(Bucket="tp-s3-site"),
            "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket="tp-s3-site"),
            "website": s3.get_bucket_website(Bucket="tp-s3-site"),
            "encryption": s3.get_bucket_encryption(Bucket="tp-s3-site"),
            "public access": s3.get_public_access_block(Bucket="tp-s3-site"),
        }


class ObjectTaggingAndAcl(Scenario):
    """Object-level settings: tags at put time and replaced later, a canned ACL, an object ACL read back, and
    tags removed from another object."""

    name = "s3-object-tags-acl"
    service = "s3"

    def run(self, ctx: Context) -> Observations:
        s3 = ctx.client("s3")
        obs: Observations = {}
        s3.create_bucket(Bucket="tp-s3-tagged")
        obs["put"] = s3.put_object(
            Bucket="tp-s3-tagged", Key="invoice-1.pdf", Body=b"%PDF-1.4", Tagging="status=draft&year=2024"
        )
        s3.put_object(Bucket="tp-s3-tagged", Key="invoice-2.pdf", Body=b"%PDF-1.7", Tagging="status=final")
        obs["retag"] = s3.put_object_tagging(
            Bucket="tp-s3-tagged",
            Key="invoice-1.pdf",
            Tagging={"TagSet": [{"Key": "status", "Value": "sent"}, {"Key": "customer", "Value": "acme"}]},
        )
        obs["untag"] = s3.delete_object_tagging(Bucket="tp-s3-tagged", Key="invoice-2.pdf")
        obs["acl"] = s3.put_object_acl(Bucket="tp-s3-tagged", Key="invoice-1.pdf", ACL="public-read")
        obs["tags"] = s3.get_object_tagging(Bucket="tp-s3-tagged", Key="invoice-1.pdf")
        obs["read acl"] = s3.get_object_acl(Bucket="tp-s3-tagged", Key="invoice-1.pdf")
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        s3 = ctx.client("s3")
        return {
            **objects_of(s3, "tp-s3-tagged"),
            "acl": s3.get_object_acl(Bucket="tp-s3-tagged", Key="invoice-1.pdf"),
        }


class BucketsAndErrors(Scenario):
    """Bucket lifecycle and the errors around it: create, a repeated create (accepted in us-east-1), deleting
    a non-empty bucket (refused), emptying and deleting it, and the bucket listing afterwards."""

    name = "s3-bucket-lifecycle"
    service = "s3"

    def run(self, ctx: Context) -> Observations:
        s3 = ctx.client("s3")
        obs: Observations = {}
        obs["create"] = s3.create_bucket(Bucket="tp-s3-short-lived")
        s3.create_bucket(Bucket="tp-s3-long-lived")
        obs["again"] = s3.create_bucket(Bucket="tp-s3-short-lived")  # us-east-1: owning it already is fine
        s3.put_object(Bucket="tp-s3-short-lived", Key="a", Body=b"a")
        obs["not empty"] = error_of(s3.delete_bucket, Bucket="tp-s3-short-lived")
        obs["empty"] = s3.delete_object(Bucket="tp-s3-short-lived", Key="a")
        obs["delete"] = s3.delete_bucket(Bucket="tp-s3-short-lived")
        obs["head"] = error_of(s3.head_bucket, Bucket="tp-s3-short-lived")
        obs["location"] = s3.get_bucket_location(Bucket="tp-s3-long-lived")
        obs["mine"] = sorted(b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].endswith("-lived"))
        return obs

    def fingerprint(self, ctx: Context) -> Any:
        s3 = ctx.client("s3")
        return [b for b in s3.list_buckets()["Buckets"] if b["Name"].endswith("-lived")]
