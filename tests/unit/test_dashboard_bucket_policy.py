"""The dashboard bucket's policy (infra/cloudformation/serverless-scaling.yaml) serves the
site's files and the burst reports to anyone, and nothing else: no other key, no listing, no
writes. Evaluated as AWS evaluates a bucket policy for an anonymous request
(tests/iam_evaluation.py): LocalStack's open edition does not enforce bucket policies for
anonymous requests (measured: unsigned list, put and delete all succeed), nor does moto."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from deployment import dashboard_site
from tests.iam_evaluation import Request, is_allowed

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "infra" / "cloudformation" / "serverless-scaling.yaml"
BUCKET = "serverless-scaling-unit-dashboard-123456789012"
BUCKET_ARN = f"arn:aws:s3:::{BUCKET}"


class CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short forms (!Sub, !Ref, !GetAtt) as their long forms."""


for tag, name in (("!Sub", "Fn::Sub"), ("!Ref", "Ref"), ("!GetAtt", "Fn::GetAtt")):
    CloudFormationLoader.add_constructor(
        tag,
        lambda loader, node, name=name: {name: loader.construct_scalar(node)},  # type: ignore[misc]
    )


def resolved(value: Any) -> Any:
    """The policy as CloudFormation makes it for BUCKET (its only substitution)."""
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        return value["Fn::Sub"].replace("${DashboardBucket.Arn}", BUCKET_ARN)
    if isinstance(value, dict):
        return {k: resolved(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolved(v) for v in value]
    return value


@pytest.fixture(scope="module")
def policy() -> dict[str, Any]:
    template = yaml.load(TEMPLATE.read_text(), Loader=CloudFormationLoader)  # noqa: S506
    document: dict[str, Any] = resolved(
        template["Resources"]["DashboardBucketPolicy"]["Properties"]["PolicyDocument"]
    )
    return document


def uploaded_keys() -> list[str]:
    """Every key the deploy and the burst put into the bucket."""
    site = [file.key for file in dashboard_site.site_files(vendor={})]
    return [
        *site,
        *dashboard_site.VENDOR_FILES,
        dashboard_site.CONFIG_KEY,
        dashboard_site.REPORTS_INDEX_KEY,
        f"{dashboard_site.REPORTS_PREFIX}20261201T000000-abcdef.json",
    ]


def anyone(policy: dict[str, Any], action: str, resource: str) -> bool:
    return is_allowed(policy, Request(action, resource), anonymous=True)


@pytest.mark.parametrize("key", uploaded_keys())
def test_anyone_may_read_every_file_the_deploy_uploads(policy: dict[str, Any], key: str) -> None:
    assert anyone(policy, "s3:GetObject", f"{BUCKET_ARN}/{key}")


@pytest.mark.parametrize(
    "key",
    [
        "endpoints.json",
        "private/notes.txt",
        "index.html.bak",
        "vendor/other.js",
        "reports/index.html",
        ".env",
        "site/index.html",
    ],
)
def test_no_other_key_is_public(policy: dict[str, Any], key: str) -> None:
    assert not anyone(policy, "s3:GetObject", f"{BUCKET_ARN}/{key}")


@pytest.mark.parametrize(
    ("action", "resource"),
    [
        ("s3:ListBucket", BUCKET_ARN),
        ("s3:ListBucketVersions", BUCKET_ARN),
        ("s3:PutObject", f"{BUCKET_ARN}/index.html"),
        ("s3:PutObject", f"{BUCKET_ARN}/reports/evil.json"),
        ("s3:DeleteObject", f"{BUCKET_ARN}/index.html"),
        ("s3:PutObjectAcl", f"{BUCKET_ARN}/index.html"),
        ("s3:GetObjectAcl", f"{BUCKET_ARN}/index.html"),
        ("s3:GetObjectVersion", f"{BUCKET_ARN}/index.html"),
        ("s3:GetBucketPolicy", BUCKET_ARN),
        ("s3:PutBucketPolicy", BUCKET_ARN),
        ("s3:PutBucketWebsite", BUCKET_ARN),
        ("s3:DeleteBucket", BUCKET_ARN),
    ],
)
def test_anyone_may_neither_list_nor_write(
    policy: dict[str, Any], action: str, resource: str
) -> None:
    assert not anyone(policy, action, resource)


def test_every_public_key_is_one_the_deploy_uploads(policy: dict[str, Any]) -> None:
    """Nothing public by a name nobody uploads (a stale entry would wait for a file)."""
    keys = uploaded_keys()
    unused = [
        resource
        for statement in policy["Statement"]
        for resource in statement["Resource"]
        if not any(
            is_allowed(
                {"Statement": [{**statement, "Resource": resource}]},
                Request("s3:GetObject", f"{BUCKET_ARN}/{key}"),
                anonymous=True,
            )
            for key in keys
        )
    ]

    assert unused == []
