"""NetAuth-style hooks: host-defined hook points that run in order over an entity.

A hook takes the entity as the pipeline has it so far plus the request's data entity and
returns the (possibly modified) entity, or raises `HookError` to abort the request.
`NullPlugin` implements every hook point as a no-op, so a plugin overrides only the hooks it
needs; the hook points it overrides are the ones it announces to the host.
"""

from __future__ import annotations

import re

from pm_plugin.types import Entity

#: The hook points a host may run, in NetAuth's order.
HOOK_POINTS: tuple[str, ...] = (
    "PreEntityCreate",
    "PostEntityCreate",
    "PreEntityUpdate",
    "PostEntityUpdate",
    "PreEntityDestroy",
    "PostEntityDestroy",
    "PreSecretChange",
    "PostSecretChange",
    "PreAuthCheck",
    "PostAuthCheck",
    "PreGroupCreate",
    "PostGroupCreate",
)


def method_name(hook_point: str) -> str:
    """`PreAuthCheck` -> `pre_auth_check`: the Python method implementing a hook point."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", hook_point).lower()


class HookError(Exception):
    """Raised by a hook to abort the request; the message reaches the host's caller."""


class NullPlugin:
    """Implements every hook point as a no-op that returns the entity unchanged."""

    def pre_entity_create(self, entity: Entity, data: Entity) -> Entity:
        return entity

    def post_entity_create(self, entity: Entity, data: Entity) -> Entity:
        return entity

    def pre_entity_update(self, entity: Entity, data: Entity) -> Entity:
        return entity

    def post_entity_update(self, entity: Entity, data: Entity) -> Entity:
        return entity

    def pre_entity_destroy(self, entity: Entity, data: Entity) -> Entity:
        return entity

    def post_entity_destroy(self, entity: Entity, data: Entity) -> Entity:
        return entity

    def pre_secret_change(self, entity: Entity, data: Entity) -> Entity:
        return entity

    def post_secret_change(self, entity: Entity, data: Entity) -> Entity:
        return entity

    def pre_auth_check(self, entity: Entity, data: Entity) -> Entity:
        return entity

    def post_auth_check(self, entity: Entity, data: Entity) -> Entity:
        return entity

    def pre_group_create(self, entity: Entity, data: Entity) -> Entity:
        return entity

    def post_group_create(self, entity: Entity, data: Entity) -> Entity:
        return entity


def implemented_hooks(plugin: NullPlugin) -> list[str]:
    """The hook points whose method `plugin`'s class overrides (the ones worth calling)."""
    return [
        point
        for point in HOOK_POINTS
        if getattr(type(plugin), method_name(point)) is not getattr(NullPlugin, method_name(point))
    ]
