"""The host: is it saturated? USE (utilisation, saturation, errors) for CPU, memory, disk and
network, with pressure stall information (PSI), OOM kills, inodes, disk latency and time sync."""
from . import navigation as nav
from .board import assemble, query_variable
from .panels import (
    BLUE,
    GREEN,
    ORANGE,
    RATE,
    RED,
    markdown,
    promql,
    row,
    stat,
    timeseries,
    value_text,
)

UID = nav.UIDS["host"]
NODE = 'job="node", instance=~"$instance"'
REAL_FS = 'fstype!~"tmpfs|ramfs|squashfs|overlay|nsfs|fuse.*"'
CORES = f'count by (instance) (node_cpu_seconds_total{{{NODE}, mode="idle"}})'
HOST_LOGS = '{host=~"' + nav.HOSTS + '", level=~"err|crit|alert|emerg|error|critical"}'
KERNEL_LOGS = '{host=~"' + nav.HOSTS + '", job="journal"} |~ "(?i)out of memory|oom-kill"'


def _pressure(resource, kind="waiting"):
    """Share of wall time some task waited for `resource` (PSI "some"), per instance."""
    return f"rate(node_pressure_{resource}_{kind}_seconds_total{{{NODE}}}[{RATE}])"


def _saturated_row():
    cpu_busy = (f'1 - avg by (instance) (rate(node_cpu_seconds_total{{{NODE}, mode="idle"}}'
                f"[{RATE}]))")
    return row(
        "Is the host saturated? (now, per resource)",
        stat("CPU busy", "Share of CPU time not idle, averaged over cores. Orange from 80 %; "
             "sustained 90 % raises NodeHighCpu.", promql(f"max({cpu_busy})"),
             unit="percentunit", steps=((GREEN, None), (ORANGE, 0.8), (RED, 0.9)),
             links=(nav.runbook_link("node.md", "nodehighcpu", "Runbook: CPU"),), width=3),
        stat("CPU pressure", "Share of time runnable tasks waited for a CPU (PSI some). Above "
             "10 % users feel it even when CPU busy looks fine.",
             promql(f"max({_pressure('cpu')})"), unit="percentunit",
             steps=((GREEN, None), (ORANGE, 0.1), (RED, 0.25)), width=3),
        stat("Memory used", "Share of memory not available to new processes (1 - "
             "MemAvailable/MemTotal).",
             promql(f"max(1 - node_memory_MemAvailable_bytes{{{NODE}}} / "
                    f"node_memory_MemTotal_bytes{{{NODE}}})"), unit="percentunit",
             steps=((GREEN, None), (ORANGE, 0.8), (RED, 0.9)),
             links=(nav.runbook_link("node.md", "nodememorylow", "Runbook: memory"),),
             width=3),
        stat("Memory pressure", "Share of time tasks stalled waiting for memory (PSI some): "
             "reclaim and swap-in. Anything lasting above a few % means memory is short.",
             promql(f"max({_pressure('memory')})"), unit="percentunit",
             steps=((GREEN, None), (ORANGE, 0.05), (RED, 0.2)), width=3),
        stat("I/O pressure", "Share of time tasks stalled waiting for block I/O (PSI some).",
             promql(f"max({_pressure('io')})"), unit="percentunit",
             steps=((GREEN, None), (ORANGE, 0.1), (RED, 0.3)), width=3),
        stat("Fullest filesystem", "Highest share of space used over real filesystems; "
             "NodeDiskAlmostFull fires at 90 %.",
             promql(f"max(1 - node_filesystem_avail_bytes{{{NODE}, {REAL_FS}}} / "
                    f"node_filesystem_size_bytes{{{NODE}, {REAL_FS}}})"), unit="percentunit",
             steps=((GREEN, None), (ORANGE, 0.8), (RED, 0.9)),
             links=(nav.runbook_link("node.md", "nodediskalmostfull", "Runbook: disk"),),
             width=3),
        stat("OOM kills (24 h)", "Processes the kernel's OOM killer ended in the last 24 h. "
             "Any is a service that lost work: check which in the kernel log.",
             promql(f"sum(increase(node_vmstat_oom_kill{{{NODE}}}[24h]))"),
             steps=((GREEN, None), (RED, 1)),
             links=(nav.logs_link("Kernel OOM lines", KERNEL_LOGS),), width=3),
        stat("Clock synchronised", "Whether the kernel says the clock is synchronised to NTP "
             "(adjtimex). Not synchronised breaks TLS, token expiry and log order.",
             promql(f"min(node_timex_sync_status{{{NODE}}})"),
             steps=((RED, None), (GREEN, 1)),
             mappings=(value_text(1, "SYNCED", GREEN), value_text(0, "NOT SYNCED", RED)),
             no_value="unknown", width=3),
    )


