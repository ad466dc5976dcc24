"""What a function process sees: AWS's variables, with the task root and layers on its path."""

from pathlib import Path

from localcloud_ext.environment import FunctionSpec


def spec(tmp_path: Path, layers: tuple[Path, ...] = ()) -> FunctionSpec:
    return FunctionSpec(
        environment_id="env1",
        function_name="fn",
        version="$LATEST",
        runtime="python3.11",
        handler="app.handler",
        interpreter=tmp_path / "runtimes" / "python3.11" / "bin" / "python",
        task_root=tmp_path / "code",
        timeout_seconds=3,
        memory_size_mb=256,
        environment={
            "AWS_REGION": "us-east-1",
            "LAMBDA_TASK_ROOT": "/var/task",
            "MY_SETTING": "x",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
        },
        layer_roots=layers,
    )


def test_process_sees_the_runtime_api_handler_and_real_task_root(tmp_path: Path) -> None:
    env = spec(tmp_path).process_environment("127.0.0.1:5555")

    assert env["AWS_LAMBDA_RUNTIME_API"] == "127.0.0.1:5555"
    assert env["_HANDLER"] == "app.handler"
    assert env["LAMBDA_TASK_ROOT"] == str(tmp_path / "code")
    assert env["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.11"
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["PATH"].startswith(str(tmp_path / "runtimes" / "python3.11" / "bin") + ":")


def test_function_settings_and_endpoint_pass_through(tmp_path: Path) -> None:
    env = spec(tmp_path).process_environment("127.0.0.1:5555")

    assert env["MY_SETTING"] == "x"
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"
    assert env["AWS_REGION"] == "us-east-1"


def test_python_path_has_task_root_first_then_existing_layer_dirs(tmp_path: Path) -> None:
    layer = tmp_path / "layer1"
    (layer / "python" / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    empty_layer = tmp_path / "layer2"
    empty_layer.mkdir()

    env = spec(tmp_path, (layer, empty_layer)).process_environment("127.0.0.1:1")

    assert env["PYTHONPATH"].split(":") == [
        str(tmp_path / "code"),
        str(layer / "python" / "lib" / "python3.11" / "site-packages"),
        str(layer / "python"),
    ]
