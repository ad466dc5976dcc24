"""What the local deploy makes and what the aws stage's stack must make too: one list, read by
tests/unit/test_aws_stack.py, which derives the local side (serverless-scaling.yaml, and the
resources `chalice package --stage local` describes, which `chalice deploy` makes by API) and
checks both directions: every local resource is on this list, and the AWS stack (its SAM
template as CloudFormation expands it) has everything on it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum


class MadeBy(Enum):
    STACK = "infra/cloudformation/serverless-scaling.yaml"
    CHALICE = "chalice deploy --stage local"
    DEPLOY_API = "infra/deployment (API calls after chalice deploy)"
    LOCAL_CLOUD = "scripts/localcloud up (the local cloud's stand-in)"


@dataclass(frozen=True)
class Counterpart:
    purpose: str
    made_by: MadeBy
    resource_type: str  # as CloudFormation has it on AWS
    count: int = 1


RESOURCES: tuple[Counterpart, ...] = (
    Counterpart("the task queue and its dead-letter queue", MadeBy.STACK, "AWS::SQS::Queue", 2),
    Counterpart("the dashboard's bucket", MadeBy.STACK, "AWS::S3::Bucket"),
    Counterpart("its public-read policy", MadeBy.STACK, "AWS::S3::BucketPolicy"),
    Counterpart("the functions' database secret", MadeBy.STACK, "AWS::SecretsManager::Secret"),
    Counterpart("dead letters, oldest message age", MadeBy.STACK, "AWS::CloudWatch::Alarm", 2),
    Counterpart("api_handler, worker, reconciler, whoami", MadeBy.CHALICE,
                "AWS::Lambda::Function", 4),
    Counterpart("a role per function", MadeBy.CHALICE, "AWS::IAM::Role", 4),
    Counterpart("the worker's SQS trigger", MadeBy.CHALICE, "AWS::Lambda::EventSourceMapping"),
    Counterpart("the REST API", MadeBy.CHALICE, "AWS::ApiGateway::RestApi"),
    Counterpart("its deployment", MadeBy.CHALICE, "AWS::ApiGateway::Deployment"),
    Counterpart("its stage `api`", MadeBy.CHALICE, "AWS::ApiGateway::Stage"),
    Counterpart("API Gateway and the schedule may invoke", MadeBy.CHALICE,
                "AWS::Lambda::Permission", 2),
    Counterpart("the reconciler's schedule", MadeBy.CHALICE, "AWS::Events::Rule"),
    Counterpart("the write routes' key", MadeBy.DEPLOY_API, "AWS::ApiGateway::ApiKey"),
    Counterpart("their usage plan", MadeBy.DEPLOY_API, "AWS::ApiGateway::UsagePlan"),
    Counterpart("the key in the plan", MadeBy.DEPLOY_API, "AWS::ApiGateway::UsagePlanKey"),
    Counterpart("the worker's published version", MadeBy.DEPLOY_API, "AWS::Lambda::Version"),
    Counterpart("its alias `live`", MadeBy.DEPLOY_API, "AWS::Lambda::Alias"),
    Counterpart("PostgreSQL", MadeBy.LOCAL_CLOUD, "AWS::RDS::DBInstance"),
    Counterpart("PgBouncer", MadeBy.LOCAL_CLOUD, "AWS::RDS::DBProxy"),
    Counterpart("PgBouncer's server pool", MadeBy.LOCAL_CLOUD, "AWS::RDS::DBProxyTargetGroup"),
)  # fmt: skip


def expected(made_by: set[MadeBy] | None = None) -> Counter[str]:
    """Resource type -> how many, of the entries made by `made_by` (all by default)."""
    counts: Counter[str] = Counter()
    for entry in RESOURCES:
        if made_by is None or entry.made_by in made_by:
            counts[entry.resource_type] += entry.count
    return counts
