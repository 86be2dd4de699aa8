"""At most VIGIL_PASSWORD_HASH_CONCURRENCY password hashes at once per node; the rest 503."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from api.config import ConfigError
from api.models import LoginFailure
from api.passwords import (
    HashSlots,
    PasswordHashingBusy,
    _in_hashing_thread,
    default_hash_concurrency,
    hash_password,
    hashing_slot,
    verify_password,
)
from tests.conftest import make_app

LOGIN = "/api/v1/auth/login"


def test_slots_admit_exactly_their_limit(tmp_path):
    slots = HashSlots(str(tmp_path), 2)
    with slots.slot(), slots.slot():
        with pytest.raises(PasswordHashingBusy), slots.slot():
            pass
    with slots.slot():
        pass


def test_slots_bound_threads_and_processes_alike(tmp_path):
    limit, held, peak, lock = 3, [0], [0], threading.Lock()

    def worker():
        slots = HashSlots(str(tmp_path), limit)  # as each gunicorn worker builds its own
        for _ in range(40):
            try:
                with slots.slot():
                    with lock:
                        held[0] += 1
                        peak[0] = max(peak[0], held[0])
                    time.sleep(0.001)
                    with lock:
                        held[0] -= 1
            except PasswordHashingBusy:
                pass

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert peak[0] == limit


def test_a_dead_holder_frees_its_slot(tmp_path):
    """The kernel drops a killed worker's flock: no slot leaks with the process."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from api.passwords import HashSlots\n"
        f"s = HashSlots({str(tmp_path)!r}, 1)\n"
        "with s.slot():\n    print('held', flush=True); time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(PasswordHashingBusy), HashSlots(str(tmp_path), 1).slot():
            pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        with HashSlots(str(tmp_path), 1).slot():
            pass
    finally:
        holder.kill()
        holder.wait(10)
        holder.stdout.close()


def test_default_bound_leaves_half_the_cores_free():
    assert default_hash_concurrency() == max(1, (os.cpu_count() or 2) // 2)


@pytest.fixture
def app_config(tmp_path):
    return {"PASSWORD_HASH_CONCURRENCY": 1, "PASSWORD_HASH_SLOTS_DIR": str(tmp_path / "slots")}


@pytest.mark.parametrize("path, body", [
    (LOGIN, {"password": "correct horse battery"}),
    (LOGIN, {"password": "a wrong password!"}),
    ("/api/v1/auth/register", {"password": "correct horse battery"}),
    ("/api/v1/users/me/password", {"current_password": "correct horse battery",
                                   "new_password": "another long password"}),
])
def test_beyond_capacity_hashing_requests_get_503_and_reads_go_on(app, client, auth,
                                                                   app_config, path, body):
    account = auth.signup()
    if path != "/api/v1/users/me/password":
        body = {**body, "email": account.email if path == LOGIN else "new@example.com"}
    with app.app_context():
        failures_before = LoginFailure.select().count()
    with HashSlots(app_config["PASSWORD_HASH_SLOTS_DIR"], 1).slot():  # another worker hashing
        r = client.post(path, json=body, headers=account.headers)
        assert r.status_code == 503 and r.mimetype == "application/problem+json"
        assert r.headers["Retry-After"] == "1"
        assert client.get("/api/v1/users/me", headers=account.headers).status_code == 200
    with app.app_context():
        assert LoginFailure.select().count() == failures_before, "a refusal counted as a failure"
    assert client.post(path, json=body, headers=account.headers).status_code in (200, 201, 204,
                                                                                 401)


@pytest.mark.parametrize("priority, policy, nice", [
    ("idle", os.SCHED_IDLE, None), ("nice", os.SCHED_OTHER, 19)])
def test_hashes_run_at_low_priority_and_requests_keep_theirs(tmp_path, priority, policy, nice):
    """Hashes run in a thread of their own at the configured low priority (argon2's lane
    threads inherit it), so reads preempt them; the request's own thread is untouched."""
    app = make_app(f"sqlite:///{tmp_path / 'v.db'}", PASSWORD_HASH_PRIORITY=priority)
    with app.app_context():
        before = (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))
        assert verify_password(hash_password("correct horse battery"), "correct horse battery")
        assert _in_hashing_thread(os.sched_getscheduler, 0) == policy
        if nice is not None:
            assert _in_hashing_thread(os.getpriority, os.PRIO_PROCESS, 0) == nice
        assert (os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)) == before


def test_an_unknown_hash_priority_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="PASSWORD_HASH_PRIORITY"):
        make_app(f"sqlite:///{tmp_path / 'v.db'}", PASSWORD_HASH_PRIORITY="high")


def test_a_hash_past_its_wait_is_a_503_and_keeps_its_slot_until_it_ends(tmp_path):
    """On saturated cores a low-priority hash may crawl: the request gives up after
    PASSWORD_HASH_WAIT_SECONDS (503), but the slot stays taken while the hash still runs."""
    slots_dir = tmp_path / "slots"
    app = make_app(f"sqlite:///{tmp_path / 'v.db'}", PASSWORD_HASH_WAIT_SECONDS=0.1,
                   PASSWORD_HASH_CONCURRENCY=1, PASSWORD_HASH_SLOTS_DIR=str(slots_dir))
    other_process = HashSlots(str(slots_dir), 1)
    with app.app_context():
        with pytest.raises(PasswordHashingBusy), hashing_slot():
            _in_hashing_thread(time.sleep, 1.0)  # a hash that takes 1 s
        with pytest.raises(PasswordHashingBusy), other_process.slot():
            pass  # still running: the slot is still taken
        time.sleep(1.2)
        with other_process.slot():
            pass  # ended: free again
