"""Least privilege per function, proven without a cloud that enforces IAM (LocalStack's open
edition does not): each function's real adapter code runs against moto, every AWS call it
makes is recorded, and its policy, rendered as the deploy renders it, must

- allow every one of those calls (and the calls the platform makes with the function's role:
  its logs, and for the worker the SQS trigger's and the lead's retry/dead-letter calls),
- deny the same calls on another queue, another secret, another namespace, another function,
- grant nothing that no call needs (every action on every resource of every statement is used).

Where moto can judge (SQS, whose requests it checks against the queue's ARN, and actions of
any service), the calls also run with the credentials of an IAM user holding exactly that
policy, under moto's IAM enforcement. The rest (resources of other services, condition keys)
is judged by tests/iam_evaluation.py; see its docstring for what moto cannot do.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto import settings as moto_settings

from chalicelib.cloudwatch_metrics import CloudWatchMetrics
from chalicelib.dashboard import DashboardService, MetricsWindow
from chalicelib.errors import DependencyUnavailable
from chalicelib.model import TaskMessage
from chalicelib.postgres_store import read_secret
from chalicelib.settings import Settings
from chalicelib.sqs_queue import SqsReceivedMessages, SqsTaskQueue
from deployment import function_policies
from deployment.function_policies import StageResources
from tests.iam_evaluation import Call, Request, authorization_request, is_allowed
from tests.lambda_zip import zip_of
from tests.unit.test_app_settings import TRIGGER

REPO = Path(__file__).resolve().parents[2]
REGION, ACCOUNT = "us-east-1", "123456789012"
STAGE = "unit"
NAMESPACE = "ServerlessScaling"
FUNCTIONS = {  # name in app.py -> as deployed
    "api_handler": f"serverless-scaling-{STAGE}",
    "worker": f"serverless-scaling-{STAGE}-worker",
    "whoami": f"serverless-scaling-{STAGE}-whoami",
    "reconciler": f"serverless-scaling-{STAGE}-reconciler",
}


@dataclass
class Cloud:
    """moto, with the stage's resources and their look-alikes of another stage."""

    session: boto3.session.Session
    task_queue_url: str
    dead_letter_queue_url: str
    other_queue_url: str
    secret_arn: str
    other_secret_arn: str
    mapping_uuid: str
    worker_arn: str
    other_function_arn: str
    calls: list[Call] = field(default_factory=list)

    def client(self, service: str, session: boto3.session.Session | None = None) -> Any:
        return (session or self.session).client(service, region_name=REGION)

    def resources(self) -> StageResources:
        return StageResources.of(
            {
                "TaskQueueArn": queue_arn(self.task_queue_url),
                "DeadLetterQueueArn": queue_arn(self.dead_letter_queue_url),
                "DatabaseSecretId": self.secret_arn,
            },
            NAMESPACE,
            FUNCTIONS["worker"],
        )

    def policy(self, function: str) -> dict[str, Any]:
        template = function_policies.policy_templates(REPO)[function]
        values = self.resources().placeholders(FUNCTIONS[function])
        return function_policies.render_policy(template, values)

    def requests(self) -> list[Request]:
        functions = {self.mapping_uuid: self.worker_arn}
        return [authorization_request(c, REGION, ACCOUNT, functions) for c in self.calls]


def queue_arn(url: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{url.rsplit('/', 1)[1]}"


def zipped_handler() -> bytes:
    return zip_of("def handler(event, context):\n    return {}\n")


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("MOTO_ACCOUNT_ID", ACCOUNT)
    with mock_aws():
        session = boto3.session.Session(
            aws_access_key_id="setup", aws_secret_access_key="setup", region_name=REGION
        )
        sqs = session.client("sqs")
        urls = [
            sqs.create_queue(QueueName=f"serverless-scaling-{STAGE}-{name}")["QueueUrl"]
            for name in ("tasks", "tasks-dlq", "other-tasks")
        ]
        secrets = session.client("secretsmanager")
        arns = [
            secrets.create_secret(Name=f"{name}/database/app", SecretString='{"password": "x"}')[
                "ARN"
            ]
            for name in (STAGE, "other")
        ]
        iam = session.client("iam")
        role = iam.create_role(
            RoleName="fn", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17"})
        )["Role"]["Arn"]
        awslambda = session.client("lambda")
        functions = [
            awslambda.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=role,
                Handler="handler.handler",
                Code={"ZipFile": zipped_handler()},
            )["FunctionArn"]
            for name in (FUNCTIONS["worker"], "another-function")
        ]
        awslambda.put_function_concurrency(
            FunctionName=FUNCTIONS["worker"], ReservedConcurrentExecutions=10
        )
        mapping = awslambda.create_event_source_mapping(
            EventSourceArn=queue_arn(urls[0]),
            FunctionName=FUNCTIONS["worker"],
            BatchSize=10,
            Enabled=False,  # moto would invoke the worker inside SendMessage (through Docker)
        )["UUID"]
        recording = Cloud(session, *urls, *arns, mapping, *functions)
        yield recording


