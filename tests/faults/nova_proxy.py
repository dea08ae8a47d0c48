"""A fault-injecting HTTP proxy on loopback, in front of one upstream API (the lab's nova-api).

The runbook is pointed at it through a copy of the lab's clouds.yaml with `compute_endpoint_override` (see
`clouds_yaml_via`), so only compute API requests pass through it; Keystone, Placement and Neutron are reached
directly. A test arms faults while the runbook runs:

    proxy = FaultProxy('http://127.0.0.1:34774')
    proxy.arm(trigger=is_evacuate, fail_next=4, status=503)   # the first evacuate request and the 3 after it
    proxy.arm(trigger=is_evacuate, fail_for=5.0, status=500)  # every request for 5 s from the first evacuate
    proxy.latency = 1.5                                       # every forwarded request answered 1.5 s later

A failed request is answered by the proxy itself, as a broken load balancer or an overloaded nova-api would: it
never reaches Nova, so it changes nothing there. Every request is logged (time, method, path, status, injected).
"""

import http.client
import http.server
import json
import threading
import time
import urllib.parse

import yaml

# Hop-by-hop headers (RFC 9110) are the proxy's own, never forwarded.
HOP_HEADERS = {'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer',
               'transfer-encoding', 'upgrade', 'content-length', 'host'}


def is_evacuate(method, path, body):
    """A trigger: the first POST /servers/{id}/action with an evacuate body."""
    return method == 'POST' and path.split('?')[0].endswith('/action') and b'"evacuate"' in body


class Fault:
    """One armed fault: once `trigger` matched a request, fail `fail_next` requests (that one included) or every
    request for `fail_for` seconds, answering `status`."""

    def __init__(self, trigger, status, fail_next=None, fail_for=None):
        self.trigger = trigger
        self.status = status
        self.left = fail_next
        self.seconds = fail_for
        self.started = None

    def applies(self, method, path, body, now):
        if self.started is None:
            if self.trigger is not None and not self.trigger(method, path, body):
                return False
            self.started = now
        if self.left is not None:
            if self.left <= 0:
                return False
            self.left -= 1
            return True
        return now - self.started < self.seconds

    @property
    def spent(self):
        return self.started is not None and (self.left == 0 if self.left is not None else
                                             time.monotonic() - self.started >= self.seconds)


class FaultProxy:
    """The proxy: a threaded HTTP server on a free loopback port forwarding to `upstream` (scheme://host:port)."""

    def __init__(self, upstream):
        parsed = urllib.parse.urlsplit(upstream)
        self.upstream = (parsed.hostname, parsed.port or 80)
        self.faults = []
        self.latency = 0.0
        self.log = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def _handle(self):
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length) if length else b''
                status = proxy._injected(self.command, self.path, body)
                if status:
                    fault = {'code': status, 'message': 'injected by the fault proxy'}
                    payload = json.dumps({'computeFault': fault}).encode()
                    self.send_response(status)
                    self.send_header('Content-Type', 'application/json')
                    self.send_header('Content-Length', str(len(payload)))
                    self.send_header('Connection', 'close')
                    self.end_headers()
                    self.wfile.write(payload)
                    self.close_connection = True
                    return
                if proxy.latency:
                    time.sleep(proxy.latency)
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                proxy._record(self.command, self.path, answer.status, False)
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in HOP_HEADERS:
                        self.send_header(key, value)
                self.send_header('Content-Length', str(len(data)))
                self.send_header('Connection', 'close')
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.server.daemon_threads = True
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def arm(self, trigger=None, status=503, fail_next=None, fail_for=None):
        """Add a fault (see Fault); without a trigger it starts with the next request."""
        assert (fail_next is None) != (fail_for is None), 'give fail_next or fail_for'
        with self.lock:
            self.faults.append(Fault(trigger, status, fail_next, fail_for))

    def _injected(self, method, path, body):
        now = time.monotonic()
        with self.lock:
            for fault in self.faults:
                if fault.applies(method, path, body, now):
                    self.log.append(dict(t=time.time(), method=method, path=path, status=fault.status,
                                         injected=True))
                    return fault.status
        return None

    def _record(self, method, path, status, injected):
        with self.lock:
            self.log.append(dict(t=time.time(), method=method, path=path, status=status, injected=injected))

    def injected(self):
        return [entry for entry in self.log if entry['injected']]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def clouds_yaml_via(clouds_yaml, cloud, proxy_url, dest):
    """A copy of clouds.yaml whose `cloud` reaches the compute API through the proxy (version path /v2.1)."""
    with open(clouds_yaml) as source:
        config = yaml.safe_load(source)
    config['clouds'][cloud]['compute_endpoint_override'] = proxy_url + '/v2.1'
    dest.write_text(yaml.safe_dump(config))
    dest.chmod(0o600)
    return str(dest)