def _cpu_row():
    return row(
        "CPU",
        timeseries("CPU utilisation by mode", "Share of CPU time per mode, averaged over "
                   "cores (USE: utilisation). iowait is idle time with I/O outstanding.",
                   promql(f'sum by (mode) (rate(node_cpu_seconds_total{{{NODE}, mode!="idle"}}'
                          f"[{RATE}])) / scalar(sum({CORES}))", "{{mode}}"),
                   unit="percentunit", stack=True, width=8),
        timeseries("Load per core", "1- and 5-minute load average divided by the number of "
                   "cores (USE: saturation); above the dashed line at 1 processes queue.",
                   promql(f"node_load1{{{NODE}}} / on (instance) {CORES}", "{{instance}} load1"),
                   promql(f"node_load5{{{NODE}}} / on (instance) {CORES}", "{{instance}} load5"),
                   unit="short", steps=((RED, 1),), width=8),
        timeseries("CPU pressure (PSI)", "Share of time some runnable task waited for a CPU.",
                   promql(_pressure("cpu"), "{{instance}} some"), unit="percentunit",
                   steps=((ORANGE, 0.1),), width=8),
    )


def _memory_row():
    return row(
        "Memory",
        timeseries("Memory used", "Share of memory not available to new processes (USE: "
                   "utilisation); NodeMemoryLow fires under 10 % available.",
                   promql(f"1 - node_memory_MemAvailable_bytes{{{NODE}}} / "
                          f"node_memory_MemTotal_bytes{{{NODE}}}", "{{instance}}"),
                   unit="percentunit", steps=((RED, 0.9),), width=6),
        timeseries("Memory pressure (PSI)", "Share of time some task (some) or every task "
                   "(full) stalled on memory: reclaim, refaults, swap-in.",
                   promql(_pressure("memory"), "{{instance}} some"),
                   promql(_pressure("memory", "stalled"), "{{instance}} full"),
                   unit="percentunit", width=6),
        timeseries("Paging and swapping", "Major page faults (a page read back from disk) and "
                   "pages swapped in and out, per second (USE: saturation).",
                   promql(f"rate(node_vmstat_pgmajfault{{{NODE}}}[{RATE}])",
                          "{{instance}} major faults"),
                   promql(f"rate(node_vmstat_pswpin{{{NODE}}}[{RATE}]) + "
                          f"rate(node_vmstat_pswpout{{{NODE}}}[{RATE}])",
                          "{{instance}} swap pages"), unit="ops", width=6),
        timeseries("OOM kills", "Processes ended by the kernel's out-of-memory killer in each "
                   "interval (USE: errors). The kernel log names them.",
                   promql(f"increase(node_vmstat_oom_kill{{{NODE}}}[{RATE}])", "{{instance}}"),
                   unit="short", bars=True, width=6,
                   links=(nav.logs_link("Kernel OOM lines", KERNEL_LOGS),)),
    )


def _disk_row():
    fs = f"{NODE}, {REAL_FS}"
    device = f'{NODE}, device!~"loop.*|ram.*"'
    return row(
        "Disk",
        timeseries("Space used", "Share of each real filesystem in use; NodeDiskFillingUp "
                   "extrapolates this line.",
                   promql(f"1 - node_filesystem_avail_bytes{{{fs}}} / "
                          f"node_filesystem_size_bytes{{{fs}}}", "{{instance}} {{mountpoint}}"),
                   unit="percentunit", steps=((ORANGE, 0.8), (RED, 0.9)), width=8),
        timeseries("Inodes used", "Share of each filesystem's inodes in use: a disk with space "
                   "left still fails writes when it runs out of inodes (many small files).",
                   promql(f"1 - node_filesystem_files_free{{{fs}}} / "
                          f"node_filesystem_files{{{fs}}}", "{{instance}} {{mountpoint}}"),
                   unit="percentunit", steps=((ORANGE, 0.8), (RED, 0.9)), width=8),
        timeseries("Disk latency", "Average time a read or a write took per device (time "
                   "spent / operations completed); 0 while the device does none of that kind "
                   "(rather than a gap). Tens of ms on an SSD means the device queues.",
                   *[promql(f"rate(node_disk_{op}_time_seconds_total{{{device}}}[{RATE}]) / "
                            f"clamp_min(rate(node_disk_{ops}_completed_total{{{device}}}"
                            f"[{RATE}]), 1e-9)", "{{instance}} {{device}} " + op)
                     for op, ops in (("read", "reads"), ("write", "writes"))],
                   unit="s", width=8),
        timeseries("Disk busy", "Share of time each device had I/O in flight (USE: "
                   "utilisation; near 100 % on a single spindle means saturated, SSDs go past it "
                   "with parallel requests).",
                   promql(f"rate(node_disk_io_time_seconds_total{{{device}}}[{RATE}])",
                          "{{instance}} {{device}}"), unit="percentunit", width=6),
        timeseries("Disk queue", "Average number of I/O requests in flight per device (USE: "
                   "saturation).",
                   promql(f"rate(node_disk_io_time_weighted_seconds_total{{{device}}}[{RATE}])",
                          "{{instance}} {{device}}"), unit="short", width=6),
        timeseries("I/O pressure (PSI)", "Share of time some task (some) or every task (full) "
                   "stalled on block I/O.",
                   promql(_pressure("io"), "{{instance}} some"),
                   promql(_pressure("io", "stalled"), "{{instance}} full"), unit="percentunit",
                   width=6),
        timeseries("Filesystem errors", "Filesystems mounted read-only (the kernel does that "
                   "after I/O errors) or that node_exporter could not read (USE: errors); "
                   "0 is healthy.",
                   promql(f"max by (instance, mountpoint) (node_filesystem_readonly{{{fs}}}) + "
                          f"max by (instance, mountpoint) (node_filesystem_device_error{{{fs}}})",
                          "{{instance}} {{mountpoint}}"), unit="short", width=6),
    )


