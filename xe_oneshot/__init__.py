"""xe-oneshot: a one-shot Linux guest agent for XenServer / XCP-ng.

Each run collects facts about the guest (OS, PV-tools version, memory, addresses per
virtual NIC, volumes) and publishes what changed into XenStore in one transaction.
"""

__version__ = "1.0.0"
