"""The host services a plugin calls back into over its broker backchannel.

Why this exists: a plugin written against the PR's Go `framework` expects the host to serve
`ConfigService`, `NotificationService` and `PluginManagerService` on the broker connection whose
id the host put into `ConfigureRequest.backchannel_id`, and it calls them from its init hooks,
while Configure is still pending. This subpackage is that side of the wire, real and in memory,
one module per service:

- `config`: `ConfigStore` (every plugin's options) and `ConfigServicer`, with the key rules.
- `notifications`: `NotificationCenter` (pending and shown notifications) and
  `NotificationServicer`.
- `plugin_manager`: `PluginManagerServicer` for privileged plugins, refusals for the others.
- `decision_cache`: `DecisionCacheServicer` (our extension): a plugin forgets its own cached
  verdicts.
- `backchannel`: `HostServices`, whose `serve_backchannel` starts one small gRPC server for one
  plugin on a unix socket.

The stores hold the state of the whole host; the host's own code and its user reach them
directly. The servicers are made per plugin: they see that state through the identity the host
gave the connection, never a name taken from a request.

Where this is stricter than the PR's host (see WIRE-NOTES.md): an unprivileged plugin's config
key must be a plain relative key inside its own namespace `plugins/<name>/`, and anything else
is refused with PERMISSION_DENIED naming the key (the PR rewrites it silently); the plugin
manager is served only to privileged plugins and answers everyone else with a clear refusal;
messages are bounded to a few MiB; a plugin cannot hold more concurrent calls than the server
has worker threads.
"""

from host.services.backchannel import BACKCHANNEL_WORKERS, HostServices
from host.services.common import HOST_OWNER, MAX_MESSAGE_BYTES
from host.services.config import ConfigServicer, ConfigStore, Subscription
from host.services.decision_cache import DecisionCacheServicer
from host.services.notifications import (
    ActionChoice,
    NotificationCenter,
    NotificationServicer,
    PendingNotification,
    Prompt,
    UnknownNotificationError,
)
from host.services.plugin_manager import (
    PluginManagerBackend,
    PluginManagerServicer,
    UnprivilegedPluginManagerServicer,
)

__all__ = [
    "BACKCHANNEL_WORKERS",
    "HOST_OWNER",
    "MAX_MESSAGE_BYTES",
    "ActionChoice",
    "ConfigServicer",
    "ConfigStore",
    "DecisionCacheServicer",
    "HostServices",
    "NotificationCenter",
    "NotificationServicer",
    "PendingNotification",
    "PluginManagerBackend",
    "PluginManagerServicer",
    "Prompt",
    "Subscription",
    "UnknownNotificationError",
    "UnprivilegedPluginManagerServicer",
]
