"""Independent S3 client for the cache tests: boto3 writes a BuildKit-shaped
cache (blobs named by the sha256 of their bytes, manifests in BuildKit's JSON
format, written after their blobs as BuildKit does), lists and deletes.
Prints one JSON object; exits 1 on failure.

Usage: s3_buildkit.py ENDPOINT BUCKET ACCESS_KEY_ID SECRET_ACCESS_KEY REGION OP [ARG]
  OP: put ARG={"prefix": "", "blobs": {"label": size}, "manifests": {"name": ["label", ...]},
               "objects": {"key": "text"}, "sizes": {"label": size}}
        Blobs are uploaded, then manifests; a label a manifest lists that "blobs" lacks is
        never uploaded (a missing blob, or one uploaded earlier: "sizes" gives its size, so
        that its digest is the same). Prints {"digests": {"label": "sha256:..."}}.
      touch ARG=["key", ...]: copies each object onto itself, as BuildKit's touch_refresh does
      list (prints {"objects": [{"key", "size", "last_modified"}]}, every object of the bucket)
      delete ARG=["key", ...]
"""

import hashlib
import json
import sys

from s3client import client


def blob_bytes(label: str, size: int) -> bytes:
    seed = hashlib.sha256(label.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


def digest_of(label: str, size: int) -> str:
    return "sha256:" + hashlib.sha256(blob_bytes(label, size)).hexdigest()


def manifest(labels, digests, sizes) -> bytes:
    """A cache manifest as BuildKit v0.11 writes it: one layer per blob, each
    the parent of the next, and one record per layer."""
    layers, records = [], []
    for i, label in enumerate(labels):
        layers.append({
            "blob": digests[label],
            "parent": i - 1,
            "annotations": {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "diffID": "sha256:" + hashlib.sha256(("diff " + label).encode()).hexdigest(),
                "size": sizes.get(label, 0),
                "createdAt": "2026-12-02T04:02:42.489589539Z",
            },
        })
        record = {"layers": [{"layer": i, "createdAt": "2026-12-02T04:02:42.499490951Z"}],
                  "digest": "sha256:" + hashlib.sha256(("record " + label).encode()).hexdigest()}
        if i > 0:
            record["inputs"] = [[{"link": i - 1}]]
        records.append(record)
    return json.dumps({"layers": layers, "records": records}, separators=(",", ":")).encode()


def main() -> int:
    endpoint, bucket, key_id, secret, region, op = sys.argv[1:7]
    arg = json.loads(sys.argv[7]) if len(sys.argv) > 7 else None
    s3 = client(endpoint, key_id, secret, region)
    result = {"op": op}
    try:
        if op == "put":
            prefix = arg.get("prefix", "")
            sizes = {**arg.get("sizes", {}), **arg.get("blobs", {})}
            listed = {label for labels in arg.get("manifests", {}).values() for label in labels}
            digests = {label: digest_of(label, sizes.get(label, 64)) for label in set(sizes) | listed}
            for label, size in arg.get("blobs", {}).items():
                s3.put_object(Bucket=bucket, Key=prefix + "blobs/" + digests[label], Body=blob_bytes(label, size))
            for name, labels in arg.get("manifests", {}).items():
                body = manifest(labels, digests, sizes)
                s3.put_object(Bucket=bucket, Key=prefix + "manifests/" + name, Body=body,
                              ContentType="application/octet-stream")
            for key, text in arg.get("objects", {}).items():
                s3.put_object(Bucket=bucket, Key=key, Body=text.encode())
            result["digests"] = digests
        elif op == "list":
            objects = []
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for o in page.get("Contents", []):
                    objects.append({"key": o["Key"], "size": o["Size"], "last_modified": o["LastModified"].isoformat()})
            result["objects"] = objects
        elif op == "touch":
            for key in arg:
                s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": bucket, "Key": key},
                               Metadata={"updated-at": "now"}, MetadataDirective="REPLACE")
        elif op == "delete":
            for key in arg:
                s3.delete_object(Bucket=bucket, Key=key)
        else:
            raise ValueError(f"unknown op {op}")
    except Exception as e:  # report any failure as data for the test
        result["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(result))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
