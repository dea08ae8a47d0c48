"""Tests of lab/bmcsim.py against real simulator processes.

Each test starts one bmcsim on free ports with a dummy host (``sleep 3600.<marker>``)
in a temporary host directory, and talks to it with the real clients: ipmitool
(lanplus), pyghmi (in a subprocess: one client session per process) and plain HTTP
for Redfish. Outcomes are checked on the processes themselves (/proc), not only on
what the BMC answers. Every process a test starts is killed in the fixture's
finalizer, found by its unique marker.
"""

import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
BMCSIM = REPO / "lab" / "bmcsim.py"
IPMITOOL = shutil.which("ipmitool")
USER = "admin"
PASSWORD = "s3cret-Pw"

needs_ipmitool = pytest.mark.skipif(IPMITOOL is None, reason="ipmitool is not installed")


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid):
    """Running or stopped, but not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except FileNotFoundError:
        return False
    return data[data.rindex(")") + 2] not in "ZX"


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def wait_until(predicate, timeout=5.0, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def write_json_atomic(path, data):
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


PYGHMI_CLIENT = r"""
import json, sys
from pyghmi.exceptions import IpmiException
from pyghmi.ipmi.command import Command
port, user, password, actions = int(sys.argv[1]), sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
results = []
try:
    cmd = Command(bmc="127.0.0.1", userid=user, password=password, port=port)
    for action in actions:
        if action == "get":
            results.append(cmd.get_power()["powerstate"])
        elif action == "raw_off":  # chassis control power down, without pyghmi's state check
            results.append(cmd.raw_command(netfn=0, command=2, data=[0])["code"])
        else:
            results.append(cmd.set_power(action))
except IpmiException as exc:
    results.append({"error": str(exc)})
