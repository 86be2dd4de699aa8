"""Password hashing with argon2id at the configured (OWASP or stronger) cost, a bounded
number at a time on each node.

One argon2id hash at the defaults takes 64 MiB and a core for a tenth of a second or
more. Unbounded, a flood of logins occupies every gunicorn worker with hashing and reads
queue behind them (measured: GET /users/me from 5 ms to 713 ms median). HashSlots lets at
most VIGIL_PASSWORD_HASH_CONCURRENCY hashes run at once across every process of the node
(an flock on one of that many files; the kernel frees a dead process's lock) and refuses
the rest at once with PasswordHashingBusy, which the API answers 503 with Retry-After:
a refused login costs microseconds and leaves the worker free for reads.

The bound alone still let the admitted hashes take the cores from reads (x3.9 of idle read
latency in the issue's flood on 2 cores): argon2 runs as many threads as it has lanes. So
each process hashes in a thread of its own at the lowest CPU priority (SCHED_IDLE by
default, VIGIL_PASSWORD_HASH_PRIORITY): argon2's lane threads inherit it, and any read on
the node preempts them (ADR 0053).
"""
import contextlib
import fcntl
import logging
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, g

log = logging.getLogger(__name__)

#: Seconds a client refused for capacity is asked to wait.
BUSY_RETRY_AFTER = 1


class PasswordHashingBusy(Exception):
    """Every password-hashing slot of this node is in use; try again in a moment."""


def default_hash_concurrency():
    """Half the node's cores (at least one): the other half stays free for everything else."""
    return max(1, (os.cpu_count() or 2) // 2)


def default_slots_dir():
    """Shared by every Vigil process of this user on the node (systemd's PrivateTmp: of
    the service), so the bound is per node, not per worker."""
    return os.path.join(tempfile.gettempdir(), f"vigil-password-hashing-{os.getuid()}")


class HashSlots:
    """At most ``limit`` holders at once across processes: one flock'ed file per slot."""

    def __init__(self, directory, limit):
        self.directory, self.limit = directory, limit
        os.makedirs(directory, mode=0o700, exist_ok=True)

    @contextlib.contextmanager
    def slot(self):
        """Hold a free slot for the block (a HeldSlot); raises PasswordHashingBusy when none
        is free."""
        for number in range(self.limit):
            fd = os.open(os.path.join(self.directory, f"slot-{number}"),
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            held = HeldSlot(fd)
            try:
                yield held
            finally:
                held.release()
            return
        raise PasswordHashingBusy()


class HeldSlot:
    """A slot held by this process; closing its only descriptor releases the lock."""

    def __init__(self, fd):
        self.fd, self._outlived_by = fd, None

    def keep_until_done(self, future):
        """The holder gives up waiting, but the hash goes on: free the slot when it ends."""
        self._outlived_by = future

    def release(self):
        if self._outlived_by is None:
            os.close(self.fd)
        else:  # runs at once if the hash has already ended
            self._outlived_by.add_done_callback(lambda _: os.close(self.fd))


def _slots():
    slots = current_app.extensions.get("vigil_hash_slots")
    if slots is None:
        cfg = current_app.config
        limit = cfg["PASSWORD_HASH_CONCURRENCY"] or default_hash_concurrency()
        slots = current_app.extensions["vigil_hash_slots"] = HashSlots(
            cfg["PASSWORD_HASH_SLOTS_DIR"] or default_slots_dir(), int(limit))
    return slots


@contextlib.contextmanager
def hashing_slot():
    """Hold one of the node's hashing slots for a block of work that hashes (re-entrant
    within a request, so hash_password and verify_password inside it take no second one).
    Take it before any other work of a login, so a refused attempt costs nothing else.
    Raises PasswordHashingBusy.
    """
    if g.get("vigil_hash_slot") is not None:
        yield
        return
    with _slots().slot() as held:
        g.vigil_hash_slot = held
        try:
            yield
        finally:
            g.vigil_hash_slot = None


def _hasher():
    cfg = current_app.config
    key = (int(cfg["ARGON2_TIME_COST"]), int(cfg["ARGON2_MEMORY_KIB"]),
           int(cfg["ARGON2_PARALLELISM"]))
    cache = current_app.extensions.setdefault("vigil_password_hashers", {})
    if key not in cache:
        cache[key] = PasswordHasher(time_cost=key[0], memory_cost=key[1],
                                    parallelism=key[2], type=Type.ID)
    return cache[key]


def _lower_this_threads_priority(priority):
    """Run once in the hashing thread. Linux keeps the policy and nice value per thread, and
    threads started from this one (argon2's lanes) inherit them; the request threads keep
    theirs. Lowering needs no privilege; raising it back would, so the thread never does."""
    try:
        if priority == "idle":
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        elif priority == "nice":
            os.setpriority(os.PRIO_PROCESS, 0, 19)
    except OSError as e:
        # A sandbox that forbids it must not break logins: hash at normal priority, and say so.
        log.warning("password hashing stays at normal priority: %s", e)


def _in_hashing_thread(work, *args):
    """``work(*args)`` in this process's low-priority hashing thread (made on first use,
    again after a fork: threads do not survive one); the caller waits for the result.

    On a node whose cores are saturated, a hash at low priority may make little progress:
    after VIGIL_PASSWORD_HASH_WAIT_SECONDS the caller gets PasswordHashingBusy (503) instead
    of holding its worker until gunicorn kills it, and the slot stays taken until the hash
    ends, so the bound holds.
    """
    priority = current_app.config["PASSWORD_HASH_PRIORITY"]
    if priority == "normal":
        return work(*args)
    pid, executor = current_app.extensions.get("vigil_hashing_thread", (None, None))
    if pid != os.getpid():
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vigil-hashing",
                                      initializer=_lower_this_threads_priority,
                                      initargs=(priority,))
        current_app.extensions["vigil_hashing_thread"] = (os.getpid(), executor)
    future = executor.submit(work, *args)
    try:
        return future.result(timeout=float(current_app.config["PASSWORD_HASH_WAIT_SECONDS"]))
    except TimeoutError:
        held = g.get("vigil_hash_slot")
        if held is not None:
            held.keep_until_done(future)
        raise PasswordHashingBusy() from None


def _verify(hasher, password_hash, password):
    try:
        return hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def hash_password(password):
    """An argon2id hash string of ``password``; raises PasswordHashingBusy."""
    with hashing_slot():
        return _in_hashing_thread(_hasher().hash, password)


def verify_password(password_hash, password):
    """True when ``password`` matches ``password_hash``; raises PasswordHashingBusy."""
    with hashing_slot():
        return _in_hashing_thread(_verify, _hasher(), password_hash, password)


def needs_rehash(password_hash):
    """True when the hash was made with weaker parameters than configured now."""
    return _hasher().check_needs_rehash(password_hash)


def burn_verification_time():
    """Spend as long as a real verification, so unknown emails answer no faster."""
    cache = current_app.extensions.setdefault("vigil_password_hashers", {})
    dummy = cache.get("dummy")
    if dummy is None:
        dummy = cache["dummy"] = hash_password("not-a-real-password-0000")
    verify_password(dummy, "a-wrong-password-0000")
