"""The API's own URLs, behind each of API Gateway's URL forms."""

from __future__ import annotations

from chalicelib.urls import api_root


def test_localstacks_execute_api_form() -> None:
    context = {"path": "/_aws/execute-api/abc123/api/tasks", "resourcePath": "/tasks"}

    root = api_root(context, {"host": "127.0.0.1:4566"})

    assert root == "http://127.0.0.1:4566/_aws/execute-api/abc123/api/"


def test_aws_form_with_a_path_parameter() -> None:
    context = {"path": "/api/tasks/42", "resourcePath": "/tasks/{task_id}"}
    headers = {"host": "abc123.execute-api.us-east-1.amazonaws.com", "x-forwarded-proto": "https"}

    assert api_root(context, headers) == "https://abc123.execute-api.us-east-1.amazonaws.com/api/"


def test_a_custom_domain_without_a_stage() -> None:
    context = {"path": "/tasks/batch", "resourcePath": "/tasks/batch"}

    assert api_root(context, {"host": "tasks.example.com"}) == "https://tasks.example.com/"
