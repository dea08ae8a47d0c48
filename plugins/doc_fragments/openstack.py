# -*- coding: utf-8 -*-
# Copyright: openstack_ha.recovery contributors
# Apache License 2.0 (see https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The options of plugins/module_utils/_openstack.py OPENSTACK_ARGUMENT_SPEC, shared by the nova modules.
    DOCUMENTATION = r'''
options:
  api_timeout:
    description:
      - Seconds to wait for an answer from an OpenStack API before giving up.
      - Without it, openstacksdk's default (or the cloud's C(api_timeout) in clouds.yaml) applies.
    type: int
  auth:
    description:
      - Authentication parameters (C(auth_url), C(username), C(password), C(project_name),
        C(user_domain_name), C(project_domain_name), ... as O(auth_type) needs them).
      - Overrides the ones from O(cloud). Without O(cloud) and O(auth), the C(OS_*) environment variables are used.
    type: dict
  auth_type:
    description:
      - Name of the keystoneauth plugin, for example V(password), V(v3password) or V(v3applicationcredential).
    type: str
  ca_cert:
    description:
      - Path to a CA bundle to verify the OpenStack API certificates with.
    type: str
    aliases: [cacert]
  cloud:
    description:
      - Name of a cloud in clouds.yaml, or a dictionary with the settings of one.
    type: raw
  compute_microversion:
    description:
      - Compute API microversion to pin every Nova request of the module to, for example V(2.73).
      - Without it, openstacksdk negotiates the newest version both sides support. Since 2.95 Nova leaves
        evacuated servers stopped; the evacuation modules pin a version on purpose.
    type: str
  interface:
    description:
      - Which endpoint of the service catalog to use.
    type: str
    choices: [admin, internal, public]
    default: public
    aliases: [endpoint_type]
  region_name:
    description:
      - Region of the cloud to act in.
    type: str
  token_cache:
    description:
      - A directory where the module leaves its Keystone token for the next module with the same credentials,
        and starts from the token an earlier one left there instead of logging in. Every module is a process of
        its own, so without it each one asks Keystone for a token, and its first request makes the API validate a
        token it has not seen yet.
      - Unset (the default), nothing is written. Without it, the C(OPENSTACK_HA_TOKEN_CACHE) environment variable
        sets it.
      - Each file holds keystoneauth's auth state (the token, its expiry and the catalog) for one set of
        credentials (named after a hash of every auth option, password included), mode 0600 in a directory made
        0700; a file another user owns, or others may read, is never used. A token that expires within two
        minutes is replaced by a new login, and one the cloud has revoked by a login at its first 401. The token
        is a bearer secret - keep the directory as private as the clouds.yaml holding the password.
      - A cache that cannot be read or written costs a warning and a login, never the module's work.
    type: path
  validate_certs:
    description:
      - Whether to verify the OpenStack API TLS certificates.
      - Without it, the cloud's C(verify) setting in clouds.yaml applies (default true).
    type: bool
    aliases: [verify]
requirements:
  - openstacksdk >= 4.0
notes:
  - Cloud settings come from O(cloud) (clouds.yaml), O(auth), and the C(OS_*) environment variables, as with
    the openstack command line client.
'''
