"""A stage's whole deploy to the local cloud, and its undoing.

deploy: the infrastructure stack (CloudFormation) -> database migrations -> the stack's outputs
and the local cloud's coordinates into the stage's environment in .chalice/config.json ->
`chalice deploy` -> what Chalice cannot set on the SQS mapping (ReportBatchItemFailures) -> one
run of the reconciler (tasks whose messages a restarted local cloud lost are sent again now,
not at its next scheduled minute) -> the dashboard's site into its bucket -> the local URLs in
endpoints.json.
Every step is idempotent, so a redeploy after a code change only redoes what changed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from chalicelib import settings as app_settings
from chalicelib.errors import SettingMissing
from deployment import (
    api_access,
    chalice_stage,
    dashboard_site,
    database,
    function_policies,
    migrations,
    snapstart,
    stack,
)
from deployment.chalice_stage import PROJECT_ROOT, STAGE, Deployed, DeployError
from localcloud import endpoints
from localcloud.aws import client_for_running, s3_website_url
from localcloud.settings import EVENT_SOURCE_MAPPING_METRICS_NAMESPACE, Settings

logger = logging.getLogger(__name__)

WORKER = "worker"  # the SQS-triggered function's name in app.py
RECONCILER = "reconciler"  # the scheduled function that resends what the queue lost
VISIBILITY_PER_TIMEOUT = 6  # AWS: queue visibility timeout >= 6 x the function's timeout
MAX_RECEIVE_COUNT = 5
# The stack's outputs, as the functions' environment variables (chalicelib/settings.py).
OUTPUT_VARIABLES = {
    "TaskQueueName": app_settings.TASK_QUEUE_NAME,
    "TaskQueueUrl": app_settings.TASK_QUEUE_URL,
    "DeadLetterQueueUrl": app_settings.DEAD_LETTER_QUEUE_URL,
    "DeadLetterQueueName": app_settings.DEAD_LETTER_QUEUE_NAME,
    "Stage": app_settings.APP_STAGE,
    "MaxReceiveCount": app_settings.TASK_MAX_RECEIVES,
    "DatabaseSecretId": app_settings.DATABASE_SECRET_ID,
}
PARTIAL_BATCH_RESPONSES = ["ReportBatchItemFailures"]

T = TypeVar("T")


@dataclass
class StageDeployment:
    deployed: Deployed
    outputs: dict[str, str]
    migrations_applied: list[str]
    dashboard_url: str
    api_key: str  # what clients of the write routes send as x-api-key
    database_proxy_endpoint: str = ""  # "": the functions connect straight to PostgreSQL
    step_seconds: dict[str, float] = field(default_factory=dict)


def running_cloud(cfg: Settings) -> dict[str, Any]:
    running = endpoints.load(cfg.endpoints_file)
    if "localstack" not in running or "postgres" not in running:
        raise DeployError(
            f"the local cloud is not up ({cfg.endpoints_file} has no LocalStack/PostgreSQL): "
            "run scripts/localcloud up"
        )
    return running


def check_stage_settings(project: Path, stage: str) -> None:
    """The trigger's settings (WORKER_* in the stage's environment_variables) as the app will
    read them, before anything is created: a bad value stops the deploy with what to fix."""
    environment = chalice_stage.stage_config(project, stage).get("environment_variables", {})
    try:
        # The queue's name comes from the stack, later: any name does for this check.
        app_settings.WorkerTrigger.from_env({app_settings.TASK_QUEUE_NAME: "-", **environment})
        app_settings.Backoff.from_env(environment)
    except SettingMissing as e:
        raise DeployError(f"{chalice_stage.config_path(project)}, stage {stage!r}: {e}") from e


def api_key(cfg: Settings) -> str:
    """The write routes' API key `scripts/deploy` made, e.g. for `KEY=$(scripts/api-key)`."""
    running = running_cloud(cfg)
    if "api_key" not in running.get("api", {}):
        raise DeployError("the app is not deployed to this local cloud: run scripts/deploy")
    key: str = running["api"]["api_key"]
    return key


def api_url(cfg: Settings) -> str:
    """The local URL of the API `scripts/deploy` deployed, e.g. for `API=$(scripts/api-url)`."""
    running = running_cloud(cfg)
    if "api" not in running:
        raise DeployError("the app is not deployed to this local cloud: run scripts/deploy")
    url: str = running["api"]["url"]
    return url


