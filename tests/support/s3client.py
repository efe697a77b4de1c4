"""The boto3 client the tests' scripts share: path-style, as BuildKit's S3
cache uses Garage, and no retries (a failure is the test's to see)."""

import boto3
from botocore.config import Config


def client(endpoint: str, key_id: str, secret: str, region: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name=region,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )
