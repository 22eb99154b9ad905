"""What a fake producer hands a delivery callback: confluent-kafka's Message, as far as eventfed
reads it (a refused record is known by its topic, key and value)."""

from __future__ import annotations


class FakeMessage:
    def __init__(self, topic: str, key: bytes | None, value: bytes | None, partition: int = -1) -> None:
        self._topic, self._key, self._value, self._partition = topic, key, value, partition

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def partition(self) -> int:
        return self._partition
