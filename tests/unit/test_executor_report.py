"""The platform log lines match Lambda's format."""

from datetime import UTC, datetime

from localcloud_ext import report


def test_report_line_of_a_cold_start_has_init_duration_and_bills_it() -> None:
    line = report.InvocationReport(
        request_id="abc",
        duration_ms=12.341,
        memory_size_mb=128,
        max_memory_used_mb=40,
        init_duration_ms=250.12,
    ).line()

    assert line == (
        "REPORT RequestId: abc\tDuration: 12.34 ms\tBilled Duration: 263 ms\tMemory Size: 128 MB"
        "\tMax Memory Used: 40 MB\tInit Duration: 250.12 ms\t"
    )


def test_report_line_of_a_warm_invoke_has_no_init_duration() -> None:
    line = report.InvocationReport("abc", 0.2, 256, 30).line()

    assert "Init Duration" not in line
    assert "Billed Duration: 1 ms" in line
    assert line.endswith("Max Memory Used: 30 MB\t")


def test_report_line_of_a_timeout_says_so() -> None:
    line = report.InvocationReport("abc", 3000.4, 128, 30, status="timeout").line()

    assert line.endswith("\tStatus: timeout\t")


def test_timeout_texts_name_the_request_and_the_limit() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

    assert (
        report.timeout_message("r1", 3) == "RequestId: r1 Error: Task timed out after 3.00 seconds"
    )
    assert report.timeout_log_line("r1", 3, now) == (
        "2026-01-02T03:04:05.678Z r1 Task timed out after 3.00 seconds"
    )


def test_exit_message_names_exit_status_or_signal() -> None:
    assert (
        report.exit_message("r1", 3)
        == "RequestId: r1 Error: Runtime exited with error: exit status 3"
    )
    assert report.exit_message("r1", -9).endswith("Runtime exited with error: signal: killed")
    assert report.exit_message("", 1) == "Error: Runtime exited with error: exit status 1"


def test_init_lines() -> None:
    assert report.init_start_line("python3.12") == "INIT_START Runtime Version: python:3.12.local"
    assert report.init_report_line(61.234, "Runtime.ImportModuleError") == (
        "INIT_REPORT Init Duration: 61.23 ms\tPhase: init\tStatus: error"
        "\tError Type: Runtime.ImportModuleError"
    )
