"""`eventfed api`: the latest state of every VM over HTTP, and ONAP's check_vim_status."""

from bridge.api.app import create_app

__all__ = ["create_app"]
