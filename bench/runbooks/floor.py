#!/usr/bin/env python3
"""The floor: what Nova itself needs to recover a failed host, and nothing else.

    floor.py --cloud ohlab --host compute1

Forces the host's nova-compute service down, issues every evacuation at once (compute API microversion 2.68:
Nova's scheduler picks the target, the instance comes back ACTIVE), then waits until every server is ACTIVE on
another host. No gates, no fence, no disable, no retries. Exits non-zero if a server ends in ERROR or the wait
times out.
"""

import argparse
import sys
import time

import openstack

MICROVERSION = '2.68'  # evacuate without host or force; before 2.95, so evacuated servers come back ACTIVE


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--cloud', required=True)
    parser.add_argument('--host', required=True)
    parser.add_argument('--timeout', type=float, default=1800)
    args = parser.parse_args(argv)
    conn = openstack.connect(cloud=args.cloud)
    service, = conn.compute.services(binary='nova-compute', host=args.host)
    conn.compute.update_service_forced_down(service, args.host, 'nova-compute', True)
    servers = list(conn.compute.servers(all_projects=True, compute_host=args.host))
    for server in servers:
        conn.compute.post('/servers/%s/action' % server.id, json={'evacuate': {}},
                          microversion=MICROVERSION).raise_for_status()
    pending = {server.id for server in servers}
    deadline = time.monotonic() + args.timeout
    while pending:
        for server in conn.compute.servers(all_projects=True):
            if server.id not in pending:
                continue
            if server.status == 'ERROR':
                sys.exit('floor: %s went to ERROR' % server.id)
            if server.status == 'ACTIVE' and server.compute_host != args.host:
                pending.discard(server.id)
        if pending and time.monotonic() > deadline:
            sys.exit('floor: %d server(s) not ACTIVE elsewhere after %s s' % (len(pending), args.timeout))
        time.sleep(0.2)
    print('floor: %d server(s) evacuated from %s' % (len(servers), args.host))


if __name__ == '__main__':
    main()