@pytest.fixture
def record(cloud: Cloud) -> Callable[[], boto3.session.Session]:
    """A session whose every call is recorded in cloud.calls, as the function's code makes it."""

    def recorded() -> boto3.session.Session:
        session = boto3.session.Session(
            aws_access_key_id="fn", aws_secret_access_key="fn", region_name=REGION
        )

        def on_call(params: dict[str, Any], model: Any, **_: Any) -> None:
            cloud.calls.append(Call(model.service_model.service_name, model.name, dict(params)))

        session.events.register("provide-client-params", on_call)
        return session

    return recorded


def app_settings(cloud: Cloud) -> Settings:
    return Settings.from_env(
        {
            "TASK_QUEUE_URL": cloud.task_queue_url,
            "DEAD_LETTER_QUEUE_URL": cloud.dead_letter_queue_url,
            "TASK_QUEUE_NAME": cloud.task_queue_url.rsplit("/", 1)[1],
            "DEAD_LETTER_QUEUE_NAME": cloud.dead_letter_queue_url.rsplit("/", 1)[1],
            "DATABASE_SECRET_ID": cloud.secret_arn,
            "TASK_MAX_RECEIVES": "5",
            "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
            "POWERTOOLS_SERVICE_NAME": "serverless-scaling",
            "APP_STAGE": STAGE,
            "WORKER_FUNCTION_NAME": FUNCTIONS["worker"],
            "DASHBOARD_ORIGIN": "http://dashboard.example",
            "EVENT_SOURCE_MAPPING_METRICS_NAMESPACE": "",
            "DATABASE_PROXY_ENDPOINT": "",
            "TASK_RETRY_BACKOFF_BASE_SECONDS": "1",
            "TASK_RETRY_BACKOFF_MAX_SECONDS": "30",
            "METRICS_SINK": "put_metric_data",
        }
    )


def a_task() -> TaskMessage:
    return TaskMessage(uuid.uuid4(), "echo", {"n": 1}, datetime.now(UTC), None, "corr")


# --- what each function's code calls --------------------------------------------------------


def publish_metrics(session: boto3.session.Session) -> None:
    metrics = CloudWatchMetrics(
        session.client("cloudwatch"), NAMESPACE, {"service": "s", "stage": STAGE}
    )
    metrics.add("TasksAccepted", 1, "Count")
    metrics.flush()


def write_logs(cloud: Cloud, session: boto3.session.Session, function: str) -> None:
    """What Lambda does with the function's role: its log group and a stream per environment."""
    logs = session.client("logs")
    group = f"/aws/lambda/{FUNCTIONS[function]}"
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=group)  # moto makes one with the function
    logs.create_log_stream(logGroupName=group, logStreamName="2026/12/01/[$LATEST]abc")
    logs.put_log_events(
        logGroupName=group,
        logStreamName="2026/12/01/[$LATEST]abc",
        logEvents=[{"timestamp": 0, "message": "START"}],
    )


def run_api_handler(cloud: Cloud, session: boto3.session.Session) -> None:
    """POST /tasks(/batch), GET /status and /health, GET /metrics: the adapters behind them."""
    settings = app_settings(cloud)
    sqs = session.client("sqs")
    queue = SqsTaskQueue(sqs, settings.task_queue_url, settings.dead_letter_queue_url)
    assert queue.send([a_task() for _ in range(12)]) == []  # two SendMessageBatch calls
    queue.depth()
    queue.dead_letter_depth()
    read_secret(session.client("secretsmanager"), settings.database_secret_id)
    publish_metrics(session)
    dashboard = DashboardService(
        session.client("cloudwatch"), session.client("lambda"), sqs, queue, settings
    )
    answer = dashboard.metrics(MetricsWindow.parse({"minutes": "1", "period": "60"}))
    assert answer["settings"]["reserved_concurrency"] == 10  # it read the worker's trigger
    write_logs(cloud, session, "api_handler")


