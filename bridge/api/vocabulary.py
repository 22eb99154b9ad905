"""The state names a client may ask about: Nova status kinds and Nova vm_states.

Both lists come from the stream stage's catalogue, the one place that defines what a state
record's `status` and `state` can hold, so the API accepts exactly what the table can contain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from schemas.vocabulary import KINDS, VM_STATES


class UnknownStatesError(ValueError):
    """Some requested names are neither a status kind nor a vm_state."""

    def __init__(self, unknown: list[str]) -> None:
        super().__init__(", ".join(unknown))
        self.unknown = unknown


@dataclass(frozen=True, slots=True)
class ResolvedStates:
    """Requested names split by what they match, normalised as the state table keeps them."""

    vm_states: frozenset[str]
    kinds: frozenset[str]


@dataclass(frozen=True, slots=True)
class StateVocabulary:
    kinds: frozenset[str]  # upper-case, as in a record's `status`
    vm_states: frozenset[str]  # lower-case, as in a record's `state`

    @classmethod
    def from_names(cls, kinds: Iterable[str], vm_states: Iterable[str]) -> StateVocabulary:
        return cls(
            kinds=frozenset(kind.upper() for kind in kinds),
            vm_states=frozenset(state.lower() for state in vm_states),
        )

    @classmethod
    def from_catalogue(cls) -> StateVocabulary:
        return cls.from_names(KINDS, VM_STATES)

    def accepted(self) -> list[str]:
        """Every accepted name in its canonical spelling: kinds, then vm_states."""
        return sorted(self.kinds) + sorted(self.vm_states - {kind.lower() for kind in self.kinds})

    def kind(self, name: str) -> str | None:
        upper = name.upper()
        return upper if upper in self.kinds else None

    def vm_state(self, name: str) -> str | None:
        lower = name.lower()
        return lower if lower in self.vm_states else None

    def resolve(self, names: Iterable[str]) -> ResolvedStates:
        """Match names case-insensitively; a name that is both a kind and a vm_state matches both.

        Raises UnknownStatesError naming every name that matches neither.
        """
        vm_states: set[str] = set()
        kinds: set[str] = set()
        unknown: list[str] = []
        for name in names:
            kind, vm_state = self.kind(name), self.vm_state(name)
            if kind is None and vm_state is None:
                if name not in unknown:
                    unknown.append(name)
                continue
            if kind is not None:
                kinds.add(kind)
            if vm_state is not None:
                vm_states.add(vm_state)
        if unknown:
            raise UnknownStatesError(unknown)
        return ResolvedStates(vm_states=frozenset(vm_states), kinds=frozenset(kinds))
