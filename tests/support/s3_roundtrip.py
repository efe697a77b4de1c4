"""Independent S3 client for the end-to-end tests: boto3, path-style, as
BuildKit's S3 cache uses Garage. Prints one JSON object; exits 1 on failure.

Usage: s3_roundtrip.py ENDPOINT BUCKET ACCESS_KEY_ID SECRET_ACCESS_KEY REGION OP [OBJECT]
  OP: roundtrip (PUT, GET compared, DELETE), put, get (prints the bytes' sha256)
"""

import hashlib
import json
import sys

from s3client import client


def main() -> int:
    endpoint, bucket, key_id, secret, region, op = sys.argv[1:7]
    obj = sys.argv[7] if len(sys.argv) > 7 else "e2e/roundtrip"
    s3 = client(endpoint, key_id, secret, region)
    body = b"buildkit cache layer " + bytes(range(256))
    result = {"op": op, "object": obj}
    try:
        if op in ("roundtrip", "put"):
            s3.put_object(Bucket=bucket, Key=obj, Body=body)
        if op in ("roundtrip", "get"):
            got = s3.get_object(Bucket=bucket, Key=obj)["Body"].read()
            result["sha256"] = hashlib.sha256(got).hexdigest()
            result["matches"] = got == body
        if op == "roundtrip":
            s3.delete_object(Bucket=bucket, Key=obj)
            listed = s3.list_objects_v2(Bucket=bucket, Prefix=obj).get("KeyCount", 0)
            result["deleted"] = listed == 0
    except Exception as e:  # report any failure as data for the test
        result["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(result))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
