"""The provisioned appliance's footprint and provisioning times, measured on a fresh container.

Run as root: ``.venv/bin/python bench/bench_appliance.py [--load-hold 180] [--json FILE]``.
Through the reviewer's door: in a fresh checkout of the work tree it runs `make lxc-box` (cached)
and `vagrant up --provider=lxc` with VIGIL_LOGS=0 (as CI), timed from a fresh box to provisioned,
then `vagrant provision` with nothing to change; then it measures, at idle and under the `load`
scenario run from this host through nginx:

- memory per systemd unit and in total: RSS (shared pages counted in every process) and PSS
  (shared pages split between the processes sharing them, so the total is what the machine
  really holds);
- Prometheus' head series and samples appended per second;
- what grows on disk per day: Prometheus' TSDB (samples/s x the 1-2 bytes per sample Prometheus'
  storage documentation gives; the write-ahead log's own growth is printed as an upper bound),
  the log payload the services write (what Alloy would ship to Loki) and PostgreSQL.

It also prints how busy this machine was during each phase (load average, CPU busy share, other
containers running): the machine is shared, so absolute times move with it. Grafana, Loki and
Alloy cannot be installed here; README states their published figures. `vagrant destroy -f`
always runs at the end, also when a step fails. Not a test: the figures go in README.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MACHINE, MACHINE_IP = "vigil", "192.168.56.10"  # the Vagrantfile's single topology
# What CI's `vagrant up` runs: Grafana's APT repository is unreachable here (VIGIL_LOGS=0).
VAGRANT_ENV = {"VIGIL_TOPOLOGY": "single", "VIGIL_LOGS": "0", "VAGRANT_NO_COLOR": "1"}
MIB = 1024 * 1024
# Prometheus' storage documentation: "an average of only 1-2 bytes per sample".
BYTES_PER_SAMPLE = (1.0, 2.0)

# Run on the appliance: resident (RSS) and proportional (PSS) memory per systemd unit. The
# measuring SSH session's own scope is left out.
MEMORY = r"""
import json, os, re
units = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cgroup = open(f"/proc/{pid}/cgroup").read()
        rollup = open(f"/proc/{pid}/smaps_rollup").read()
    except OSError:
        continue
    fields = dict(re.findall(r"^(Rss|Pss):\s+(\d+) kB", rollup, re.M))
    if not fields:
        continue  # a kernel thread
    path = re.search(r"^0::(\S*)", cgroup, re.M).group(1)
    unit = path.rstrip("/").rsplit("/", 1)[-1] or "(root)"
    if unit.startswith("session-"):
        continue
    entry = units.setdefault(unit, {"rss": 0, "pss": 0, "processes": 0})
    entry["rss"] += int(fields["Rss"]) * 1024
    entry["pss"] += int(fields["Pss"]) * 1024
    entry["processes"] += 1
print(json.dumps(units))
"""


def checkout(dest):
    """The work tree's tracked and new (not ignored) files: what a reviewer clones."""
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others",
                            "--exclude-standard"], check=True, capture_output=True,
                           text=True).stdout.split("\0")
    for rel in filter(None, files):
        if (REPO / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dest / rel)
    return dest


class MachineLoad:
    """How busy this (shared) machine was between start() and stop()."""

    def __init__(self):
        self.start()

    @staticmethod
    def _cpu():
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields), idle

    def start(self):
        self._t0, self._idle0 = self._cpu()
        self.load_start = os.getloadavg()[0]

    def stop(self):
        total, idle = self._cpu()
        busy = 1 - (idle - self._idle0) / max(1, total - self._t0)
        lxc = subprocess.run(["lxc-ls", "-1", "--running"], capture_output=True, text=True)
        return {"cpu_busy": round(busy, 2), "load1_start": round(self.load_start, 2),
                "load1_end": round(os.getloadavg()[0], 2), "cores": os.cpu_count(),
                "other_containers": max(0, len(lxc.stdout.split()) - 1)}


