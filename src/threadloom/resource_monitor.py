"""The original import path of :class:`ResourceMonitor`, which lives in :mod:`threadloom.monitor`.

Code written for the original API imports ``threadloom.resource_monitor``; this
module keeps it working, and adds nothing.
"""

from .monitor import (
    RESOURCE_TYPES,
    PsutilSampler,
    ResourceAlert,
    ResourceCallback,
    ResourceMonitor,
    ResourceSample,
    Sampler,
)

__all__ = [
    "RESOURCE_TYPES",
    "PsutilSampler",
    "ResourceAlert",
    "ResourceCallback",
    "ResourceMonitor",
    "ResourceSample",
    "Sampler",
]