def _network_row():
    nic = f'{NODE}, device!~"lo|veth.*|docker.*|br-.*"'
    return row(
        "Network",
        timeseries("Network throughput", "Bytes received and sent per second per interface.",
                   promql(f"rate(node_network_receive_bytes_total{{{nic}}}[{RATE}])",
                          "{{instance}} {{device}} in"),
                   promql(f"rate(node_network_transmit_bytes_total{{{nic}}}[{RATE}])",
                          "{{instance}} {{device}} out"), unit="Bps", width=8),
        timeseries("Network errors and drops", "Packets with errors or dropped, per second, "
                   "per interface (USE: errors and saturation).",
                   promql(f"rate(node_network_receive_errs_total{{{nic}}}[{RATE}]) + "
                          f"rate(node_network_transmit_errs_total{{{nic}}}[{RATE}])",
                          "{{instance}} {{device}} errors"),
                   promql(f"rate(node_network_receive_drop_total{{{nic}}}[{RATE}]) + "
                          f"rate(node_network_transmit_drop_total{{{nic}}}[{RATE}])",
                          "{{instance}} {{device}} drops"), unit="pps", width=8),
        timeseries("TCP retransmits", "Share of TCP segments sent again: loss or congestion "
                   "between the host and its clients.",
                   promql(f"rate(node_netstat_Tcp_RetransSegs{{{NODE}}}[{RATE}]) / "
                          f"rate(node_netstat_Tcp_OutSegs{{{NODE}}}[{RATE}])", "{{instance}}"),
                   unit="percentunit", width=8),
    )


def _time_row():
    return row(
        "Time",
        timeseries("Clock offset", "The kernel's estimate of its offset from the NTP source "
                   "and its maximum error (adjtimex), and this host's clock minus Prometheus' "
                   "clock at the scrape (a cross-host check that works without NTP data).",
                   promql(f"node_timex_offset_seconds{{{NODE}}}", "{{instance}} NTP offset"),
                   promql(f"node_timex_maxerror_seconds{{{NODE}}}",
                          "{{instance}} NTP max error"),
                   promql(f"node_time_seconds{{{NODE}}} - timestamp(node_time_seconds{{{NODE}}})",
                          "{{instance}} vs Prometheus"),
                   unit="s", steps=((ORANGE, 0.05),), width=12),
        timeseries("NTP synchronised", "1 while the kernel reports the clock synchronised "
                   "(adjtimex status), per host.",
                   promql(f"node_timex_sync_status{{{NODE}}}", "{{instance}}"), unit="short",
                   width=12),
    )


def _backups_row():
    return row(
        "Backups",
        stat("Last good backup", "Time since the last successful database backup (textfile "
             "collector, written by the nightly backup job); BackupTooOld fires over 26 h.",
             promql(f"time() - max(vigil_backup_last_success_timestamp_seconds{{{NODE}}})"),
             unit="s", steps=((GREEN, None), (RED, 93600)), no_value="no backup yet",
             links=(nav.runbook_link("backup.md"),), width=6),
        stat("Last backup size", "Size of the last successful backup; a sudden drop means "
             "data is missing from it.",
             promql(f"max(vigil_backup_last_size_bytes{{{NODE}}})"), unit="bytes",
             steps=((BLUE, None),), no_value="no backup yet", width=6),
        markdown("Where to look next", "Logs of this host, runbooks, and the services it "
                 "runs.",
                 nav.next_steps(logs=[("Errors in this host's logs", HOST_LOGS),
                                      ("Kernel OOM lines", KERNEL_LOGS)],
                                runbooks=[("host alerts", "node.md"), ("backups", "backup.md")],
                                related=("api", "postgresql", "monitoring")),
                 width=12),
    )


def build():
    variables = [query_variable("instance", 'label_values(node_uname_info{job="node"}, instance)')]
    return assemble(
        UID, "Vigil host", "Is the host saturated? USE per resource, PSI, OOM kills, inodes, "
        "disk latency, time sync and backups.",
        [_saturated_row(), _cpu_row(), _memory_row(), _disk_row(), _network_row(), _time_row(),
         _backups_row()],
        variables=variables,
        links=nav.top_links(logs=("Errors in this host's logs", HOST_LOGS), runbook="node.md",
                            related=("api", "postgresql", "monitoring")),
    )
