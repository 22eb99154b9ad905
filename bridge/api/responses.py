"""Responses assembled from pre-encoded JSON, and the VIM naming shared by the routes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
from flask import Response

from bridge.api.context import api_context
from bridge.api.errors import JSON_MIMETYPE, ApiError

# Items per slice of a streamed answer: VM summaries are about 0.5 KB, so about 0.5 MB a slice.
# An answer of at most this many (a default page) goes out in one piece with a length: about
# 0.5 MB costs no memory worth streaming for, and each chunk is one more write through waitress,
# so slicing such a page would only make it slower.
STREAM_SLICE_ITEMS = 1000


def json_with_items(head: Mapping[str, Any], items_key: str, items: Sequence[bytes]) -> Response:
    """`head` plus one member holding a JSON array of already-encoded items.

    The state table keeps each VM's summary encoded, so a large answer is a join of bytes
    instead of decoding and encoding tens of thousands of objects per request. A large answer
    is streamed in slices (chunked): joining a whole VIM at once would hold several copies of
    tens of MB per request, and the allocator keeps such peaks as RSS; adding up its length first
    would touch every item twice.
    """
    encoded_head = orjson.dumps(dict(head))
    prefix = b"".join([encoded_head[:-1], b"," if head else b"", orjson.dumps(items_key), b":["])
    suffix = b"]}"
    if len(items) <= STREAM_SLICE_ITEMS:
        return Response(b"".join([prefix, b",".join(items), suffix]), mimetype=JSON_MIMETYPE)

    def slices() -> Iterator[bytes]:
        yield prefix
        for start in range(0, len(items), STREAM_SLICE_ITEMS):
            if start:
                yield b","
            yield b",".join(items[start : start + STREAM_SLICE_ITEMS])
        yield suffix

    return Response(slices(), mimetype=JSON_MIMETYPE, direct_passthrough=True)


def split_vim_id(vim_id: str) -> tuple[str, str]:
    """(cloud_owner, cloud_region_id) of "{cloud_owner}_{cloud_region_id}".

    The first underscore separates them: an owner that itself holds an underscore cannot be told
    apart, but joining the two parts with "_" always gives the VIM id back, which is what the
    v1 routes do.
    """
    owner, _, region = vim_id.partition("_")
    return owner, region


def known_vim(vim_id: str) -> str:
    """The VIM id if the table knows it; a 404 otherwise."""
    if not api_context().read_model.table.has_vim(vim_id):
        raise ApiError(404, f"unknown VIM {vim_id}")
    return vim_id
