"""The seed's import path for :class:`ResourceMonitor`, which lives in :mod:`threadloom.monitor`.

The seed's documents and examples import ``threadloom.resource_monitor``; this
module keeps them working, and adds nothing.
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
