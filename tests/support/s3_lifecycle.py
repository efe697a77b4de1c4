"""Independent S3 client for the lifecycle tests: boto3 reads and writes a
bucket's lifecycle configuration, so what garage-init wrote is checked by
code that is not garage-init's. Prints one JSON object; exits 1 on failure.

Usage: s3_lifecycle.py ENDPOINT BUCKET ACCESS_KEY_ID SECRET_ACCESS_KEY REGION OP [RULES_JSON]
  OP: get (prints {"rules": [...]}, [] when the bucket has none),
      put (writes RULES_JSON, a list of boto3 rule dicts)
"""

import json
import sys

from s3client import client


def main() -> int:
    endpoint, bucket, key_id, secret, region, op = sys.argv[1:7]
    s3 = client(endpoint, key_id, secret, region)
    result = {"op": op}
    try:
        if op == "get":
            try:
                result["rules"] = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
            except s3.exceptions.ClientError as e:
                if e.response["ResponseMetadata"]["HTTPStatusCode"] != 404:
                    raise
                result["rules"] = []
        elif op == "put":
            rules = json.loads(sys.argv[7])
            s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": rules})
        else:
            raise ValueError(f"unknown op {op}")
    except Exception as e:  # report any failure as data for the test
        result["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(result, default=str))
        return 1
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
