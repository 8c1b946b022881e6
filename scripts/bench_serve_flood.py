"""The serve flood run by scripts/bench-serve-flood (see there for the knobs).

moto on a free loopback port; one log group `/vpc/flow-logs` with one
stream `eni-0f100d0000000001-all` holding FLOOD_RECORDS lone REJECT records
from distinct sources to port 22, their starts spread over one minute that
ended two minutes ago (event timestamp = the record's start, as a flow log
publishes them). `serve` reads it with default settings (plus
FLOOD_CONFIG); /metrics is scraped every half second and VmHWM read from
/proc until every record is counted and every session decided.
"""

import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3

from bench_support import free_port, peak_rss_kib, start_moto, total, wait_http

BIN = os.environ["FLOOD_BIN"]
MOTO = os.environ["FLOOD_MOTO"]
RECORDS = int(os.environ.get("FLOOD_RECORDS", "200000"))
STATE = os.environ.get("FLOOD_STATE", "") not in ("", "0")
EXTRA = os.environ.get("FLOOD_CONFIG", "")
TIMEOUT = int(os.environ.get("FLOOD_TIMEOUT", "3600"))
GROUP = "/vpc/flow-logs"
ENI = "eni-0f100d0000000001"
ENV = {
    "PATH": "/usr/bin:/bin",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "NO_PROXY": "127.0.0.1,localhost",
}


def log(message):
    print(f"bench-serve-flood: {message}", file=sys.stderr, flush=True)


def seed(endpoint):
    """Puts the flood in batches within AWS's limits (10,000 events, 1 MiB)."""
    logs = boto3.client("logs", region_name="us-east-1", endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")
    logs.create_log_group(logGroupName=GROUP)
    logs.create_log_stream(logGroupName=GROUP, logStreamName=f"{ENI}-all")
    first = int(time.time()) - 3 * 60
    batch, size = [], 0
    started = time.monotonic()
    for i in range(RECORDS):
        t = first + i * 60 // RECORDS
        message = (f"2 123456789010 {ENI} 100.{i // 65536 % 256}.{i // 256 % 256}.{i % 256} "
                   f"10.0.0.10 {1024 + i % 60000} 22 6 1 44 {t} {t} REJECT OK")
        if len(batch) == 10_000 or size + len(message) + 26 > 1_000_000:
            logs.put_log_events(logGroupName=GROUP, logStreamName=f"{ENI}-all", logEvents=batch)
            batch, size = [], 0
        batch.append({"timestamp": t * 1000, "message": message})
        size += len(message) + 26
    if batch:
        logs.put_log_events(logGroupName=GROUP, logStreamName=f"{ENI}-all", logEvents=batch)
    log(f"seeded {RECORDS:,} records in {time.monotonic() - started:.0f}s")


def main():
    work = tempfile.mkdtemp(prefix="bench-serve-flood-")
    moto, endpoint = start_moto(MOTO)
    exporter = None
    try:
        seed(endpoint)
        port = free_port()
        state = f'[state]\ndirectory = "{work}/state"\n' if STATE else ""
        config = os.path.join(work, "config.toml")
        with open(config, "w") as out:
            out.write(f"""
[cloudwatch]
region = "us-east-1"
endpoint_url = "{endpoint}"
{EXTRA}

[[cloudwatch.log_groups]]
name = "{GROUP}"

{state}""")
        log(f"serve: {BIN} ({'with' if STATE else 'without'} [state]{', ' + EXTRA if EXTRA else ''})")
        started = time.monotonic()
        exporter = subprocess.Popen(
            [BIN, "serve", "--config", config, "--web.listen-address", f"127.0.0.1:{port}"],
            env=ENV, stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "serve.log"), "w"))
        wait_http(f"http://127.0.0.1:{port}/healthz", 30, exporter)
        caught_up = None
        hwm_caught_up = 0
        text = ""
        while time.monotonic() - started < TIMEOUT:
            time.sleep(0.5)
            if exporter.poll() is not None:
                raise SystemExit(f"bench-serve-flood: serve exited ({exporter.returncode})")
            hwm = peak_rss_kib(exporter.pid)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as answer:
                text = answer.read().decode()
            records = total(text, "vpcflow_records_total")
            if caught_up is None and records >= RECORDS:
                caught_up = time.monotonic() - started
                hwm_caught_up = hwm
            if caught_up is not None and total(text, "vpcflow_sessions_total") >= RECORDS:
                break
        hwm = peak_rss_kib(exporter.pid)
        elapsed = time.monotonic() - started
        records = total(text, "vpcflow_records_total")
        sessions = total(text, "vpcflow_sessions_total")
        rejected = total(text, "vpcflow_sessions_total", verdict="rejected_inbound")
        pages = total(text, "vpcflow_api_calls_total", operation="FilterLogEvents", outcome="success")
        print(f"flood: {RECORDS:,} distinct lone records on one interface within one minute")
        print(f"binary: {BIN}")
        print(f"records counted: {records:,.0f}; sessions decided: {sessions:,.0f} "
              f"(rejected_inbound {rejected:,.0f}); evicted early: "
              f"{total(text, 'vpcflow_sessions_evicted_total'):,.0f}")
        print(f"log events fetched: {total(text, 'vpcflow_log_events_fetched_total'):,.0f}, "
              f"new: {total(text, 'vpcflow_log_events_new_total'):,.0f}; FilterLogEvents pages: {pages:,.0f}")
        if STATE:
            print(f"checkpoints written: {total(text, 'vpcflow_state_checkpoints_total', outcome='written'):,.0f}")
        print(f"peak RSS (VmHWM): {hwm / 1024:.1f} MiB; by the time every record was "
              f"counted: {hwm_caught_up / 1024:.1f} MiB")
        print("time to catch up (every record counted): "
              + (f"{caught_up:.1f} s" if caught_up is not None else "not within the timeout"))
        print(f"time until every session was decided: {elapsed:.1f} s")
        ok = records == RECORDS and sessions == RECORDS and rejected == RECORDS
        print("totals: exact" if ok else "totals: WRONG")
        sys.exit(0 if ok else 1)
    finally:
        for process in (exporter, moto):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


main()
