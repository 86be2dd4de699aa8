"""The prometheus multiprocess directory of one gunicorn run: chosen, wiped, removed.

Standard library only, on purpose: gunicorn.conf.py calls ``prepare`` before anything
imports prometheus_client, which decides at import time whether it runs in multiprocess
mode (it does when PROMETHEUS_MULTIPROC_DIR is set).
"""
import glob
import os
import shutil
import tempfile

_OWNED_FLAG = "_VIGIL_METRICS_DIR_OWNED"


def current():
    """The multiprocess directory of this gunicorn run, or None (a single process)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def prepare(chosen):
    """Point PROMETHEUS_MULTIPROC_DIR at ``chosen`` (or a new temporary directory), wiped.

    A config reload (HUP) keeps the same directory and its counts.
    """
    if _OWNED_FLAG in os.environ:
        return os.environ["PROMETHEUS_MULTIPROC_DIR"]
    chosen = chosen or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    path = chosen or tempfile.mkdtemp(prefix="vigil-metrics-")
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)  # counts of an earlier run belong to pids that are gone
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.environ[_OWNED_FLAG] = "0" if chosen else "1"
    return path


def remove():
    """At gunicorn's exit: delete the directory if this run created it."""
    path = current()
    if path and os.environ.get(_OWNED_FLAG) == "1":
        shutil.rmtree(path, ignore_errors=True)
