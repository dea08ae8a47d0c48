#!/usr/bin/env python3
"""Simulated BMC for one lab compute host: IPMI 2.0 (lanplus, UDP) and Redfish (HTTP).

The lab runs every "compute host" as one nova-compute process. Each host gets one
bmcsim process whose chassis power IS that host's life: power off kills the host's
process (its whole process group), power on starts it again. The simulator speaks the
real protocols, so the collection's modules, ipmitool and pyghmi can fence the host
exactly as they would fence real hardware.

Usage::

    python lab/bmcsim.py --host-dir DIR

Files in DIR (the lab controller can change behaviour at run time by rewriting them
atomically, i.e. write a temporary file and rename it over the old one):

``bmc.json``
    ``{"name": "compute1", "address": "127.0.0.1", "ipmi_port": 28623,
    "redfish_port": 28801, "username": "admin", "password": "...",
    "fail_mode": null, "slow_delay": 5}``.
    name, address, ports and credentials are read once at start (restart to change
    them); ``fail_mode`` and ``slow_delay`` are re-read on every request. If the file
    becomes unreadable the last good content is used.
``compute.json``
    ``{"argv": [...], "env": {...}, "cwd": "...", "log": "/path/to/compute.log"}``:
    how power on starts the host. ``env`` is laid over the simulator's own
    environment; stdout and stderr are appended to ``log``.
``compute.pid``
    pid of the running host process, written by whoever started it (this program's
    power on, or the lab controller).
``power``
    chassis power as last set: ``on`` or ``off``; a missing file means ``off``.
``bmc.pid``
    written by this program once both listeners are bound (so its presence means
    "ready"); removed on SIGTERM/SIGINT.
``bmc-events.log``
    one JSON object per line, appended: every power action
    (``{"t": <time.time()>, "name": ..., "proto": "ipmi"|"redfish", "action": "off"|
    "on"|"cycle"|..., "result": "ok"|"error", "power_before": "on"|"off",
    "changed": bool, "fail_mode": ..., "detail": ...}``) and the moments a host process
    was really killed (``"action": "killed", "pid": N``) or started
    (``"action": "started", "pid": N``). Tests use the timestamps to prove that the
    host was fenced before it was evacuated.

Requests are logged to stderr (never the password).

Power semantics
---------------
* The host process is alive when the pid in ``compute.pid`` exists and is not a zombie
  (a SIGSTOPped, frozen process is alive). A pid file older than the process carrying
  that pid is stale (the pid was reused) and is ignored, so an unrelated process is
  never killed.
* Power status is ``on`` while the process is alive, otherwise the content of
  ``power``: a crashed host (process died, nobody cut the power) still reports ``on``,
  like a kernel panic on real hardware.
* Power off (IPMI chassis control power down / soft off; Redfish ForceOff,
  GracefulShutdown, PushPowerButton): write ``power=off``, SIGKILL the process group
  (hosts are started as session leaders; if the process does not lead its own group,
  only the process itself is killed), poll until it is really gone, remove
  ``compute.pid``. Off when already off succeeds and changes nothing.
* Power on (IPMI power up; Redfish On, ForceOn): write ``power=on`` and, if the process
  is not alive, start it in a new session and write ``compute.pid``. A thread waits on
  each child started here, so a host that dies does not stay a zombie.
* Power cycle / hard reset (IPMI), ForceRestart / GracefulRestart / PowerCycle
  (Redfish): off, then on.

Fail modes (``fail_mode`` in bmc.json)
--------------------------------------
``slow``
    power off (and cycle) is answered at once, but carried out ``slow_delay`` seconds
    later; status keeps saying ``on`` until then. A power on in between cancels it.
``unreachable``
    IPMI packets are dropped unanswered; Redfish connections are held ~30 s and then
    closed without a response (threaded server: other requests are not blocked).
``bad_credentials``
    the BMC acts as if its password had been changed: the RAKP 2 message is signed
    with a different key, so IPMI clients reject the session ("RAKP 2 HMAC is invalid"
    in ipmitool, "Incorrect password provided" in pyghmi); Redfish answers 401 to
    everything, the service root included.
``already_off_error``
    as normal, but power off while already off fails: IPMI completion code 0xD5
    ("command not supported in present state"), Redfish HTTP 409 with a Redfish error
    body (as real iLO/iDRAC do).
``lying``
    power off is answered with success and ``power`` is written ``off``, but the
    process keeps running; status reports the ``power`` file regardless of the process.

IPMI details
------------
Built on pyghmi's server classes (``pyghmi.ipmi.bmc.Bmc``). Only cipher suite 3
(HMAC-SHA1 / HMAC-SHA1-96 / AES-CBC-128) is offered, which is all pyghmi's server
implements. Open-session requests proposing anything else are refused with RMCP+
status 0x11 ("no cipher suite match"); pyghmi's own client proposes SHA-256 first and,
without that refusal, crashes with ``struct.error`` against pyghmi's server. Unknown
user names get RAKP 2 status 0x0D ("unauthorized name") instead of silence.

Working client invocations (ipmitool 1.8.19, Debian 12)::

    ipmitool -I lanplus -H 127.0.0.1 -p PORT -U admin -P PASSWORD power status|on|off|cycle|reset|soft
    ipmitool -I lanplus -C 3 -H 127.0.0.1 -p PORT -U admin -P PASSWORD power status

(``-E`` with ``IPMI_PASSWORD`` in the environment works instead of ``-P`` and keeps the
password out of the process list.) ``-C`` is not needed: without it ipmitool asks for
the cipher suite list and picks 3.
``-C 17`` (SHA-256) fails with "no matching cipher suite". For quick failure against an
unreachable BMC add ``-N 1 -R 1`` (1 s timeout, 1 retry).

pyghmi client: ``pyghmi.ipmi.command.Command(bmc="127.0.0.1", userid="admin",
password="...", port=PORT)``; use one client session per process (see LAB-NOTES).
``Command.set_power(state)`` reads the power state first and sends nothing when it
already matches, so it never sees the already-off error (``raw_command(netfn=0,
command=2, data=[0])`` does). pyghmi client calls sometimes stall 0.5-1 s on the client
side even against this local BMC (the BMC answers in under 1 ms; ipmitool shows no such
stalls): do not build tight timing assertions on pyghmi round trips.

Redfish (basic auth on everything but ``GET /redfish/v1``)
----------------------------------------------------------
``GET /redfish/v1``, ``GET /redfish/v1/Systems``, ``GET /redfish/v1/Systems/<name>``
(PowerState "On"/"Off", Actions with the Reset target and allowable values),
``POST /redfish/v1/Systems/<name>/Actions/ComputerSystem.Reset`` with
``{"ResetType": ...}``: 204 on success, 400 for malformed JSON or an unknown
ResetType, 409 in ``already_off_error`` mode, 500 if the host could not be started.
Unknown paths: 404; other methods on known paths: 405.
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pyghmi.ipmi.bmc as pyghmi_bmc
import pyghmi.ipmi.private.constants as ipmi_constants
import pyghmi.ipmi.private.serversession as pyghmi_serversession
import pyghmi.ipmi.private.session as pyghmi_session

FAIL_MODES = (None, "slow", "unreachable", "bad_credentials", "already_off_error", "lying")

# Outcomes of a power action, mapped to IPMI completion codes / HTTP statuses.
OK = "ok"
ALREADY_OFF = "already_off"  # only in fail mode already_off_error
FAILED = "failed"

IPMI_CODES = {OK: 0x00, ALREADY_OFF: 0xD5, FAILED: 0xFF}

KILL_TIMEOUT = 10.0  # seconds to wait for a SIGKILLed host to disappear
UNREACHABLE_HOLD = 30.0  # seconds a Redfish connection is held in "unreachable" mode
SESSION_IDLE_TIMEOUT = 120.0  # IPMI sessions silent this long are forgotten

_log_lock = threading.Lock()
_log_name = "bmcsim"


def log(message):
    """One line to stderr; never pass secrets here."""
    now = time.time()
    stamp = time.strftime("%H:%M:%S", time.localtime(now)) + ".%03d" % (int(now * 1000) % 1000)
    with _log_lock:
        sys.stderr.write("%s %s %s\n" % (stamp, _log_name, message))
        sys.stderr.flush()


def write_atomic(path, text):
    tmp = "%s.tmp.%d.%d" % (path, os.getpid(), threading.get_ident())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# Processes (Linux /proc)
# ---------------------------------------------------------------------------

def proc_stat(pid):
    """Return (state, pgrp, starttime_ticks) of a process, or None if it does not exist."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the
    # last ")". Fields from there on: state ppid pgrp session tty tpgid flags minflt
    # cminflt majflt cmajflt utime stime cutime cstime priority nice threads
    # itrealvalue starttime ...
    fields = data[data.rindex(")") + 2:].split()
    return fields[0], int(fields[2]), int(fields[19])