def visibility_timeout(worker_timeout: int, requested: int | None) -> int:
    """6 x the worker's timeout unless a stage asks for less (tests, to reach the DLQ fast);
    never below the timeout itself, which AWS refuses."""
    if requested is None:
        return VISIBILITY_PER_TIMEOUT * worker_timeout
    if requested < worker_timeout:
        raise DeployError(
            f"visibility timeout {requested} s is below the worker's timeout {worker_timeout} s:"
            " a message would reappear while its batch still runs; raise it or lower the "
            "worker's lambda_timeout in .chalice/config.json"
        )
    if requested < VISIBILITY_PER_TIMEOUT * worker_timeout:
        logger.warning(
            "visibility timeout %d s is under %d x the worker's timeout (%d s), AWS's advice",
            requested,
            VISIBILITY_PER_TIMEOUT,
            worker_timeout,
        )
    return requested


@contextmanager
def _step(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.monotonic()
    logger.info("== %s", name)
    yield
    timings[name] = time.monotonic() - started


def deploy(
    cfg: Settings,
    project: Path = PROJECT_ROOT,
    stage: str = STAGE,
    *,
    visibility_timeout_seconds: int | None = None,
    record: bool = True,
    database_proxy: bool = True,
) -> StageDeployment:
    """Deploy `stage` of the app in `project`; `record` puts its URLs in endpoints.json.
    `database_proxy`: the functions connect through the local cloud's proxy (RDS Proxy's
    stand-in), else straight to PostgreSQL (to show what the proxy prevents)."""
    running = running_cloud(cfg)
    check_stage_settings(project, stage)
    timings: dict[str, float] = {}
    worker_timeout = chalice_stage.function_timeout(project, stage, WORKER)
    visibility = visibility_timeout(worker_timeout, visibility_timeout_seconds)

    with _step(timings, f"infrastructure stack {stack.stack_name(stage)}"):
        outputs = stack.deploy_stack(
            client_for_running(running, "cloudformation"),
            stack.stack_name(stage),
            stack.TEMPLATE_PATH.read_text(),
            {
                "Stage": stage,
                "VisibilityTimeoutSeconds": str(visibility),
                "MaxReceiveCount": str(MAX_RECEIVE_COUNT),
                "DatabaseHost": running["postgres"]["host"],
                "DatabasePort": str(running["postgres"]["port"]),
                "DatabaseName": running["postgres"]["dbname"],
                "AppDatabaseRole": database.app_role_name(stage),
            },
        )

    with _step(timings, "database migrations (as the owner), the functions' role"):
        owner = database.conninfo(running)  # the master user secret, as RDS makes one
        applied = migrations.apply_migrations(owner)
        logger.info("applied %s", ", ".join(applied) if applied else "nothing: up to date")
        # The functions' own secret (DATABASE_SECRET_ID): its password becomes the role's.
        database.ensure_app_role(owner, database.secret(running, outputs["DatabaseSecretId"]))

    website_url = s3_website_url(running, outputs["DashboardBucketName"])
    environment = {
        **{variable: outputs[key] for key, variable in OUTPUT_VARIABLES.items()},
        **local_cloud_environment(project, stage, website_url),
        app_settings.DATABASE_PROXY_ENDPOINT: database_proxy_endpoint(running, database_proxy),
        **database_metric_names(running, database_proxy),
    }
    if chalice_stage.write_stage_environment(project, stage, environment):
        logger.info("stack outputs written to the stage's environment in .chalice/config.json")
    if chalice_stage.write_function_policies(
        project, stage, render_function_policies(project, stage, outputs)
    ):
        logger.info("each function's own policy named in .chalice/config.json (no autogen)")

    deployed_record = project / ".chalice" / "deployed" / f"{stage}.json"
    if deployed_record.exists() and not recorded_api_exists(running, deployed_record):
        # A restarted LocalStack kept nothing of what Chalice recorded: deploy afresh.
        logger.info("forgetting %s: it describes an earlier LocalStack", deployed_record)
        deployed_record.unlink()
    if deployed_record.exists():
        snapstart.hand_back_mappings(
            client_for_running(running, "lambda"), json.loads(deployed_record.read_text())
        )
    with _step(timings, f"chalice deploy --stage {stage}"):
        deployed = chalice_stage.deploy_stage(running, project, stage)
    snapstart.remove_stray_mappings(
        client_for_running(running, "lambda"), deployed.event_source_mappings[WORKER]
    )

    with _step(timings, "API key and usage plan of the write routes"):
        access = api_access.ensure_api_access(
            client_for_running(running, "apigateway"),
            api_access.access_name(chalice_stage.app_name(project), stage),
            deployed.rest_api_id,
            chalice_stage.api_gateway_stage(project, stage),
        )

    with _step(timings, "worker: SnapStart (a published version, the mapping on its alias)"):
        snapstart.apply(
            client_for_running(running, "lambda"),
            chalice_stage.function_name(project, stage, WORKER),
            deployed.event_source_mappings[WORKER],
        )

    with _step(timings, "SQS mapping: partial batch responses"):
        enable_partial_batch_responses(
            client_for_running(running, "lambda"), deployed.event_source_mappings[WORKER]
        )

    with _step(timings, "reconciler: resend what the queue lost"):
        reconciled = run_reconciler(
            client_for_running(running, "lambda"),
            chalice_stage.function_name(project, stage, RECONCILER),
        )
        logger.info("reconciled: %s", reconciled)

    with _step(timings, "dashboard site"):
        uploaded = dashboard_site.upload_site(
            client_for_running(running, "s3"),
            outputs["DashboardBucketName"],
            deployed.api_url,
            stage,
        )
        logger.info("%d files in s3://%s", uploaded, outputs["DashboardBucketName"])

    if record:
        endpoints.update(
            cfg.endpoints_file,
            {
                "api": {
                    "dashboard_url": website_url,
                    "stage": stage,
                    "url": deployed.api_url,
                    # endpoints.json is git-ignored and never uploaded: the key stays here.
                    "api_key": access.api_key,
                    "rest_api_id": deployed.rest_api_id,
                    "functions": deployed.functions,
                    "api_function": deployed.api_function,
                    "worker_function": chalice_stage.function_name(project, stage, WORKER),
                    "event_source_mapping": deployed.event_source_mappings[WORKER],
                    "database_proxy": database_proxy,
                    "stack": stack.stack_name(stage),
                    "outputs": outputs,
                }
            },
        )
    return StageDeployment(
        deployed=deployed,
        outputs=outputs,
        migrations_applied=applied,
        dashboard_url=website_url,
        api_key=access.api_key,
        database_proxy_endpoint=environment[app_settings.DATABASE_PROXY_ENDPOINT],
        step_seconds=timings,
    )


def render_function_policies(project: Path, stage: str, outputs: dict[str, str]) -> dict[str, str]:
    """Each function's policy for this stage's resources (function_policies.py)."""
    environment = chalice_stage.stage_config(project, stage).get("environment_variables", {})
    namespace = environment.get(app_settings.POWERTOOLS_METRICS_NAMESPACE)
    if not namespace:
        raise DeployError(
            f"{chalice_stage.config_path(project)}, stage {stage!r}: set "
            f"{app_settings.POWERTOOLS_METRICS_NAMESPACE} in its environment_variables (the "
            "functions' policies allow PutMetricData to that namespace only)"
        )
    resources = function_policies.StageResources.of(
        outputs, namespace, chalice_stage.function_name(project, stage, WORKER)
    )
    templates = function_policies.policy_templates(project)
    names = {f: chalice_stage.function_name(project, stage, f) for f in templates}
    return function_policies.write_function_policies(project, stage, resources, names)


def recorded_api_exists(running: dict[str, Any], deployed_record: Path) -> bool:
    """Whether the REST API in Chalice's record of a deploy exists in this LocalStack."""
    resources = json.loads(deployed_record.read_text()).get("resources", [])
    ids = [r["rest_api_id"] for r in resources if r.get("resource_type") == "rest_api"]
    if not ids:
        return False
    try:
        client_for_running(running, "apigateway").get_rest_api(restApiId=ids[0])
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") == "NotFoundException":
            return False
        raise
    return True


def local_cloud_environment(project: Path, stage: str, website_url: str) -> dict[str, str]:
    """What the app needs to know of where it runs, in AWS's terms: its worker's and its API's
    function names (as Chalice names functions), the dashboard's origin (CORS), and where the
    trigger's gauges are published (the local cloud's namespace; AWS has none)."""
    return {
        app_settings.WORKER_FUNCTION_NAME: chalice_stage.function_name(project, stage, WORKER),
        app_settings.API_FUNCTION_NAME: chalice_stage.function_name(
            project, stage, chalice_stage.API_HANDLER
        ),
        app_settings.DASHBOARD_ORIGIN: website_url.rstrip("/"),
        app_settings.EVENT_SOURCE_MAPPING_METRICS_NAMESPACE: (
            EVENT_SOURCE_MAPPING_METRICS_NAMESPACE
        ),
    }


def database_proxy_endpoint(running: dict[str, Any], through_proxy: bool) -> str:
    """DATABASE_PROXY_ENDPOINT: the local cloud's database proxy as `host:port`, or empty for
    connections straight to the database (the secret's host and port)."""
    if not through_proxy:
        logger.info("the functions connect straight to PostgreSQL: no database proxy")
        return ""
    proxy = running.get("database_proxy")
    if proxy is None:
        raise DeployError(
            "the local cloud runs no database proxy (endpoints.json has no database_proxy): "
            "`scripts/localcloud down` and `up` start it, or deploy with --no-database-proxy"
        )
    return f"{proxy['host']}:{proxy['port']}"


def database_metric_names(running: dict[str, Any], through_proxy: bool) -> dict[str, str]:
    """The names the dashboard reads AWS/RDS connection metrics by: the database instance's
    identifier, and the proxy's name when the functions go through it (empty otherwise)."""
    proxy = running.get("database_proxy") if through_proxy else None
    return {
        app_settings.DATABASE_INSTANCE_IDENTIFIER: running["postgres"].get(
            "db_instance_identifier", ""
        ),
        app_settings.DATABASE_PROXY_NAME: proxy["name"] if proxy else "",
    }


def run_reconciler(lambda_client: Any, function_name: str) -> dict[str, Any]:
    """Invoke the reconciler once, with the event its schedule sends (EventBridge's
    "Scheduled Event"), and return what it did; a failed run stops the deploy."""
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": lambda_client.meta.region_name,
        "resources": [],
        "detail": {},
    }
    answer = lambda_client.invoke(FunctionName=function_name, Payload=json.dumps(event).encode())
    payload = json.loads(answer["Payload"].read() or b"null")
    if answer.get("FunctionError"):
        raise DeployError(
            f"the reconciler {function_name} failed: {payload}; see its log "
            "(scripts/localcloud logs) and fix, then redeploy"
        )
    result: dict[str, Any] = payload
    return result