print(json.dumps(results))
"""


class Sim:
    """One bmcsim process and its host directory."""

    def __init__(self, tmp_path):
        self.dir = tmp_path / "host"
        self.dir.mkdir()
        self.marker = "3600.%08d" % random.randrange(10 ** 8)
        self.ipmi_port = free_port(socket.SOCK_DGRAM)
        self.redfish_port = free_port(socket.SOCK_STREAM)
        self.name = "compute-t%d" % random.randrange(1000)
        self.config = {
            "name": self.name, "address": "127.0.0.1",
            "ipmi_port": self.ipmi_port, "redfish_port": self.redfish_port,
            "username": USER, "password": PASSWORD, "fail_mode": None, "slow_delay": 1.0,
        }
        write_json_atomic(self.dir / "bmc.json", self.config)
        write_json_atomic(self.dir / "compute.json", {
            "argv": ["sleep", self.marker], "env": {"BMCSIM_TEST": "1"},
            "cwd": str(tmp_path), "log": str(tmp_path / "compute.log"),
        })
        self.children = []  # Popen objects this test started directly
        self.proc = None
        self.stderr = open(tmp_path / "bmcsim.stderr", "wb")

    # -- lifecycle --------------------------------------------------------------
    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, str(BMCSIM), "--host-dir", str(self.dir)],
            stdin=subprocess.DEVNULL, stdout=self.stderr, stderr=self.stderr)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError("bmcsim exited with %s" % self.proc.returncode)
            if not (self.dir / "bmc.pid").exists():
                return False
            try:
                return self.redfish("GET", "/redfish/v1", auth=None, timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(ready, timeout=15, what="bmcsim readiness")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.kill_marked_processes()
        for child in self.children:
            child.wait()
        self.stderr.close()

    def kill_marked_processes(self):
        for entry in os.listdir("/proc"):
            if entry.isdigit() and self.marker in cmdline(int(entry)):
                try:
                    os.kill(int(entry), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def set_fail_mode(self, mode, **extra):
        self.config.update(fail_mode=mode, **extra)
        write_json_atomic(self.dir / "bmc.json", self.config)

    # -- the lab controller's side ----------------------------------------------
    def start_host(self, argv=None):
        """Start the dummy host as the lab controller would (power on, pid file)."""
        child = subprocess.Popen(argv or ["sleep", self.marker], start_new_session=True,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.children.append(child)
        (self.dir / "compute.pid").write_text("%d\n" % child.pid)
        (self.dir / "power").write_text("on\n")
        return child.pid

    def host_pid(self):
        try:
            return int((self.dir / "compute.pid").read_text())
        except FileNotFoundError:
            return None

    def power_file(self):
        return (self.dir / "power").read_text().strip()

    def events(self):
        try:
            lines = (self.dir / "bmc-events.log").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines]

    # -- clients ----------------------------------------------------------------
    def ipmitool(self, *args, password=PASSWORD, extra=(), timeout=30):
        argv = [IPMITOOL, "-I", "lanplus", "-H", "127.0.0.1", "-p", str(self.ipmi_port),
                "-U", USER, "-E", *extra, *args]
        env = dict(os.environ, IPMI_PASSWORD=password)
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)

    def ipmi_status(self):
        result = self.ipmitool("power", "status")
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().rsplit(" ", 1)[-1]

    def pyghmi(self, *actions, password=PASSWORD):
        result = subprocess.run(
            [sys.executable, "-c", PYGHMI_CLIENT, str(self.ipmi_port), USER, password,
             json.dumps(actions)],
            capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def redfish(self, method, path, body=None, auth=(USER, PASSWORD), timeout=5):
        """(status, parsed JSON body or None)."""
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        request = urllib.request.Request(
            "http://127.0.0.1:%d%s" % (self.redfish_port, path), data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth:
            token = base64.b64encode(("%s:%s" % auth).encode()).decode()
            request.add_header("Authorization", "Basic " + token)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        return status, (json.loads(raw) if raw else None)

    @property
    def system_path(self):
        return "/redfish/v1/Systems/" + self.name

    def redfish_power(self):
        status, body = self.redfish("GET", self.system_path)
        assert status == 200, body
        return body["PowerState"]

    def reset(self, reset_type, **kwargs):
        return self.redfish("POST", self.system_path + "/Actions/ComputerSystem.Reset",
                            {"ResetType": reset_type}, **kwargs)


@pytest.fixture
def sim(tmp_path):
    """A running bmcsim whose host was started by the 'lab controller' (power on)."""
    s = Sim(tmp_path)
    try:
        s.start_host()
        s.start()
        yield s
    finally:
        s.stop()


# ---------------------------------------------------------------------------
# IPMI with ipmitool
# ---------------------------------------------------------------------------

@needs_ipmitool
def test_ipmitool_status_off_on(sim):
    first = sim.host_pid()
    assert alive(first)
    assert sim.ipmi_status() == "on"

    started = time.monotonic()
    off = sim.ipmitool("power", "off")
    assert off.returncode == 0, off.stderr
    # The BMC answers only once the host is really gone: no waiting here.
    assert not alive(first)
    elapsed = time.monotonic() - started
    print("ipmitool off + verified dead: %.3f s" % elapsed)
    assert sim.host_pid() is None and sim.power_file() == "off"
    assert sim.ipmi_status() == "off"

    again = sim.ipmitool("power", "off")
    assert again.returncode == 0, again.stderr  # off when off is not an error
    assert sim.ipmi_status() == "off"

    on = sim.ipmitool("power", "on")
    assert on.returncode == 0, on.stderr
    second = sim.host_pid()
    assert second is not None and second != first and alive(second)
    assert sim.marker in cmdline(second)
    assert sim.ipmi_status() == "on"
    on_again = sim.ipmitool("power", "on")
    assert on_again.returncode == 0 and sim.host_pid() == second  # no second host


@needs_ipmitool
def test_ipmitool_cycle_and_reset_restart_the_host(sim):
    pid = sim.host_pid()
    for verb in ("cycle", "reset"):
        result = sim.ipmitool("power", verb)
        assert result.returncode == 0, result.stderr
        assert not alive(pid)
        new = sim.host_pid()
        assert new != pid and alive(new)
        pid = new
    assert sim.ipmi_status() == "on"


@needs_ipmitool
def test_ipmitool_with_explicit_cipher_suite_3_and_refused_17(sim):
    assert sim.ipmitool("power", "status", extra=("-C", "3")).returncode == 0
    refused = sim.ipmitool("power", "status", extra=("-C", "17"))
    assert refused.returncode != 0
    assert "cipher suite" in refused.stderr


@needs_ipmitool
def test_ipmitool_wrong_password_and_unknown_user_fail(sim):
    assert sim.ipmitool("power", "status", password="wrong").returncode != 0
    unknown = subprocess.run(
        [IPMITOOL, "-I", "lanplus", "-H", "127.0.0.1", "-p", str(sim.ipmi_port),
         "-U", "nobody", "-P", "x", "-N", "1", "-R", "1", "power", "status"],
        capture_output=True, text=True, timeout=30)
    assert unknown.returncode != 0


@needs_ipmitool
def test_frozen_host_is_on_and_off_kills_it(sim):
    pid = sim.host_pid()
    os.kill(pid, signal.SIGSTOP)
    assert alive(pid)
    assert sim.ipmi_status() == "on"
    assert sim.ipmitool("power", "off").returncode == 0
    assert not alive(pid)


@needs_ipmitool
def test_off_kills_the_whole_process_group(sim, tmp_path):
    # A host that forks a helper into its own process group.
    sim.ipmitool("power", "off")
    spec = json.loads((sim.dir / "compute.json").read_text())
    spec["argv"] = ["sh", "-c", "sleep %s & echo $! > %s/helper.pid; wait" % (sim.marker, tmp_path)]
    write_json_atomic(sim.dir / "compute.json", spec)
    assert sim.ipmitool("power", "on").returncode == 0
    helper_file = tmp_path / "helper.pid"
    helper = int(wait_until(lambda: helper_file.exists() and helper_file.read_text().strip(),
                            what="helper pid"))
    leader = sim.host_pid()
    assert alive(leader) and alive(helper)
    assert sim.ipmitool("power", "off").returncode == 0
    assert not alive(leader) and not alive(helper)


# ---------------------------------------------------------------------------
# IPMI with the pyghmi client
# ---------------------------------------------------------------------------

def test_pyghmi_get_and_set_power(sim):
    pid = sim.host_pid()
    # pyghmi proposes SHA-256 first; the simulator must refuse it so pyghmi falls back.
    assert sim.pyghmi("get", "off") == ["on", {"pendingpowerstate": "off"}]
    assert not alive(pid)
    assert sim.pyghmi("get", "on", "get") == ["off", {"pendingpowerstate": "on"}, "on"]
    assert alive(sim.host_pid()) and sim.host_pid() != pid


def test_pyghmi_wrong_password(sim):
    [result] = sim.pyghmi("get", password="wrong")
    assert "Incorrect password" in result["error"]


# ---------------------------------------------------------------------------
# Redfish
# ---------------------------------------------------------------------------

def test_redfish_resources(sim):
    status, root = sim.redfish("GET", "/redfish/v1", auth=None)  # no auth needed
    assert status == 200 and root["Systems"]["@odata.id"] == "/redfish/v1/Systems"
    status, systems = sim.redfish("GET", "/redfish/v1/Systems")
    assert status == 200
    assert systems["Members"] == [{"@odata.id": sim.system_path}]
    status, system = sim.redfish("GET", sim.system_path + "/")  # trailing slash tolerated
    assert status == 200
    assert system["Id"] == sim.name and system["PowerState"] == "On"
    action = system["Actions"]["#ComputerSystem.Reset"]
    assert action["target"] == sim.system_path + "/Actions/ComputerSystem.Reset"
    assert {"On", "ForceOff", "GracefulShutdown", "ForceRestart", "PowerCycle"} <= set(
        action["ResetType@Redfish.AllowableValues"])


def test_redfish_force_off_and_on(sim):
    pid = sim.host_pid()
    started = time.monotonic()
    status, _ = sim.reset("ForceOff")
    assert status == 204
    assert not alive(pid)
    print("redfish ForceOff + verified dead: %.3f s" % (time.monotonic() - started))
    assert sim.redfish_power() == "Off"
    assert sim.reset("ForceOff")[0] == 204  # already off: success
    assert sim.reset("On")[0] == 204
    new = sim.host_pid()
    assert new != pid and alive(new)
    assert sim.redfish_power() == "On"
    assert sim.reset("PowerCycle")[0] == 204
    assert not alive(new) and alive(sim.host_pid())
    assert sim.reset("GracefulShutdown")[0] == 204
    assert sim.redfish_power() == "Off"


def test_redfish_errors(sim):
    assert sim.redfish("GET", sim.system_path, auth=(USER, "wrong"))[0] == 401
    assert sim.redfish("GET", "/redfish/v1/Systems", auth=None)[0] == 401
    assert sim.reset("ForceOff", auth=None)[0] == 401
    status, body = sim.reset("Explode")
    assert status == 400 and "error" in body
    status, body = sim.redfish("POST", sim.system_path + "/Actions/ComputerSystem.Reset", b"{not json")
    assert status == 400 and "error" in body
    assert sim.redfish("GET", "/redfish/v1/Managers/nothing")[0] == 404
    assert sim.redfish("POST", sim.system_path, {"x": 1})[0] == 405
    assert alive(sim.host_pid())  # none of this touched the host


# ---------------------------------------------------------------------------
# crashed host, events log, BMC restart
# ---------------------------------------------------------------------------

@needs_ipmitool
def test_crashed_host_reports_on_and_power_on_restarts_it(sim):
    pid = sim.host_pid()
    os.kill(pid, signal.SIGKILL)
    sim.children[0].wait()  # reaped: gone from /proc
    assert sim.ipmi_status() == "on"  # nobody cut the power
    assert sim.redfish_power() == "On"
    assert sim.ipmitool("power", "on").returncode == 0
    assert alive(sim.host_pid()) and sim.host_pid() != pid


@needs_ipmitool
def test_crashed_zombie_host_reports_on_and_off_turns_it_off(sim):
    pid = sim.host_pid()
    os.kill(pid, signal.SIGKILL)  # not reaped: stays a zombie of this test process
    wait_until(lambda: not alive(pid), what="zombie")
    assert sim.ipmi_status() == "on"
    assert sim.ipmitool("power", "off").returncode == 0
    assert sim.ipmi_status() == "off"
    assert not any(e["action"] == "killed" for e in sim.events())


@needs_ipmitool
def test_events_log_records_actions_in_order(sim):
    before = time.time()
    pid = sim.host_pid()
    sim.ipmitool("power", "off")
    answered = time.time()
    sim.reset("On")
    new = sim.host_pid()
    after = time.time()
    events = sim.events()
    actions = [(e["proto"], e["action"], e["result"]) for e in events]
    assert actions == [("ipmi", "killed", "ok"), ("ipmi", "off", "ok"),
                       ("redfish", "started", "ok"), ("redfish", "On", "ok")]
    killed, off, started, on = events
    assert killed["pid"] == pid and started["pid"] == new
    assert off["power_before"] == "on" and off["changed"] is True
    assert on["power_before"] == "off"
    # Wall-clock stamps: the kill happened before the BMC answered the client.
    assert before <= killed["t"] <= off["t"] <= answered <= started["t"] <= on["t"] <= after
    assert all(PASSWORD not in line for line in (sim.dir / "bmc-events.log").read_text().splitlines())
    assert PASSWORD.encode() not in (sim.dir.parent / "bmcsim.stderr").read_bytes()


def test_sigterm_removes_bmc_pid_and_leaves_host_running(sim):
    pid = sim.host_pid()
    sim.proc.terminate()
    assert sim.proc.wait(5) == 0
    assert not (sim.dir / "bmc.pid").exists()
    assert alive(pid)


# ---------------------------------------------------------------------------
# fail modes
# ---------------------------------------------------------------------------

@needs_ipmitool
def test_fail_mode_slow(sim):
    sim.set_fail_mode("slow", slow_delay=1.0)
    pid = sim.host_pid()
    started = time.monotonic()
    assert sim.ipmitool("power", "off").returncode == 0
    assert time.monotonic() - started < 0.9  # answered at once
    assert sim.ipmi_status() == "on" and alive(pid)
    assert sim.redfish_power() == "On"
    wait_until(lambda: sim.ipmi_status() == "off", timeout=5, what="slow power off")
    assert not alive(pid)
    off = next(e for e in sim.events() if e["action"] == "off")
    killed = next(e for e in sim.events() if e["action"] == "killed")
    assert killed["t"] - off["t"] >= 0.95


@needs_ipmitool
def test_fail_mode_slow_power_on_cancels_pending_off(sim):
    sim.set_fail_mode("slow", slow_delay=0.5)
    pid = sim.host_pid()
    assert sim.reset("ForceOff")[0] == 204
    assert sim.reset("On")[0] == 204
    time.sleep(0.8)  # past the delay: the cancelled off must not happen
    assert alive(pid) and sim.redfish_power() == "On"


@needs_ipmitool
def test_fail_mode_unreachable(sim):
    sim.set_fail_mode("unreachable")
    started = time.monotonic()
    result = sim.ipmitool("power", "status", extra=("-N", "1", "-R", "1"))
    assert result.returncode != 0
    print("ipmitool -N 1 -R 1 against unreachable: %.2f s" % (time.monotonic() - started))
    with pytest.raises(OSError):  # socket.timeout / TimeoutError is an OSError
        sim.redfish("GET", sim.system_path, timeout=1)
    with pytest.raises(OSError):
        sim.redfish("GET", "/redfish/v1", auth=None, timeout=1)
    assert alive(sim.host_pid())
    # Back to normal: the held connection must not block new requests.
    sim.set_fail_mode(None)
    assert sim.redfish_power() == "On"
    assert sim.ipmi_status() == "on"


@needs_ipmitool
def test_fail_mode_bad_credentials(sim):
    sim.set_fail_mode("bad_credentials")
    result = sim.ipmitool("power", "off")
    assert result.returncode != 0
    assert "Unable to establish" in result.stderr
    assert sim.redfish("GET", sim.system_path)[0] == 401
    assert sim.redfish("GET", "/redfish/v1", auth=None)[0] == 401
    assert sim.reset("ForceOff")[0] == 401
    [refused] = sim.pyghmi("get")
    assert "error" in refused
    assert alive(sim.host_pid())
    sim.set_fail_mode(None)
    assert sim.ipmi_status() == "on"


@needs_ipmitool
def test_fail_mode_lying(sim):
    sim.set_fail_mode("lying")
    pid = sim.host_pid()
    assert sim.ipmitool("power", "off").returncode == 0
    assert sim.ipmi_status() == "off"
    assert sim.redfish_power() == "Off"
    assert sim.power_file() == "off"
    assert alive(pid)  # the host still runs
    assert not any(e["action"] == "killed" for e in sim.events())


@needs_ipmitool
def test_fail_mode_already_off_error(sim):
    sim.set_fail_mode("already_off_error")
    pid = sim.host_pid()
    assert sim.ipmitool("power", "off").returncode == 0  # the first off works
    assert not alive(pid)
    refused = sim.ipmitool("power", "off")
    assert refused.returncode != 0
    assert "present state" in refused.stderr
    assert sim.pyghmi("raw_off") == [0xD5]
    status, body = sim.reset("ForceOff")
    assert status == 409
    assert body["error"]["@Message.ExtendedInfo"][0]["MessageId"]
    assert sim.ipmi_status() == "off"
    assert sim.reset("On")[0] == 204 and alive(sim.host_pid())


def test_fail_mode_change_needs_no_restart(sim):
    """fail_mode is re-read per request; a malformed bmc.json keeps the last settings."""
    sim.set_fail_mode("bad_credentials")
    assert sim.redfish("GET", sim.system_path)[0] == 401
    (sim.dir / "bmc.json").write_text("{broken")
    assert sim.redfish("GET", sim.system_path)[0] == 401
    sim.set_fail_mode(None)
    assert sim.redfish("GET", sim.system_path)[0] == 200


def test_concurrent_redfish_requests_are_served(sim):
    """A held (unreachable) connection does not block another thread's request."""
    sim.set_fail_mode("unreachable")
    errors = []

    def held():
        try:
            sim.redfish("GET", sim.system_path, timeout=3)
        except OSError as exc:
            errors.append(exc)

    thread = threading.Thread(target=held)
    thread.start()
    stderr = sim.dir.parent / "bmcsim.stderr"
    wait_until(lambda: b"holding the connection" in stderr.read_bytes(), what="held request")
    sim.set_fail_mode(None)
    started = time.monotonic()
    assert sim.redfish_power() == "On"
    assert time.monotonic() - started < 1.0
    thread.join()
    assert errors
