#!/usr/bin/env python3
"""The naive serial runbook many operators write: force the service down, then evacuate one server and wait for
it, then the next.

    naive_serial.py --cloud ohlab --host compute1

Each server is evacuated (compute API microversion 2.68: the scheduler picks the target, it comes back ACTIVE)
and polled every second, the way such loops usually poll, until it is ACTIVE on another host. Exits non-zero if
a server ends in ERROR or a wait times out.
"""

import argparse
import sys
import time

import openstack

MICROVERSION = '2.68'
POLL = 1.0  # seconds, the usual `sleep 1` of such a loop


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cloud', required=True)
    parser.add_argument('--host', required=True)
    parser.add_argument('--timeout', type=float, default=300, help='seconds per server')
    args = parser.parse_args(argv)
    conn = openstack.connect(cloud=args.cloud)
    service, = conn.compute.services(binary='nova-compute', host=args.host)
    conn.compute.update_service_forced_down(service, args.host, 'nova-compute', True)
    servers = list(conn.compute.servers(all_projects=True, compute_host=args.host))
    for server in servers:
        conn.compute.post('/servers/%s/action' % server.id, json={'evacuate': {}},
                          microversion=MICROVERSION).raise_for_status()
        deadline = time.monotonic() + args.timeout
        while True:
            time.sleep(POLL)
            now = conn.compute.get_server(server.id)
            if now.status == 'ERROR':
                sys.exit('naive: %s went to ERROR' % server.id)
            if now.status == 'ACTIVE' and now.compute_host != args.host:
                break
            if time.monotonic() > deadline:
                sys.exit('naive: %s not ACTIVE elsewhere after %s s' % (server.id, args.timeout))
    print('naive: %d server(s) evacuated from %s' % (len(servers), args.host))


if __name__ == '__main__':
    main()
