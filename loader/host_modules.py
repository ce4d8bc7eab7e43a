"""The host's own modules, the version it reports, and the boot plan this host makes.

Why this exists: the installer (is a plugin's `requires.host` offered? may it take this
name?), `verify` and `boot` must agree on what the host offers; keeping it here, offline and
without gRPC, lets `registry_client` ask without importing the runtime.
"""

from __future__ import annotations

from keys.store import TrustStore
from loader.boot import BootPlan, plan_boot
from loader.home import Home

#: The version this host reports to plugins (Configure) and offers to `requires.host`.
HOST_VERSION = "0.1.0"

#: The host's own modules and what each needs. `spn` is off unless enabled.
CORE_MODULES: dict[str, tuple[str, ...]] = {
    "config": (),
    "notifications": ("config",),
    "firewall": ("config",),
    "resolver": ("config",),
    "auth": ("config",),
    "spn": ("firewall", "resolver"),
}
OFF_BY_DEFAULT = ("spn",)
#: What `requires.host` of a manifest may name, with the versions this host offers.
CORE_VERSIONS: dict[str, str] = dict.fromkeys(CORE_MODULES, HOST_VERSION)


def plan_for_host(home: Home, *, trust: TrustStore, dev_mode: bool, threshold: int) -> BootPlan:
    """`plan_boot` as this host makes it (boot, `verify`): its core modules, bound by the
    state root's plugins.lock."""
    return plan_boot(
        home, trust=trust, dev_mode=dev_mode, core_modules=CORE_VERSIONS, threshold=threshold
    )
