"""Resource monitoring: readings, and the monitor thread.

``sampling`` holds one reading and the psutil sampler that takes it;
``monitor`` holds :class:`ResourceMonitor`: the sampling thread, threshold
alerts with hysteresis, and the worker-count advice.  The container limits
both read are in ``threadloom._limits``, below the executor, which sizes its
default worker count by them without loading psutil.
"""

from .monitor import ResourceAlert, ResourceCallback, ResourceMonitor
from .sampling import RESOURCE_TYPES, PsutilSampler, ResourceSample, Sampler

__all__ = [
    "RESOURCE_TYPES",
    "PsutilSampler",
    "ResourceAlert",
    "ResourceCallback",
    "ResourceMonitor",
    "ResourceSample",
    "Sampler",
]