class Appliance:
    """The machine `vagrant up` brought up in `project`, reached over one multiplexed SSH
    connection (`vagrant ssh` costs seconds of Ruby per call) and over HTTP."""

    def __init__(self, project, workdir):
        self.project, self.workdir = project, workdir
        self.prometheus = f"http://{MACHINE_IP}:9090"

    def vagrant(self, *args, timeout=3600):
        t = time.monotonic()
        done = subprocess.run(["vagrant", *args], cwd=self.project, capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, **VAGRANT_ENV})
        with open(self.workdir / "vagrant.log", "a") as log:
            log.write(f"\n$ vagrant {' '.join(args)}  # exit {done.returncode}\n"
                      f"{done.stdout}{done.stderr}")
        if done.returncode:
            raise RuntimeError(f"vagrant {' '.join(args)} failed:\n{done.stdout[-4000:]}"
                               f"\n{done.stderr[-2000:]}")
        return time.monotonic() - t, done

    def run(self, *argv, timeout=600):
        config = self.workdir / "ssh_config"
        if not config.exists():
            config.write_text(self.vagrant("ssh-config", MACHINE)[1].stdout)
        done = subprocess.run(
            ["ssh", "-F", str(config), "-o", "LogLevel=ERROR", "-o", "ControlMaster=auto",
             "-o", f"ControlPath={self.workdir}/ssh-%C", "-o", "ControlPersist=300", MACHINE,
             "sudo -n " + shlex.join(argv)], capture_output=True, text=True, timeout=timeout,
            check=True)
        return done.stdout

    def memory(self):
        return json.loads(self.run("python3", "-c", MEMORY))

    def query(self, expr):
        r = requests.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=30)
        r.raise_for_status()
        result = r.json()["data"]["result"]
        return float(result[0]["value"][1]) if result else float("nan")

    def log_bytes(self, since, until):
        """Bytes of log messages the journal took in (every unit: what Alloy would ship)."""
        out = self.run("sh", "-c", f"journalctl -q -o cat --since=@{int(since)} "
                       f"--until=@{int(until)} | wc -c")
        return int(out.strip() or 0)

    def wait_targets_up(self, timeout=300):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException, ValueError):
                if self.query("min(up)") == 1 and self.query("count(up)") >= 5:
                    return
            time.sleep(5)
        raise RuntimeError("Prometheus' targets did not all come up")


def sample_window(appliance, seconds, every=10):
    """Memory samples every `every` s for `seconds`, the Prometheus and disk counters around
    them; returns the peak of each unit and of the total."""
    start = time.time()
    size0 = appliance.query('max(pg_database_size_bytes{datname="vigil"})')
    wal0 = appliance.query("max(prometheus_tsdb_wal_storage_size_bytes)")
    appended0 = appliance.query("max(prometheus_tsdb_head_samples_appended_total)")
    peaks, totals = {}, []
    while time.time() - start < seconds:
        units = appliance.memory()
        for unit, used in units.items():
            peak = peaks.setdefault(unit, {"rss": 0, "pss": 0})
            peak["rss"], peak["pss"] = max(peak["rss"], used["rss"]), max(peak["pss"],
                                                                         used["pss"])
        totals.append((sum(u["rss"] for u in units.values()),
                       sum(u["pss"] for u in units.values())))
        time.sleep(every)
    end = time.time()
    elapsed = end - start
    appended = appliance.query("max(prometheus_tsdb_head_samples_appended_total)") - appended0
    return {
        "seconds": round(elapsed),
        "units": peaks,
        "total_rss_peak": max(t[0] for t in totals),
        "total_pss_peak": max(t[1] for t in totals),
        "head_series": appliance.query("max(prometheus_tsdb_head_series)"),
        "samples_per_second": appended / elapsed,
        "wal_bytes_per_second": (appliance.query("max(prometheus_tsdb_wal_storage_size_bytes)")
                                 - wal0) / elapsed,
        "log_bytes_per_second": appliance.log_bytes(start, end) / elapsed,
        "postgres_bytes_per_second": (appliance.query(
            'max(pg_database_size_bytes{datname="vigil"})') - size0) / elapsed,
    }


