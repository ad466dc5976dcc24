"""The app's routes, through Chalice's test client (no network)."""

import json

from chalice.test import Client

from app import app


def test_health_answers_ok() -> None:
    with Client(app) as client:
        response = client.http.get("/health")

    assert response.status_code == 200
    assert json.loads(response.body) == {"status": "ok"}


def test_whoami_names_the_execution_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/27/[$LATEST]abc")

    with Client(app) as client:
        body = json.loads(client.http.get("/whoami").body)

    assert body["log_stream"] == "2026/11/27/[$LATEST]abc"


def test_unknown_route_is_a_client_error() -> None:
    with Client(app) as client:
        assert (
            client.http.get("/nope").status_code == 403
        )  # API Gateway's answer to a missing route