def is_running(pid):
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _boot_time():
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return int(line.split()[1])
    return 0


BOOT_TIME = _boot_time()
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_start_time(pid):
    """Wall-clock start time of a process (about 1 s resolution), or None."""
    stat = proc_stat(pid)
    if stat is None:
        return None
    return BOOT_TIME + stat[2] / CLOCK_TICKS


def group_has_live_members(pgid):
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = proc_stat(int(entry))
        if stat is not None and stat[1] == pgid and stat[0] not in ("Z", "X"):
            return True
    return False


def kill_host_process(pid):
    """SIGKILL a host process (its whole group if it leads one) and wait until gone.

    Raises TimeoutError if it is still there after KILL_TIMEOUT seconds.
    """
    group = None
    try:
        pgid = os.getpgid(pid)
        # Only kill a whole group the process leads, and never our own group.
        if pgid == pid and pgid != os.getpgrp():
            group = pgid
            os.killpg(pgid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + KILL_TIMEOUT
    while is_running(pid) or (group is not None and group_has_live_members(group)):
        if time.monotonic() > deadline:
            raise TimeoutError("process %d still alive %.0f s after SIGKILL" % (pid, KILL_TIMEOUT))
        time.sleep(0.002)


# ---------------------------------------------------------------------------
# The host directory
# ---------------------------------------------------------------------------

class HostDir:
    """Reads and writes the files of one host directory."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.bmc_json = os.path.join(self.path, "bmc.json")
        self.compute_json = os.path.join(self.path, "compute.json")
        self.compute_pid = os.path.join(self.path, "compute.pid")
        self.power_file = os.path.join(self.path, "power")
        self.bmc_pid = os.path.join(self.path, "bmc.pid")
        self.events_log = os.path.join(self.path, "bmc-events.log")
        self._config = None
        self._warned = set()

    def config(self):
        """bmc.json, re-read on every call; the last good content if it is unreadable."""
        try:
            with open(self.bmc_json) as f:
                config = json.load(f)
            if not isinstance(config, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            if self._config is None:
                raise
            self._warn("bmc.json unreadable (%s), keeping the previous settings" % exc)
            return self._config
        mode = config.get("fail_mode")
        if mode not in FAIL_MODES:
            self._warn("unknown fail_mode %r in bmc.json, behaving normally" % (mode,))
            config["fail_mode"] = None
        try:
            config["slow_delay"] = float(config.get("slow_delay", 5))
        except (TypeError, ValueError):
            config["slow_delay"] = 5.0
        self._config = config
        return config

    def _warn(self, message):
        if message not in self._warned:
            self._warned.add(message)
            log("WARNING " + message)

    def fail_mode(self):
        return self.config().get("fail_mode")

    def read_power(self):
        try:
            with open(self.power_file) as f:
                return "on" if f.read().strip() == "on" else "off"
        except FileNotFoundError:
            return "off"

    def write_power(self, state):
        write_atomic(self.power_file, state + "\n")

    def host_pid(self):
        """The pid of the live host process, or None.

        A pid file written before the process holding that pid started is stale:
        the host died and its pid was reused by some unrelated process.
        """
        try:
            with open(self.compute_pid) as f:
                pid = int(f.read().strip())
            written = os.stat(self.compute_pid).st_mtime
        except (OSError, ValueError):
            return None
        if pid <= 0 or not is_running(pid):
            return None
        started = process_start_time(pid)
        if started is not None and started > written + 2.0:  # 2 s: btime resolution
            return None
        return pid

    def remove_pid(self, pid):
        """Remove compute.pid if it still names pid."""
        try:
            with open(self.compute_pid) as f:
                if f.read().strip() != str(pid):
                    return
            os.unlink(self.compute_pid)
        except (OSError, ValueError):
            pass

    def write_pid(self, pid):
        write_atomic(self.compute_pid, "%d\n" % pid)

    def compute_spec(self):
        with open(self.compute_json) as f:
            return json.load(f)


# ---------------------------------------------------------------------------
# The chassis: power state shared by both protocols
# ---------------------------------------------------------------------------

class Chassis:
    """Power logic, serialised by one lock; both protocol front ends call into it."""

    def __init__(self, hostdir, name):
        self.dir = hostdir
        self.name = name
        self.lock = threading.RLock()
        self._event_lock = threading.Lock()
        self._pending = None  # cancel flag (threading.Event) of a delayed "slow" off

    # -- events ------------------------------------------------------------
    def event(self, proto, action, result, **fields):
        record = {"t": time.time(), "name": self.name, "proto": proto,
                  "action": action, "result": result}
        record.update(fields)
        line = json.dumps(record) + "\n"
        with self._event_lock:
            with open(self.dir.events_log, "a") as f:
                f.write(line)
        log("event " + line.strip())

    # -- state ---------------------------------------------------------------
    def status(self):
        with self.lock:
            return self._status(self.dir.fail_mode())

    def _status(self, mode):
        power = self.dir.read_power()
        if mode == "lying":
            return power
        if self.dir.host_pid() is not None:
            return "on"
        return power

    # -- actions -------------------------------------------------------------
    def power_off(self, proto, action="off"):
        with self.lock:
            config = self.dir.config()
            mode = config["fail_mode"]
            before = self._status(mode)
            common = {"power_before": before, "fail_mode": mode}
            if before == "off":
                if mode == "already_off_error":
                    self.event(proto, action, "error", changed=False,
                               detail="already off: refused (fail mode)", **common)
                    return ALREADY_OFF
                self.event(proto, action, "ok", changed=False, detail="already off", **common)
                return OK
            if mode == "lying":
                self.dir.write_power("off")
                self.event(proto, action, "ok", changed=True,
                           detail="lying: power reported off, host process left running", **common)
                return OK
            if mode == "slow":
                delay = config["slow_delay"]
                scheduled = self._schedule(proto, delay, power_on_after=False)
                self.event(proto, action, "ok", changed=True,
                           detail=("accepted, off in %g s" % delay) if scheduled
                           else "accepted, off already pending", **common)
                return OK
            try:
                killed = self._off_now(proto)
            except Exception as exc:  # noqa: BLE001 - reported to the client as an error
                self.event(proto, action, "error", changed=False, detail=str(exc), **common)
                return FAILED
            self.event(proto, action, "ok", changed=True, killed_pid=killed, **common)
            return OK

    def power_on(self, proto, action="on"):
        with self.lock:
            mode = self.dir.fail_mode()
            before = self._status(mode)
            common = {"power_before": before, "fail_mode": mode}
            cancelled = self._cancel_pending()
            try:
                started = self._on_now(proto)
            except Exception as exc:  # noqa: BLE001
                self.event(proto, action, "error", changed=True,
                           detail="could not start the host: %s" % exc, **common)
                return FAILED
            changed = before != "on" or started is not None
            detail = "pending slow off cancelled" if cancelled else None
            self.event(proto, action, "ok", changed=changed, started_pid=started,
                       detail=detail, **common)
            return OK

    def power_cycle(self, proto, action="cycle"):
        with self.lock:
            config = self.dir.config()
            mode = config["fail_mode"]
            before = self._status(mode)
            common = {"power_before": before, "fail_mode": mode}
            if mode == "slow":
                delay = config["slow_delay"]
                scheduled = self._schedule(proto, delay, power_on_after=True)
                self.event(proto, action, "ok", changed=True,
                           detail=("accepted, cycle in %g s" % delay) if scheduled
                           else "accepted, a slow action is already pending", **common)
                return OK
            self._cancel_pending()
            try:
                killed = self._off_now(proto, kill=(mode != "lying"))
                started = self._on_now(proto)
            except Exception as exc:  # noqa: BLE001
                self.event(proto, action, "error", changed=True, detail=str(exc), **common)
                return FAILED
            self.event(proto, action, "ok", changed=True, killed_pid=killed,
                       started_pid=started, **common)
            return OK

    # -- internals (called with self.lock held) ------------------------------
    def _off_now(self, proto, kill=True):
        """Cut the power: returns the pid killed, or None."""
        self.dir.write_power("off")
        if not kill:
            return None
        pid = self.dir.host_pid()
        if pid is None:
            return None
        kill_host_process(pid)
        self.event(proto, "killed", "ok", pid=pid)
        self.dir.remove_pid(pid)
        return pid

    def _on_now(self, proto):
        """Switch the power on; start the host unless it runs. Returns the new pid or None."""
        self.dir.write_power("on")
        if self.dir.host_pid() is not None:
            return None
        spec = self.dir.compute_spec()
        env = dict(os.environ)
        env.update({str(k): str(v) for k, v in (spec.get("env") or {}).items()})
        with open(spec.get("log") or os.devnull, "ab") as logfile:
            proc = subprocess.Popen(
                [str(a) for a in spec["argv"]], env=env, cwd=spec.get("cwd") or None,
                stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.dir.write_pid(proc.pid)
        # Reap the child when it dies, so a crashed host does not stay a zombie.
        threading.Thread(target=proc.wait, name="reap-%d" % proc.pid, daemon=True).start()
        self.event(proto, "started", "ok", pid=proc.pid)
        return proc.pid

    def _schedule(self, proto, delay, power_on_after):
        """Slow mode: carry out off (and on) after delay. False if one is already pending."""
        if self._pending is not None:
            return False
        cancel = threading.Event()
        self._pending = cancel

        def run():
            if cancel.wait(delay):
                return
            with self.lock:
                if cancel.is_set():
                    return
                self._pending = None
                try:
                    self._off_now(proto)
                    if power_on_after:
                        self._on_now(proto)
                except Exception as exc:  # noqa: BLE001
                    self.event(proto, "delayed", "error", detail=str(exc))

        threading.Thread(target=run, name="slow-off", daemon=True).start()
        return True

    def _cancel_pending(self):
        if self._pending is None:
            return False
        self._pending.set()
        self._pending = None
        return True


# ---------------------------------------------------------------------------
# IPMI (pyghmi server classes)
# ---------------------------------------------------------------------------

# Open-session algorithm payloads for cipher suite 3, the only one we speak.
_SUITE3_PAYLOADS = bytearray([
    0, 0, 0, 8, 1, 0, 0, 0,  # authentication: RAKP-HMAC-SHA1
    1, 0, 0, 8, 1, 0, 0, 0,  # integrity: HMAC-SHA1-96
    2, 0, 0, 8, 1, 0, 0, 0,  # confidentiality: AES-CBC-128
])
RMCP_ILLEGAL_PARAMETER = 0x12
RMCP_NO_CIPHER_SUITE_MATCH = 0x11
RMCP_UNAUTHORIZED_NAME = 0x0D


class SimSession(pyghmi_serversession.ServerSession):
    """One RMCP+ session with a client, with the fixes this simulator needs."""

    def __init__(self, *args, **kwargs):
        self.last_seen = time.monotonic()
        super().__init__(*args, **kwargs)

    def create_open_session_response(self, request):
        # Called from ServerSession.__init__; the answer is sent by the caller.
        request = bytearray(request)
        tag = request[0] if request else 0
        self.clientsessionid = request[4:8]
        self.managedsessionid = os.urandom(4)
        self.privlevel = 4
        if len(request) < 32:
            status = RMCP_ILLEGAL_PARAMETER
        elif (request[12] & 0x3F, request[20] & 0x3F, request[28] & 0x3F) != (1, 1, 1):
            # Refuse anything but suite 3; the pyghmi client then retries with SHA-1.
            status = RMCP_NO_CIPHER_SUITE_MATCH
        else:
            status = 0
        if status:
            log("ipmi %s open session refused (algorithms %s, RMCP+ status 0x%02x)"
                % (_peer(self.sockaddr), list(request[12:29:8]), status))
            return bytearray([tag, status, 0, 0]) + self.clientsessionid
        return (bytearray([tag, 0, self.privlevel, 0]) + self.clientsessionid
                + self.managedsessionid + _SUITE3_PAYLOADS)

    def _got_rmcp_openrequest(self, data):
        # A new open-session request from the same address and port (a client
        # retrying after our refusal, or a new client reusing a source port): start
        # from a clean session rather than reusing this one's keys and counters.
        self.close_server_session()
        SimSession(self.authdata, self.bmc.kg, self.sockaddr, self.socket, data,
                   self.uuid, self.bmc)

    def _got_rakp1(self, data):
        data = bytearray(data)
        if len(data) < 28:
            return
        tag = data[0]
        self.Rm = bytes(data[8:24])
        self.rolem = data[24]
        # Low nibble: requested maximum privilege (0 = "highest available").
        self.maxpriv = (self.rolem & 0x0F) or 4
        self.clientpriv = self.maxpriv
        self.username = bytes(data[28:28 + data[27]])
        secret = self.bmc.ipmi_secret(self.username)
        if secret is None:
            log("ipmi %s RAKP: unknown user name %r" % (_peer(self.sockaddr), self.username))
            self.send_payload(bytearray([tag, RMCP_UNAUTHORIZED_NAME, 0, 0]) + self.clientsessionid,
                              ipmi_constants.payload_types["rakp2"], retry=False)
            return
        self.uuiddata = self.uuid.bytes
        self.Rc = os.urandom(16)
        self.kuid = secret
        if self.kg is None:
            self.kg = secret
        signed = (self.clientsessionid + self.managedsessionid + self.Rm + self.Rc
                  + self.uuiddata + bytearray([self.rolem, len(self.username)])
                  + self.username)
        authcode = hmac.new(secret, bytes(signed), hashlib.sha1).digest()
        rakp2 = (bytearray([tag, 0, 0, 0]) + self.clientsessionid + self.Rc
                 + self.uuiddata + authcode)
        # RAKP 3 is checked by the inherited _got_rakp3 (Rm, Rc, rolem, username, kuid, kg).
        self.send_payload(rakp2, ipmi_constants.payload_types["rakp2"], retry=False)

    def process_pktqueue(self):
        if self.bmc.unreachable():
            self.pktqueue.clear()
            return
        self.last_seen = time.monotonic()
        super().process_pktqueue()

    def close_server_session(self):
        """Forget this session (pyghmi would keep every closed session forever).

        Runs in the main thread; pyghmi's I/O thread only reads bmc_handlers.
        """
        handlers = pyghmi_session.Session.bmc_handlers.get(self.sockaddr)
        if handlers is not None and handlers.get(self.bmc.port) is self:
            del handlers[self.bmc.port]
            if not handlers:
                del pyghmi_session.Session.bmc_handlers[self.sockaddr]


def _peer(sockaddr):
    try:
        return "%s:%s" % (sockaddr[0], sockaddr[1])
    except (TypeError, IndexError):
        return str(sockaddr)


class SimBmc(pyghmi_bmc.Bmc):
    """The IPMI front end of the chassis."""

    def __init__(self, chassis, address, port, username, password):
        self.chassis = chassis
        self._username = username.encode("utf-8")
        self._password = password.encode("utf-8")
        self._peer = "?"
        # authdata is not used: SimSession._got_rakp1 calls ipmi_secret() instead.
        super().__init__(authdata={}, port=port, address=address,
                         bmcuuid=uuid.uuid5(uuid.NAMESPACE_URL, "bmcsim:" + chassis.name))

    # -- hooks used by SimSession --------------------------------------------
    def unreachable(self):
        return self.chassis.dir.fail_mode() == "unreachable"

    def ipmi_secret(self, username):
        """The key for RAKP, or None for an unknown user."""
        if not hmac.compare_digest(username, self._username):
            return None
        if self.chassis.dir.fail_mode() == "bad_credentials":
            # As if the BMC's password had been changed: sign with another key.
            return hashlib.sha1(b"bmcsim-bad-credentials" + self._password).digest()
        return self._password

    def sessionless_data(self, data, sockaddr):
        if self.unreachable():
            return
        raw = bytearray(data)
        if (len(raw) >= 22 and raw[0] == 6 and raw[2:4] == b"\xff\x07"
                and raw[4] == 6 and raw[5] == ipmi_constants.payload_types["rmcpplusopenreq"]):
            # RMCP+ open session request: use our session class.
            self._prune_sessions()
            SimSession(self.authdata, self.kg, sockaddr, self.serversocket, raw[16:],
                       self.uuid, bmc=self)
            return
        super().sessionless_data(data, sockaddr)

    def _prune_sessions(self):
        """Forget sessions whose client went away without a Close Session."""
        now = time.monotonic()
        for by_port in list(pyghmi_session.Session.bmc_handlers.values()):
            session = by_port.get(self.port) if isinstance(by_port, dict) else None
            if isinstance(session, SimSession) and now - session.last_seen > SESSION_IDLE_TIMEOUT:
                session.close_server_session()

    # -- chassis commands -----------------------------------------------------
    def get_system_guid(self):
        return self.uuid

    def get_power_state(self):
        return self.chassis.status()

    def get_chassis_status(self, session):
        self._peer = _peer(session.sockaddr)
        state = self.get_power_state()
        log("ipmi %s chassis status -> %s" % (self._peer, state))
        session.send_ipmi_response(data=[1 if state == "on" else 0, 0, 0])

    def control_chassis(self, request, session):
        self._peer = _peer(session.sockaddr)
        directive = request["data"][0] if request["data"] else None
        log("ipmi %s chassis control %s" % (self._peer, directive))
        super().control_chassis(request, session)

    def _run(self, action):
        try:
            result = action()
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            result = FAILED
        code = IPMI_CODES[result]
        log("ipmi %s -> completion code 0x%02x" % (self._peer, code))
        return code

    def power_off(self):
        return self._run(lambda: self.chassis.power_off("ipmi", "off"))

    def power_shutdown(self):  # "soft off"
        return self._run(lambda: self.chassis.power_off("ipmi", "soft"))

    def power_on(self):
        return self._run(lambda: self.chassis.power_on("ipmi", "on"))

    def power_cycle(self):
        return self._run(lambda: self.chassis.power_cycle("ipmi", "cycle"))

    def power_reset(self):
        return self._run(lambda: self.chassis.power_cycle("ipmi", "reset"))

    def serve_forever(self):
        while True:
            try:
                pyghmi_session.Session.wait_for_rsp(timeout=30)
            except Exception:  # noqa: BLE001 - one bad packet must not stop the BMC
                traceback.print_exc()


# ---------------------------------------------------------------------------
# Redfish
# ---------------------------------------------------------------------------

RESET_TYPES = {
    "On": "on",
    "ForceOn": "on",
    "ForceOff": "off",
    "GracefulShutdown": "off",
    "PushPowerButton": "off",
    "ForceRestart": "cycle",
    "GracefulRestart": "cycle",
    "PowerCycle": "cycle",
}


def redfish_error(message, message_id="Base.1.8.GeneralError"):
    return {"error": {
        "code": "Base.1.8.GeneralError",
        "message": message,
        "@Message.ExtendedInfo": [{
            "@odata.type": "#Message.v1_1_1.Message",
            "MessageId": message_id,
            "Message": message,
            "Severity": "Warning",
            "Resolution": "None.",
        }],
    }}


class RedfishServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, chassis, address, port, username, password):
        self.chassis = chassis
        self.username = username
        self.password = password
        if ":" in address:
            self.address_family = socket.AF_INET6
        super().__init__((address, port), RedfishHandler)


class RedfishHandler(BaseHTTPRequestHandler):
    server_version = "bmcsim-redfish/1.0"

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def log_message(self, fmt, *args):
        log("redfish %s %s" % (self.client_address[0], fmt % args))

    # -- plumbing -----------------------------------------------------------
    def _send_json(self, status, body=None, headers=None):
        data = b"" if body is None else json.dumps(body, indent=1).encode("utf-8")
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("OData-Version", "4.0")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if data and self.command != "HEAD":
            self.wfile.write(data)

    def _authorized(self):
        header = self.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        ok_user = hmac.compare_digest(user.encode(), self.server.username.encode())
        ok_password = hmac.compare_digest(password.encode(), self.server.password.encode())
        return ok_user and ok_password

    def _unauthorized(self):
        self._send_json(401, redfish_error("Authentication required or credentials rejected.",
                                           "Base.1.8.InsufficientPrivilege"),
                        {"WWW-Authenticate": 'Basic realm="bmcsim"'})

    def _hold(self):
        """Unreachable mode: keep the connection open, then drop it without answering."""
        log("redfish %s %s %s: unreachable, holding the connection"
            % (self.client_address[0], self.command, self.path))
        time.sleep(UNREACHABLE_HOLD)
        self.close_connection = True

    # -- routing ------------------------------------------------------------
    def _dispatch(self, method):
        chassis = self.server.chassis
        mode = chassis.dir.fail_mode()
        if mode == "unreachable":
            self._hold()
            return
        path = urlsplit(self.path).path.rstrip("/") or "/"
        if mode == "bad_credentials":
            self._unauthorized()
            return
        if not (method == "GET" and path == "/redfish/v1") and not self._authorized():
            self._unauthorized()
            return

        system = "/redfish/v1/Systems/" + chassis.name
        reset = system + "/Actions/ComputerSystem.Reset"
        routes = {
            "/redfish": {"GET": self._get_redfish},
            "/redfish/v1": {"GET": self._get_root},
            "/redfish/v1/Systems": {"GET": self._get_systems},
            system: {"GET": self._get_system},
            reset: {"POST": self._post_reset},
        }
        handlers = routes.get(path)
        if handlers is None:
            self._send_json(404, redfish_error("Resource %s not found." % path,
                                               "Base.1.8.ResourceMissingAtURI"))
        elif method not in handlers:
            self._send_json(405, redfish_error("Method %s not allowed on %s." % (method, path),
                                               "Base.1.8.ActionNotSupported"),
                            {"Allow": ", ".join(sorted(handlers))})
        else:
            handlers[method]()

    def _get_redfish(self):
        self._send_json(200, {"v1": "/redfish/v1/"})

    def _get_root(self):
        chassis = self.server.chassis
        self._send_json(200, {
            "@odata.id": "/redfish/v1",
            "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
            "Id": "RootService",
            "Name": "bmcsim Redfish service (%s)" % chassis.name,
            "RedfishVersion": "1.6.0",
            "UUID": str(uuid.uuid5(uuid.NAMESPACE_URL, "bmcsim:" + chassis.name)),
            "Systems": {"@odata.id": "/redfish/v1/Systems"},
        })

    def _get_systems(self):
        chassis = self.server.chassis
        self._send_json(200, {
            "@odata.id": "/redfish/v1/Systems",
            "@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
            "Name": "Computer System Collection",
            "Members@odata.count": 1,
            "Members": [{"@odata.id": "/redfish/v1/Systems/" + chassis.name}],
        })

    def _get_system(self):
        chassis = self.server.chassis
        system = "/redfish/v1/Systems/" + chassis.name
        state = chassis.status()
        log("redfish %s power state -> %s" % (self.client_address[0], state))
        self._send_json(200, {
            "@odata.id": system,
            "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
            "Id": chassis.name,
            "Name": chassis.name,
            "SystemType": "Physical",
            "UUID": str(uuid.uuid5(uuid.NAMESPACE_URL, "bmcsim:" + chassis.name)),
            "PowerState": "On" if state == "on" else "Off",
            "Status": {"State": "Enabled", "Health": "OK"},
            "Actions": {"#ComputerSystem.Reset": {
                "target": system + "/Actions/ComputerSystem.Reset",
                "ResetType@Redfish.AllowableValues": list(RESET_TYPES),
            }},
        })

    def _post_reset(self):
        chassis = self.server.chassis
        try:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"null")
        except (ValueError, UnicodeDecodeError):
            self._send_json(400, redfish_error("The request body is not valid JSON.",
                                               "Base.1.8.MalformedJSON"))
            return
        reset_type = body.get("ResetType") if isinstance(body, dict) else None
        if reset_type not in RESET_TYPES:
            self._send_json(400, redfish_error(
                "ResetType %r is not one of %s." % (reset_type, ", ".join(RESET_TYPES)),
                "Base.1.8.ActionParameterValueNotInList"))
            return
        log("redfish %s reset %s" % (self.client_address[0], reset_type))
        operation = RESET_TYPES[reset_type]
        if operation == "on":
            result = chassis.power_on("redfish", reset_type)
        elif operation == "off":
            result = chassis.power_off("redfish", reset_type)
        else:
            result = chassis.power_cycle("redfish", reset_type)
        if result == OK:
            self._send_json(204)
        elif result == ALREADY_OFF:
            self._send_json(409, redfish_error(
                "The system %s is already powered off." % chassis.name,
                "Base.1.8.PropertyValueConflict"))
        else:
            self._send_json(500, redfish_error(
                "The reset of %s failed; see the BMC log." % chassis.name,
                "Base.1.8.InternalError"))


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def main(argv=None):
    global _log_name
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host-dir", required=True,
                        help="directory with bmc.json, compute.json, power, compute.pid")
    args = parser.parse_args(argv)

    hostdir = HostDir(args.host_dir)
    try:
        config = hostdir.config()
        name = str(config["name"])
        address = str(config.get("address", "127.0.0.1"))
        ipmi_port = int(config["ipmi_port"])
        redfish_port = int(config["redfish_port"])
        username = str(config["username"])
        password = str(config["password"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sys.stderr.write("bmcsim: cannot use %s: %r\n" % (hostdir.bmc_json, exc))
        return 2
    _log_name = "bmcsim[%s]" % name

    chassis = Chassis(hostdir, name)
    bmc = SimBmc(chassis, address, ipmi_port, username, password)
    httpd = RedfishServer(chassis, address, redfish_port, username, password)
    threading.Thread(target=httpd.serve_forever, name="redfish", daemon=True).start()

    mypid = os.getpid()

    def stop(signum, frame):
        try:
            with open(hostdir.bmc_pid) as f:
                if f.read().strip() == str(mypid):
                    os.unlink(hostdir.bmc_pid)
        except OSError:
            pass
        log("stopping on signal %d" % signum)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    write_atomic(hostdir.bmc_pid, "%d\n" % mypid)
    log("ready: ipmi udp %s:%d, redfish http://%s:%d, user %s, pid %d"
        % (address, ipmi_port, address, redfish_port, username, mypid))
    bmc.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
