"""Neutron API WSGI entry point for the lab (uwsgi --module ohlab_plugins.neutron_wsgi:application).

Neutron 29.0.0 answers 500 ("Port has no attribute 'port_forwardings'") when the first database
request after start is a port list: the ORM relationships that service plugins add lazily are
not configured yet. Configuring all mappers once, when the application loads, avoids it.
"""

import sqlalchemy.orm

from neutron.wsgi.api import application  # noqa: F401  (re-exported for uwsgi)

sqlalchemy.orm.configure_mappers()