def run_load(appliance, ramp, hold, report_dir):
    """The `load` scenario from this host through nginx; returns the Locust process."""
    return subprocess.Popen(
        [str(BIN / "locust"), "-f", "loadtest/locustfile.py", "--scenario", "load", "--headless",
         "--host", f"https://{MACHINE_IP}", "--allowed-hosts", MACHINE_IP,
         "--load-ramp", f"{ramp}s", "--load-duration", f"{hold}s", "--report-dir",
         str(report_dir), "--only-summary"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def mib(n):
    return f"{n / MIB:7.1f}"


def print_report(r):
    print(f"machine: {r['machine']}")
    print("\n== provisioning (fresh box = unpack + boot + ansible-core install + site.yml)")
    for step, seconds in r["provision"].items():
        print(f"  {step:<38} {seconds:7.1f} s")
    print(f"  first site.yml recap: {r['recap_first']}; second: {r['recap_second']}")
    for phase in ("idle", "load"):
        w = r[phase]
        print(f"\n== {phase}: {w['seconds']} s sampled; machine {w['machine']}")
        print(f"  {'unit':<40} {'RSS MiB':>8} {'PSS MiB':>8}")
        for unit, used in sorted(w["units"].items(), key=lambda kv: -kv[1]["pss"]):
            if used["pss"] >= MIB:
                print(f"  {unit:<40} {mib(used['rss']):>8} {mib(used['pss']):>8}")
        print(f"  {'TOTAL (peak of the sums)':<40} {mib(w['total_rss_peak']):>8} "
              f"{mib(w['total_pss_peak']):>8}")
        print(f"  Prometheus: {w['head_series']:.0f} head series, "
              f"{w['samples_per_second']:.0f} samples/s; WAL grows "
              f"{w['wal_bytes_per_second'] / 1024:.1f} KiB/s; logs "
              f"{w['log_bytes_per_second'] / 1024:.2f} KiB/s; PostgreSQL "
              f"{w['postgres_bytes_per_second'] / 1024:.1f} KiB/s")
    idle = r["idle"]
    per_day = idle["samples_per_second"] * 86400
    low, high = (per_day * b / MIB for b in BYTES_PER_SAMPLE)
    print("\n== disk growth per day at idle, default retention (Prometheus 15 d)")
    print(f"  Prometheus TSDB: {per_day / 1e6:.1f} M samples/day -> {low:.0f}-{high:.0f} MiB/day "
          f"(1-2 B/sample), {15 * low / 1024:.2f}-{15 * high / 1024:.2f} GiB held at 15 d; "
          f"WAL before compaction {idle['wal_bytes_per_second'] * 86400 / MIB:.0f} MiB/day")
    print(f"  log payload (journal; Alloy -> Loki): "
          f"{idle['log_bytes_per_second'] * 86400 / MIB:.1f} MiB/day idle, "
          f"{r['load']['log_bytes_per_second'] * 86400 / MIB:.1f} MiB/day at the load scenario")
    print(f"  PostgreSQL at idle: {idle['postgres_bytes_per_second'] * 86400 / MIB:.1f} MiB/day")


def recap(stdout):
    """ansible-playbook's PLAY RECAP line for the machine, as {ok, changed, failed, ...}."""
    line = next((ln for ln in stdout.splitlines() if f" {MACHINE} " in f" {ln.strip()} "
                 and "changed=" in ln), "")
    return {k: int(v) for k, v in (p.split("=") for p in line.split() if "=" in p)}


def measure(args, workdir):
    report = {}
    project = checkout(workdir / "vigil")
    appliance = Appliance(project, workdir)
    busy = MachineLoad()
    try:
        t = time.monotonic()
        subprocess.run(["make", "--no-print-directory", "lxc-box"], cwd=project, check=True,
                       capture_output=True, timeout=1800)
        box = time.monotonic() - t
        up, done = appliance.vagrant("up", "--provider=lxc")
        report["recap_first"] = recap(done.stdout)
        again, done = appliance.vagrant("provision", MACHINE)
        report["recap_second"] = recap(done.stdout)
        report["provision"] = {"lxc box (cached)": box,
                               "vagrant up (fresh box to provisioned)": up,
                               "vagrant provision (nothing to change)": again}
        report["machine"] = busy.stop()
        appliance.wait_targets_up()
        time.sleep(args.settle)
        busy.start()
        report["idle"] = sample_window(appliance, args.idle)
        report["idle"]["machine"] = busy.stop()
        with tempfile.TemporaryDirectory(prefix="bench-load-") as report_dir:
            locust = run_load(appliance, args.load_ramp, args.load_hold, report_dir)
            try:
                time.sleep(args.load_ramp)
                busy.start()
                report["load"] = sample_window(appliance, args.load_hold - 10)
                report["load"]["machine"] = busy.stop()
                output, _ = locust.communicate(timeout=args.load_ramp + 300)
            finally:
                if locust.poll() is None:
                    locust.kill()
            report["load"]["locust_summary"] = "\n".join(output.splitlines()[-25:])
    finally:
        with contextlib.suppress(Exception):
            appliance.vagrant("destroy", "-f")
    return report


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=int, default=60, help="idle seconds before sampling")
    parser.add_argument("--idle", type=int, default=120, help="idle seconds sampled")
    parser.add_argument("--load-ramp", type=int, default=30)
    parser.add_argument("--load-hold", type=int, default=180, help="seconds at 20 users")
    parser.add_argument("--json", type=Path, default=REPO / "reports" / "bench-appliance.json")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_appliance: needs root (vagrant-lxc makes containers and a bridge); "
              "not measured",
              file=sys.stderr)
        return 2
    # A SIGTERM (CI, timeout) unwinds through the finally that destroys the container.
    signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="bench-appliance-") as workdir:
        report = measure(args, Path(workdir))
    print_report(report)
    print(f"\n{report['load']['locust_summary']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
