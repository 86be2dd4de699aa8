"""Name the play and task that failed, once, at the end of a failed ansible-playbook run.

`vagrant up` prints hundreds of lines and then "Ansible failed to complete successfully";
this line (and the exit code) tell the reader where to look before they scroll. Enabled in
ansible.cfg; it writes nothing on a run that succeeds.
"""

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: vigil_failure_summary
    type: aggregate
    short_description: Print which play and task failed at the end of a run
    description:
      - At the end of a run with failed or unreachable hosts, prints one line per failure naming
        the play, the task and the host, and where to go next.
    requirements:
      - enabled in ansible.cfg (callbacks_enabled)
"""


class CallbackModule(CallbackBase):
    """Collects failures as they happen, prints them after the PLAY RECAP."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "vigil_failure_summary"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._play = ""
        self._failures = []

    def v2_playbook_on_play_start(self, play):
        self._play = play.get_name().strip()

    def _record(self, result, kind):
        self._failures.append((self._play, result.task_name, result.host.get_name(), kind))

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if not ignore_errors:
            self._record(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        if not self._failures:
            return
        self._display.display("")
        for play, task, host, kind in self._failures:
            self._display.error(f"PROVISIONING FAILED in play '{play}', task '{task}' on {host} "
                                f"({kind}); the machine is left up for `vagrant ssh`, fix and "
                                "run `vagrant provision`", wrap_text=False)
