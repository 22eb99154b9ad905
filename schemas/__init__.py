"""The VM status event contract: the Avro schema and its documentation, shipped as package data."""
