"""tierwise: run each AI request on the device, an edge server or the cloud, where it is
cheapest within the user's policy, and record what it cost."""

__version__ = "0.1.0"