def run_worker(cloud: Cloud, session: boto3.session.Session) -> None:
    """The worker's code (its store's secret, its metrics, the retry path of
    chalicelib/sqs_queue.SqsReceivedMessages: a backoff, a requeue with a delay, a permanent
    failure parked in the dead-letter queue) and the SQS trigger's calls with the worker's
    role."""
    read_secret(session.client("secretsmanager"), cloud.secret_arn)
    publish_metrics(session)
    sqs = session.client("sqs")
    messages = SqsReceivedMessages(sqs, cloud.task_queue_url, cloud.dead_letter_queue_url)
    attributes = {"correlation_id": {"dataType": "String", "stringValue": "corr"}}
    messages.requeue(a_task().body(), attributes, 0)  # visible at once, for the receive below
    sqs.get_queue_attributes(QueueUrl=cloud.task_queue_url, AttributeNames=["All"])
    received = sqs.receive_message(QueueUrl=cloud.task_queue_url, MaxNumberOfMessages=10)
    handle = received["Messages"][0]["ReceiptHandle"]
    messages.retry_later([(handle, 5)])
    messages.dead_letter("not a task message", attributes, "not a task message")
    sqs.delete_message_batch(
        QueueUrl=cloud.task_queue_url, Entries=[{"Id": "0", "ReceiptHandle": handle}]
    )
    write_logs(cloud, session, "worker")


def run_reconciler(cloud: Cloud, session: boto3.session.Session) -> None:
    """chalicelib/reconciler.py's calls: the queue's depth and redelivery settings, a resend
    of lost tasks through the queue port; the store's secret, metrics."""
    queue = SqsTaskQueue(session.client("sqs"), cloud.task_queue_url, cloud.dead_letter_queue_url)
    queue.depth()
    queue.redelivery_settings()
    assert queue.send([a_task()]) == []
    read_secret(session.client("secretsmanager"), cloud.secret_arn)
    publish_metrics(session)
    write_logs(cloud, session, "reconciler")


def run_whoami(cloud: Cloud, session: boto3.session.Session) -> None:
    from chalicelib import runtime_info

    runtime_info.describe_environment()  # no AWS call
    write_logs(cloud, session, "whoami")


RUNS: dict[str, Callable[[Cloud, boto3.session.Session], None]] = {
    "api_handler": run_api_handler,
    "worker": run_worker,
    "reconciler": run_reconciler,
    "whoami": run_whoami,
}

# The same kind of request, on what belongs to someone else: each must be denied.
OUTSIDE: dict[str, Callable[[Cloud], list[Request]]] = {
    "another queue": lambda c: [
        Request(f"sqs:{a}", queue_arn(c.other_queue_url))
        for a in ("SendMessage", "GetQueueAttributes", "ReceiveMessage", "DeleteMessage")
    ],
    "another secret": lambda c: [Request("secretsmanager:GetSecretValue", c.other_secret_arn)],
    "another namespace": lambda c: [
        Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "AWS/Lambda"})
    ],
    "a namespace left out": lambda c: [Request("cloudwatch:PutMetricData", "*")],
    "another function": lambda c: [
        Request("lambda:GetFunctionConcurrency", c.other_function_arn),
        Request(
            "lambda:GetEventSourceMapping",
            f"arn:aws:lambda:{REGION}:{ACCOUNT}:event-source-mapping:{uuid.uuid4()}",
            {"lambda:FunctionArn": c.other_function_arn},
        ),
        Request("lambda:InvokeFunction", c.worker_arn),
    ],
    "another log group": lambda c: [
        Request(
            "logs:PutLogEvents",
            f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/other:log-stream:s",
        )
    ],
    "a write it never makes": lambda c: [
        Request("sqs:PurgeQueue", queue_arn(c.task_queue_url)),
        Request("sqs:DeleteQueue", queue_arn(c.task_queue_url)),
        Request("secretsmanager:PutSecretValue", c.secret_arn),
        Request("cloudwatch:DeleteAlarms", "*"),
        Request("iam:PassRole", "*"),
    ],
}


