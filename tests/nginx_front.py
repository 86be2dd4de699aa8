"""The appliance's nginx site (the role's own template) rendered and run on loopback for tests:
``with run_nginx(tmp_path, upstream="127.0.0.1:8000") as front: front.url``.

The site is rendered from ``appliance/roles/nginx/templates/vigil.conf.j2`` with the role's
defaults, the way Ansible's template module does (``trim_blocks``), so its rate limits and
allowlist are the deployed ones. What is adapted, and only this: the logs and the stub_status
port are the test's own (role variables), the listeners move from ports 80/443 on every address
to free loopback ports, and on an nginx older than 1.25.1 (Debian 12 has 1.22, the appliance's
Debian 13 has 1.26) the ``http2 on;`` line is dropped, since that directive does not exist there
yet.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml

ROOT = Path(__file__).resolve().parent.parent
ROLE = ROOT / "appliance" / "roles" / "nginx"
START_TIMEOUT = 15.0


def nginx_binary() -> str:
    # /usr/sbin is not on every PATH (a non-root shell on Debian)
    path = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if path is None:
        raise RuntimeError("nginx not found: `make setup-system` installs it (.ci/apt-packages)")
    return path


def nginx_version() -> tuple[int, ...]:
    out = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True).stderr
    return tuple(int(n) for n in re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out).groups())


def _render_value(env, value, context):
    """A default rendered the way Ansible resolves it: templates inside lists and dicts too."""
    if isinstance(value, str) and "{{" in value:
        return env.from_string(value).render(context)
    if isinstance(value, list):
        return [_render_value(env, v, context) for v in value]
    if isinstance(value, dict):
        return {k: _render_value(env, v, context) for k, v in value.items()}
    return value


def render_site(groups: dict | None = None, hostvars: dict | None = None, **variables) -> str:
    """The role's vigil.conf.j2 rendered with its defaults, overridden by ``variables``."""
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, trim_blocks=True, keep_trailing_newline=True
    )
    env.filters["regex_escape"] = re.escape  # Ansible's filters the template uses
    env.filters["dirname"] = os.path.dirname
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    context = {
        "ansible_managed": "test",
        "inventory_hostname": "vigil",
        "playbook_dir": str(ROOT / "playbooks"),
        "groups": groups or {},
        "hostvars": hostvars or {},
        **defaults,
        **variables,
    }
    for name, value in defaults.items():  # defaults may be templates themselves
        if name not in variables:
            context[name] = _render_value(env, value, context)
    template = (ROLE / "templates" / "vigil.conf.j2").read_text()
    return env.from_string(template).render(context)


def local_files(directory: Path) -> dict:
    """Variables that keep a test's nginx to its own directory: its logs, its DH parameters (the
    named ffdhe2048 group, as the role writes them), no fixed port."""
    directory.mkdir(parents=True, exist_ok=True)
    dhparam = directory / "ffdhe2048.pem"
    if not dhparam.exists():
        subprocess.run(["openssl", "genpkey", "-genparam", "-algorithm", "DH", "-pkeyopt",
                        "group:ffdhe2048", "-out", str(dhparam)], check=True, capture_output=True)
    return {
        "nginx_access_log": str(directory / "access.log"),
        "nginx_error_log": str(directory / "error.log"),
        "nginx_status_port": _free_port(),
        "nginx_tls_dhparam": str(dhparam),
    }


def one_upstream(address: str) -> dict:
    """render_site's arguments for one API node at ``host:port`` (the api group of one host)."""
    host, port = address.rsplit(":", 1)
    return {"groups": {"api": ["api-node"]}, "hostvars": {"api-node": {"vigil_private_ip": host}},
            "nginx_api_port": int(port)}


def for_loopback(site: str, http_port: int, https_port: int) -> str:
    """The site with its listeners on loopback ports (see the module docstring)."""
    lines = []
    for line in site.splitlines():
        listen = re.match(r"^(\s*)listen (\[::\]:)?(80|443)\b(.*)$", line)
        if listen:
            if listen.group(2):
                continue  # IPv6 twins: the test machine may have no ::1
            port = http_port if listen.group(3) == "80" else https_port
            line = f"{listen.group(1)}listen 127.0.0.1:{port}{listen.group(4)}"
        elif line.strip() == "http2 on;" and nginx_version() < (1, 25, 1):
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def check_config(site: str, directory: Path) -> subprocess.CompletedProcess:
    """``nginx -t`` on ``site`` inside a minimal http block, as the role's validate step does."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vigil.conf").write_text(site)
    conf = directory / "nginx.conf"
    conf.write_text(
        f"pid {directory / 'nginx.pid'};\nevents {{}}\n"
        f"http {{ include /etc/nginx/mime.types; include {directory / 'vigil.conf'}; }}\n"
    )
    return subprocess.run(
        [nginx_binary(), "-t", "-q", "-p", str(directory), "-c", str(conf), "-e", "stderr"],
        capture_output=True,
        text=True,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate and key for 127.0.0.1 and localhost, written to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "vigil.crt", directory / "vigil.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-sha256",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@dataclass
class RunningNginx:
    """nginx serving the Vigil site on loopback."""

    url: str  # https://127.0.0.1:PORT
    http_url: str
    config: str  # the rendered site as nginx runs it
    error_log: Path
    ca: str  # the self-signed certificate, to verify TLS against


@contextlib.contextmanager
def run_nginx(directory: Path, upstream: str | None = None, extra_http: str = "", **variables):
    """Run nginx with the Vigil site in front of ``upstream`` (host:port, the one API node) until
    the block ends.

    ``variables`` override the role's defaults (``nginx_auth_limit_exempt_addresses=[...]``);
    ``extra_http`` is added to the http block (a test's own stand-in upstream, for instance).
    """
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = self_signed_certificate(directory)
    variables.setdefault("nginx_tls_certificate", str(cert))
    variables.setdefault("nginx_tls_certificate_key", str(key))
    if upstream:
        node = one_upstream(upstream)
        variables["groups"] = {**variables.get("groups", {}), **node["groups"]}
        variables["hostvars"] = {**variables.get("hostvars", {}), **node["hostvars"]}
        variables["nginx_api_port"] = node["nginx_api_port"]
    variables = {**local_files(directory), **variables}
    http_port, https_port = _free_port(), _free_port()
    site = for_loopback(render_site(**variables), http_port, https_port)
    (directory / "vigil.conf").write_text(site)
    error_log = directory / "error.log"
    temp = directory / "temp"
    temp.mkdir(exist_ok=True)
    conf = directory / "nginx.conf"
    conf.write_text(
        f"pid {directory / 'nginx.pid'};\n"
        "worker_processes 1;\n"
        "events { worker_connections 512; }\n"
        "http {\n"
        "    include /etc/nginx/mime.types;\n"
        "    access_log off;\n"
        + "".join(
            f"    {kind}_temp_path {temp / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"    {extra_http}\n"
        f"    include {directory / 'vigil.conf'};\n"
        "}\n"
    )
    proc = subprocess.Popen(
        [
            nginx_binary(),
            "-p",
            str(directory),
            "-c",
            str(conf),
            "-e",
            str(error_log),
            "-g",
            "daemon off;",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"nginx exited with {proc.returncode}:\n{error_log.read_text(errors='replace')}"
                )
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", https_port), timeout=1),
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx not listening after {START_TIMEOUT}s")
            time.sleep(0.05)
        yield RunningNginx(
            f"https://127.0.0.1:{https_port}",
            f"http://127.0.0.1:{http_port}",
            site,
            error_log,
            str(cert),
        )
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)  # graceful: finish in-flight requests
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(directory / "nginx.pid")
