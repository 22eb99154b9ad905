"""Publish polled-meter samples the way Ceilometer 27 itself does; run by .venv-ceilometer's python.

The meters that need a hypervisor (cpu, memory.usage, per-device disk and per-NIC network
counters) cannot be polled here (no libvirt), so the readings are given on the command line, and
everything after them is Ceilometer's own code: `ceilometer.sample.Sample` objects, turned into
messages by `ceilometer.publisher.utils.meter_message_from_counter` (signed with
`[publisher] telemetry_secret`) and sent

- `--path polling`: with the polling agent's notifier (`AgentManager.notifier`, publisher
  ceilometer.polling) as event_type `telemetry.polling`, payload `{"samples": [...]}`, exactly the
  call `PollingTask` makes after a poll; a notification agent then relays them as `metering`;
- `--path publisher`: with the notification agent's own `SampleNotifierPublisher` (`notifier://`),
  as event_type `metering`, payload a bare list.

  python publish_samples.py --config-file ceilometer.conf --path polling < readings.json

readings.json: a list of {"name", "type", "unit", "volume", "resource_id", "project_id", "user_id",
"timestamp" (ISO), "resource_metadata"}. Prints a line `SAMPLE <message_id>` per sample sent (Ceilometer logs to the same stdout).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from urllib import parse

from ceilometer import sample as ceilometer_sample
from ceilometer import service
from ceilometer.polling import manager
from ceilometer.publisher import messaging, utils


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--path", choices=("polling", "publisher"), default="polling")
    args = parser.parse_args()
    conf = service.prepare_service(
        argv=["publish_samples", "--config-file", args.config_file], config_files=[]
    )
    readings = json.load(sys.stdin)
    samples = [
        ceilometer_sample.Sample(
            name=r["name"],
            type=r["type"],
            unit=r["unit"],
            volume=r["volume"],
            user_id=r.get("user_id"),
            project_id=r.get("project_id"),
            resource_id=r["resource_id"],
            timestamp=r["timestamp"],
            resource_metadata=r.get("resource_metadata") or {},
        )
        for r in readings
    ]
    if args.path == "polling":
        agent = manager.AgentManager(0, conf, ["compute"])
        batch = [utils.meter_message_from_counter(s, conf.publisher.telemetry_secret) for s in samples]
        agent.notifier.sample({}, "telemetry.polling", {"samples": batch})
    else:
        publisher = messaging.SampleNotifierPublisher(conf, parse.urlparse("notifier://"))
        publisher.publish_samples(samples)
    for one in samples:
        print(f"SAMPLE {one.id}", flush=True)
    # The notifier sends from a thread of oslo.messaging's; let it finish before the process ends.
    time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
