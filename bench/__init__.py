"""Benchmarks of eventfed against the real brokers on this machine: `make bench` runs them all.

`python -m bench.run` measures ingest (RabbitMQ to the raw topic), the stream worker, end-to-end
latency, the state API and memory, each next to a plain baseline measured in the same run, and
writes bench/results/report.md, results.json and two charts.
"""
