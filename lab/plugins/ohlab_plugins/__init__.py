"""Plugins that only the openstack_ha.recovery lab uses (never shipped with the collection)."""
