"""The drill command fails loudly (exit 1, a reason) instead of hanging or passing by accident."""
import subprocess
import sys

from rule_files import ALERTS
from stack_processes import free_port

DRILL = ALERTS / "drill.py"


def _drill(*args, timeout=60):
    dead = f"http://127.0.0.1:{free_port()}"
    return subprocess.run([sys.executable, str(DRILL), "--api", dead, "--prometheus", dead,
                           "--alertmanager", dead, *args],
                          capture_output=True, text=True, timeout=timeout)


def test_a_failing_fault_command_fails_the_drill():
    done = _drill("--flask", "false")
    assert done.returncode == 1 and "fault command" in done.stderr


def test_an_alert_that_never_fires_times_out_and_still_clears_the_fault(tmp_path):
    marker = tmp_path / "calls"
    done = _drill("--flask", f"sh -c 'echo \"$*\" >> {marker}' sh", "--timeout", "2")
    assert done.returncode == 1 and "not seen within" in done.stderr
    assert marker.read_text().splitlines() == ["faults error --ratio 1.0 --for 10m",
                                               "faults clear error"]
