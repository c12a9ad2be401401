"""JSON:API resource records and resource-type schemas shared by the query and document modules.

Models build :class:`Record` objects (plain Python values, aware datetimes, :class:`Ref` linkage);
``query.py`` filters and sorts them and ``jsonapi.py`` serialises them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Ref:
    """A resource identifier object: ``{"type", "id"}``."""

    type: str
    id: str

    def to_json(self) -> dict[str, str]:
        return {"type": self.type, "id": self.id}


@dataclass
class Record:
    """One resource as the API shows it at a moment: attribute values and relationship linkage."""

    type: str
    id: str
    attributes: dict[str, Any]
    relationships: dict[str, Ref | list[Ref] | None] = field(default_factory=dict)

    @property
    def ref(self) -> Ref:
        return Ref(self.type, self.id)

    def refs(self, relationship: str) -> list[Ref]:
        linkage = self.relationships.get(relationship)
        if linkage is None:
            return []
        return list(linkage) if isinstance(linkage, list) else [linkage]


@dataclass(frozen=True)
class Relationship:
    """A relationship of a resource type: the related type and whether it is to-many."""

    target: str
    many: bool = False


@dataclass(frozen=True)
class ResourceSchema:
    """What can be filtered, sorted and included on a resource type.

    ``attributes`` maps a name to its kind: ``string``, ``enum`` (values in ``enums``), ``datetime``,
    ``boolean``, ``number`` or ``object`` (objects are neither filterable nor sortable).
    """

    type: str
    attributes: Mapping[str, str]
    relationships: Mapping[str, Relationship] = field(default_factory=dict)
    enums: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


Resolver = Callable[[Ref], Record | None]
Schemas = Mapping[str, ResourceSchema]

