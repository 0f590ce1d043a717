"""Ray for gluebox's launchers: imported configured, and connected to a cluster or a local instance.

``gluebox sweep`` runs its trials through it, and ``gluebox glue --address`` its tasks. Without an
address, a local instance is started reachable from this machine only (every Ray server on the
loopback address, no dashboard, no usage statistics) and shut down by whoever started it.
"""

from __future__ import annotations

import os

from gluebox.errors import GlueboxError

INSTALL_HINT = "gluebox sweep needs Ray Tune: pip install 'gluebox[sweep]'"


def import_ray(local: bool, install_hint: str = INSTALL_HINT):
    """Ray, configured before its first import: loopback only for a local instance, no usage stats."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if local:
        # Ray picks the node's address at import; with this, a local instance uses 127.0.0.1
        # and its servers listen on the loopback address only.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError:
        raise GlueboxError(install_hint) from None
    return ray


def connect(ray, address: str | None) -> bool:
    """Connect to Ray; True when this call started a local instance (to shut down afterwards)."""
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
            return False
        ray.init(include_dashboard=False, log_to_driver=True)
    except (ConnectionError, RuntimeError, ValueError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise GlueboxError(f"cannot start or reach {where}: {str(error).splitlines()[0]}") from None
    return True
