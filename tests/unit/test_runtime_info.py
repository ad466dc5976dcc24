from chalicelib.runtime_info import describe_environment


def test_describes_the_environment_from_lambdas_variables() -> None:
    described = describe_environment(
        {
            "AWS_LAMBDA_FUNCTION_NAME": "fn",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_LOG_STREAM_NAME": "stream-1",
            "AWS_REGION": "eu-west-1",
        }
    )

    assert described == {
        "function_name": "fn",
        "function_version": "$LATEST",
        "memory_size_mb": "128",
        "log_stream": "stream-1",
        "region": "eu-west-1",
    }


def test_outside_lambda_it_says_local() -> None:
    assert describe_environment({})["log_stream"] == "local"
