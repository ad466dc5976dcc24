"""serverless-scaling's API. Routes only: logic lives in chalicelib/.

The task API (POST /tasks -> SQS -> workers -> PostgreSQL) arrives with its own issue; until then
the app answers health checks and says which execution environment served a request, which is
what the demo uses to show Lambda scaling out.
"""

from chalice import Chalice

from chalicelib import runtime_info

app = Chalice(app_name="serverless-scaling")


@app.route("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.route("/whoami")
def whoami() -> dict[str, str]:
    return runtime_info.describe_environment()


@app.lambda_function(name="whoami")
def whoami_function(event: dict[str, object], context: object) -> dict[str, str]:
    """The same answer as GET /whoami, for a direct `lambda invoke`."""
    return runtime_info.describe_environment()
