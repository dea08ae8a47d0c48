"""An ML2 mechanism driver that binds ports without any L2 agent.

The lab runs Neutron's API only (no OVS/OVN, no agents). The shipped mechanism drivers
bind a port only when an agent for the port's host is alive, so Nova would fail every boot
with a port (PortBindingFailed). This driver binds every port on a ``local`` or ``flat``
segment to whatever host Nova asks for, so boots, evacuations and live migrations re-bind
ports exactly as they would in a real cloud, minus the data plane.
"""

from neutron_lib.api.definitions import portbindings
from neutron_lib import constants
from neutron_lib.plugins.ml2 import api

SUPPORTED_NETWORK_TYPES = (constants.TYPE_LOCAL, constants.TYPE_FLAT)


class AgentlessMechanismDriver(api.MechanismDriver):
    """Bind any port on a local or flat segment, with vif_type 'other'."""

    def initialize(self):
        pass

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def bind_port(self, context):
        for segment in context.segments_to_bind:
            if segment[api.NETWORK_TYPE] in SUPPORTED_NETWORK_TYPES:
                context.set_binding(
                    segment[api.ID],
                    portbindings.VIF_TYPE_OTHER,
                    {portbindings.CAP_PORT_FILTER: False},
                    status=constants.PORT_STATUS_ACTIVE,
                )
                return
