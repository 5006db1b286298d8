"""Service rules applied to a recorded call before it is replayed.

Only what the generic machinery (:mod:`replay.restore.mapping`, :mod:`replay.record.seeding`)
cannot do is here, each rule documented:

* **SQS ReceiveMessage** is replayed with ``WaitTimeSeconds=0``, also when the
  recording named no wait (the queue's ``ReceiveMessageWaitTimeSeconds`` would
  apply).  Each recorded receive ran as an instant attempt (:mod:`replay.record.longpoll`),
  so on replay the messages it got are there at once; a long poll must never
  make a start-up wait (LocalStack's replay once took hours because of
  recorded long polls).
* **S3 presigned URLs** are replayed with a signature parameter again
  (``X-Amz-Signature=REDACTED`` for SigV4, ``Signature=REDACTED`` for SigV2):
  the recording dropped the signature (:mod:`replay.record.redact`), and S3 tells a
  presigned request from an anonymous one by that parameter; moto refuses an
  anonymous ``DELETE`` of a private object, so without it a presigned delete
  would fail on replay and the object come back.
"""

from __future__ import annotations

from ..record.entry import Entry, Request
from ..record.longpoll import without_wait

__all__ = ["prepare"]


def _presigned(request: Request) -> Request:
    """A presigned S3 request with a placeholder signature again (``request`` itself if it needs none)."""
    query = request.query
    if not query or "authorization" in request.index:
        return request
    keys = {part.split("=", 1)[0].lower() for part in query.split("&")}
    if "x-amz-credential" in keys and "x-amz-signature" not in keys:
        query += "&X-Amz-Signature=REDACTED"
    elif "awsaccesskeyid" in keys and "signature" not in keys:
        query += "&Signature=REDACTED"
    else:
        return request
    return request.replace(query=query)


def prepare(entry: Entry) -> Request:
    """The request to reissue for ``entry``."""
    if entry.service == "sqs" and entry.operation == "ReceiveMessage":
        return without_wait(entry.request)
    if entry.service == "s3":
        return _presigned(entry.request)
    return entry.request