def unused_grants(policy: dict[str, Any], needed: list[Request]) -> list[str]:
    """Each (statement, action, resource) of `policy` that no needed request uses."""
    unused = []
    for statement in policy["Statement"]:
        actions = (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
        resources = (
            [statement["Resource"]]
            if isinstance(statement["Resource"], str)
            else statement["Resource"]
        )
        for action in actions:
            for resource in resources:
                narrowed = {"Statement": [{**statement, "Action": action, "Resource": resource}]}
                if not any(is_allowed(narrowed, request) for request in needed):
                    unused.append(f"{statement.get('Sid')}: {action} on {resource}")
    return unused


# --- the tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("function", sorted(RUNS))
def test_the_policy_allows_every_call_the_function_makes(
    cloud: Cloud, record: Callable[[], boto3.session.Session], function: str
) -> None:
    RUNS[function](cloud, record())

    policy = cloud.policy(function)
    denied = [str(r) for r in cloud.requests() if not is_allowed(policy, r)]

    assert cloud.calls, "the function's code made no call: the recorder saw nothing"
    assert denied == []


@pytest.mark.parametrize("function", sorted(RUNS))
def test_the_policy_grants_nothing_the_function_does_not_use(
    cloud: Cloud, record: Callable[[], boto3.session.Session], function: str
) -> None:
    RUNS[function](cloud, record())

    assert unused_grants(cloud.policy(function), cloud.requests()) == []


@pytest.mark.parametrize("function", sorted(RUNS))
def test_the_policy_denies_what_belongs_to_others(cloud: Cloud, function: str) -> None:
    policy = cloud.policy(function)

    allowed = [
        f"{outside}: {request}"
        for outside, requests in OUTSIDE.items()
        for request in requests(cloud)
        if is_allowed(policy, request)
    ]

    assert allowed == []


# --- the same, judged by moto's own IAM enforcement where it can ------------------------------


@pytest.fixture
def as_function(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Any]:
    """as_function(name) -> a session with the keys of an IAM user holding exactly that
    function's policy; from then on moto authorizes every request."""

    def session_for(function: str) -> boto3.session.Session:
        iam = cloud.client("iam")
        user = f"{function}-{uuid.uuid4().hex[:6]}"
        iam.create_user(UserName=user)
        iam.put_user_policy(
            UserName=user, PolicyName=function, PolicyDocument=json.dumps(cloud.policy(function))
        )
        key = iam.create_access_key(UserName=user)["AccessKey"]
        monkeypatch.setattr(moto_settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
        return boto3.session.Session(
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            region_name=REGION,
        )

    return session_for


def access_denied(call: Callable[[], Any]) -> bool:
    try:
        call()
    except ClientError as e:
        # moto answers the JSON protocols' denials with an XML body botocore cannot parse: the
        # error code then reads "403". The status is what both forms share.
        status: int = e.response["ResponseMetadata"]["HTTPStatusCode"]
        return status == 403
    return False


def test_moto_lets_the_api_enqueue_on_its_queue_only(cloud: Cloud, as_function: Any) -> None:
    sqs = cloud.client("sqs", as_function("api_handler"))
    own = SqsTaskQueue(sqs, cloud.task_queue_url, cloud.dead_letter_queue_url)
    other = SqsTaskQueue(sqs, cloud.other_queue_url, cloud.other_queue_url)
    tasks = [a_task() for _ in range(3)]

    # moto authorizes SendMessageBatch as "sqs:SendMessageBatch", an action AWS does not have
    # (AWS authorizes it as sqs:SendMessage, which the evaluator above checks): here the
    # adapter's batch is refused on every queue, and SendMessage stands in for it.
    sqs.send_message(QueueUrl=cloud.task_queue_url, MessageBody="{}")
    assert access_denied(lambda: sqs.send_message(QueueUrl=cloud.other_queue_url, MessageBody="{}"))
    own.depth()
    own.dead_letter_depth()
    assert other.send(tasks) == [t.task_id for t in tasks]  # refused: nothing sent
    with pytest.raises(DependencyUnavailable, match="AccessDenied"):
        other.depth()
    assert access_denied(
        lambda: sqs.receive_message(QueueUrl=cloud.task_queue_url)  # the worker's, not its own
    )
    assert access_denied(lambda: sqs.purge_queue(QueueUrl=cloud.task_queue_url))


def test_moto_lets_the_worker_consume_its_queue_only(cloud: Cloud, as_function: Any) -> None:
    cloud.client("sqs").send_message(QueueUrl=cloud.task_queue_url, MessageBody="{}")
    sqs = cloud.client("sqs", as_function("worker"))

    received = sqs.receive_message(QueueUrl=cloud.task_queue_url)["Messages"]
    sqs.change_message_visibility(
        QueueUrl=cloud.task_queue_url,
        ReceiptHandle=received[0]["ReceiptHandle"],
        VisibilityTimeout=1,
    )
    sqs.delete_message(QueueUrl=cloud.task_queue_url, ReceiptHandle=received[0]["ReceiptHandle"])
    sqs.send_message(QueueUrl=cloud.dead_letter_queue_url, MessageBody="{}")

    assert access_denied(lambda: sqs.receive_message(QueueUrl=cloud.other_queue_url))
    assert access_denied(lambda: sqs.purge_queue(QueueUrl=cloud.task_queue_url))
    assert access_denied(lambda: sqs.receive_message(QueueUrl=cloud.dead_letter_queue_url))


def test_moto_denies_whoami_everything_but_its_logs(cloud: Cloud, as_function: Any) -> None:
    session = as_function("whoami")

    assert access_denied(lambda: cloud.client("sqs", session).list_queues())
    assert access_denied(
        lambda: cloud.client("secretsmanager", session).get_secret_value(SecretId=cloud.secret_arn)
    )
    assert access_denied(
        lambda: cloud.client("cloudwatch", session).put_metric_data(
            Namespace=NAMESPACE, MetricData=[{"MetricName": "m", "Value": 1}]
        )
    )


# --- every function has its policy ----------------------------------------------------------


@pytest.fixture(scope="module")
def app_module() -> ModuleType:
    config = json.loads((REPO / ".chalice" / "config.json").read_text())
    environment = config["stages"]["local"]["environment_variables"]
    with pytest.MonkeyPatch.context() as env:
        for name, value in {**environment, **TRIGGER}.items():
            env.setenv(name, value)
        return importlib.import_module("app")


def app_functions(app_module: ModuleType) -> set[str]:
    """Every Lambda function Chalice makes of the app: the REST API's, pure functions, and
    those behind event sources (SQS, schedules, ...)."""
    app = app_module.app
    functions = {"api_handler"} if app.routes else set()
    functions |= {f.name for f in app.pure_lambda_functions}
    functions |= {source.name for source in app.event_sources}
    return functions


def test_every_function_of_the_app_has_a_policy_template(app_module: ModuleType) -> None:
    templates = set(function_policies.policy_templates(REPO))

    missing = app_functions(app_module) - templates

    assert missing == set(), f"add .chalice/policies/FUNCTION.json for {sorted(missing)}"
    # A template for a function app.py does not (yet) define is allowed only for the lead's
    # scheduled reconciler, which lands beside this test.
    assert templates - app_functions(app_module) <= {"reconciler"}


def test_every_policy_template_has_a_proof_here() -> None:
    assert set(function_policies.policy_templates(REPO)) == set(RUNS)


def test_the_local_stage_names_each_functions_policy_and_generates_none() -> None:
    stage = json.loads((REPO / ".chalice" / "config.json").read_text())["stages"]["local"]

    assert stage["autogen_policy"] is False
    for function in function_policies.policy_templates(REPO):
        assert stage["lambda_functions"][function]["iam_policy_file"] == (
            function_policies.rendered_file_name("local", function)
        )


def test_the_api_reads_the_worker_s_trigger_also_on_its_snapstart_alias(cloud: Cloud) -> None:
    # With SnapStart the mapping invokes the worker's alias (infra/deployment/snapstart.py).
    mapping = f"arn:aws:lambda:{REGION}:{ACCOUNT}:event-source-mapping:{uuid.uuid4()}"

    def read(function_arn: str) -> Request:
        return Request(
            "lambda:GetEventSourceMapping", mapping, {"lambda:FunctionArn": function_arn}
        )

    policy = cloud.policy("api_handler")

    assert is_allowed(policy, read(f"{cloud.worker_arn}:live"))
    assert not is_allowed(policy, read(f"{cloud.other_function_arn}:live"))
    assert not is_allowed(policy, read(f"{cloud.worker_arn}-other"))
