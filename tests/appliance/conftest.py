"""Reports the appliance proof's measured step times at the end of the pytest run."""

from appliance_env import NOT_EXECUTED, PROOF_TIMINGS


def pytest_terminal_summary(terminalreporter):
    if not PROOF_TIMINGS:
        return
    terminalreporter.section("appliance proof")
    for step, seconds in PROOF_TIMINGS.items():
        terminalreporter.write_line(f"{step:<40} {seconds:7.1f} s")
    for line in NOT_EXECUTED:
        terminalreporter.write_line(line)