def enable_partial_batch_responses(lambda_client: Any, mapping_uuid: str) -> None:
    """Chalice cannot set FunctionResponseTypes; without it a batch with one failed record
    would be retried whole (aws-behaviour.md, partial batch responses)."""
    mapping = lambda_client.get_event_source_mapping(UUID=mapping_uuid)
    if mapping.get("FunctionResponseTypes") != PARTIAL_BATCH_RESPONSES:
        lambda_client.update_event_source_mapping(
            UUID=mapping_uuid, FunctionResponseTypes=PARTIAL_BATCH_RESPONSES
        )
    _wait_for(
        lambda: lambda_client.get_event_source_mapping(UUID=mapping_uuid),
        lambda m: (
            m["State"] == "Enabled" and m.get("FunctionResponseTypes") == PARTIAL_BATCH_RESPONSES
        ),
        f"event source mapping {mapping_uuid} enabled with partial batch responses",
    )


def _wait_for(
    fetch: Callable[[], T], done: Callable[[T], bool], what: str, timeout: float = 60
) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise DeployError(f"timed out after {timeout:.0f} s waiting for {what}: {value}")
        time.sleep(0.2)


def destroy(
    cfg: Settings, project: Path = PROJECT_ROOT, stage: str = STAGE, *, record: bool = True
) -> None:
    """Delete what deploy created: the Chalice app, then the stack. The database is left."""
    running = running_cloud(cfg)
    # Before the REST API goes: the usage plan's binding to it can only be removed while it exists.
    api_access.remove_api_access(
        client_for_running(running, "apigateway"),
        api_access.access_name(chalice_stage.app_name(project), stage),
    )
    if (project / ".chalice" / "deployed" / f"{stage}.json").exists():
        logger.info("== chalice delete --stage %s", stage)
        chalice_stage.delete_stage(running, project, stage)
    database.drop_app_role(database.conninfo(running), database.app_role_name(stage))
    cloudformation = client_for_running(running, "cloudformation")
    with contextlib.suppress(stack.StackError):  # no stack: no bucket to empty
        bucket = stack.stack_outputs(cloudformation, stack.stack_name(stage))["DashboardBucketName"]
        logger.info("== emptying s3://%s (a bucket must be empty to be deleted)", bucket)
        dashboard_site.empty_bucket(client_for_running(running, "s3"), bucket)
    logger.info("== deleting stack %s", stack.stack_name(stage))
    stack.delete_stack(cloudformation, stack.stack_name(stage))
    if record:
        endpoints.discard(cfg.endpoints_file, "api")
