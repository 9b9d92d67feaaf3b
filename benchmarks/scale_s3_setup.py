"""Admin side of the S3-compatible server for benchmarks/scale_s3_walkthrough.sh: a user with an access key,
a bucket, the photos uploaded to s3://photos/shoot/. Prints `export AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=…`
for the user's shell (eval it; nothing is shown).

Usage: python scale_s3_setup.py ENDPOINT FOLDER
"""

import json
import sys
from pathlib import Path

import boto3

endpoint, folder = sys.argv[1], Path(sys.argv[2])
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="admin", aws_secret_access_key="admin")
iam.create_user(UserName="photographer")
key = iam.create_access_key(UserName="photographer")["AccessKey"]
iam.put_user_policy(UserName="photographer", PolicyName="s3", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
s3.create_bucket(Bucket="photos")
for f in sorted(folder.glob("*.jpg")):
    s3.upload_file(str(f), "photos", f"shoot/{f.name}")
print(f"export AWS_ACCESS_KEY_ID={key['AccessKeyId']} AWS_SECRET_ACCESS_KEY={key['SecretAccessKey']}")
