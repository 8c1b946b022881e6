"""The scale-out simulation run by scripts/bench-scale (see there for the knobs).

moto serves four account-regions: the exporter's own account in us-east-1
and eu-west-1, and two accounts reached through STS AssumeRole (one in each
region); a log group `/vpc/flow-logs` in each holds a quarter of the
interfaces, one `eni-…-all` stream per interface, with `generate --shape
realistic` traffic. BENCH_REPLICAS exporters read all four groups, split
by `[shard]`, through a counting proxy that tells the account (the access
key; assumed keys are learned from the AssumeRole answers passing through)
and the region (the SigV4 scope) of every call.
"""

import bisect
import collections
import concurrent.futures
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3

from bench_support import free_port, peak_rss_kib, start_moto, total, wait_http

REPO = os.environ["BENCH_REPO"]
BIN = os.environ["BENCH_BIN"]
INTERFACES = int(os.environ.get("BENCH_INTERFACES", "10000"))
REPLICAS = int(os.environ.get("BENCH_REPLICAS", "2"))
PER_INTERFACE = int(os.environ.get("BENCH_RECORDS_PER_INTERFACE", "4"))
MINUTES = int(os.environ.get("BENCH_MINUTES", "5"))
POLL_INTERVAL = int(os.environ.get("BENCH_POLL_INTERVAL", "60"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "150"))
RPS = float(os.environ.get("BENCH_RPS", "2"))
GROUP = "/vpc/flow-logs"
HOME = "123456789012"  # moto's account for the static test credentials
ROLES = {
    "222222222222": "arn:aws:iam::222222222222:role/vpc-flow-exporter-reader",
    "333333333333": "arn:aws:iam::333333333333:role/vpc-flow-exporter-reader",
}
# (account, region) of each log group; interface i goes to group i % 4.
PLACES = [
    (HOME, "us-east-1"),
    (HOME, "eu-west-1"),
    ("222222222222", "us-east-1"),
    ("333333333333", "eu-west-1"),
]
QUOTA = 5.0  # FilterLogEvents requests/s per account and region (AWS, not raisable)
TICKS = os.sysconf("SC_CLK_TCK")


def log(message):
    print(f"bench-scale: {message}", file=sys.stderr, flush=True)


class Calls:
    """Every call the proxy passed: (monotonic time, account, region, operation)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = []
        self.accounts = {"testing": HOME}

    def add(self, key, region, operation):
        with self.lock:
            account = self.accounts.get(key, "unknown")
            self.calls.append((time.monotonic(), account, region, operation))

    def learn(self, body):
        text = body.decode("utf-8", "replace")
        key = re.search(r"<AccessKeyId>([^<]+)</AccessKeyId>", text)
        arn = re.search(r"<Arn>arn:aws:sts::(\d{12}):assumed-role", text)
        if key and arn:
            with self.lock:
                self.accounts[key.group(1)] = arn.group(1)

    def between(self, start, end):
        with self.lock:
            return [call for call in self.calls if start <= call[0] < end]


HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


def proxy(upstream_port, calls):
    class Counting(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self):
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            auth = self.headers.get("Authorization") or ""
            scope = re.search(r"Credential=([^/]+)/\d+/([^/]+)/([^/]+)/", auth)
            target = self.headers.get("X-Amz-Target") or ""
            if target:
                operation = target.split(".")[-1]
            else:
                form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
                operation = (form.get("Action") or ["?"])[0]
            if scope:
                calls.add(scope.group(1), scope.group(2), operation)
            upstream = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=120)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            upstream.request(self.command, self.path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
            if operation == "AssumeRole":
                calls.learn(data)
            headers = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP]
            upstream.close()
            self.send_response(response.status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = forward

        def log_message(self, format, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Counting)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def clients(endpoint):
    """A Logs client per place, with the credentials its account needs."""
    base = dict(endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    made = {}
    for account, region in PLACES:
        if account == HOME:
            made[(account, region)] = boto3.client("logs", region_name=region, **base)
            continue
        sts = boto3.client("sts", region_name=region, **base)
        credentials = sts.assume_role(RoleArn=ROLES[account], RoleSessionName="seed")["Credentials"]
        made[(account, region)] = boto3.client(
            "logs",
            region_name=region,
            endpoint_url=endpoint,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
    return made


def seed(endpoint, work):
    """Generates the records, puts each interface's into its stream; returns
    the records per place and in all."""
    windows = MINUTES
    per_window = INTERFACES * PER_INTERFACE
    start = int(time.time()) - (MINUTES + 2) * 60
    flows = os.path.join(work, "flows.log")
    with open(flows, "wb") as out:
        subprocess.run(
            [BIN, "generate", "--shape", "realistic", "--interfaces", str(INTERFACES),
             "--records-per-window", str(per_window), "--records", str(per_window * windows),
             "--start", str(start), "--seed", "11"],
            stdout=out, check=True)
    by_interface = collections.defaultdict(list)
    with open(flows, encoding="utf-8") as lines:
        for line in lines:
            fields = line.split()
            event_time = int(fields[10]) if fields[10] != "-" else start
            by_interface[fields[2]].append((event_time * 1000, line.rstrip("\n")))
    os.remove(flows)
    interfaces = sorted(by_interface)
    made = clients(endpoint)
    for client in made.values():
        client.create_log_group(logGroupName=GROUP)
    records = collections.Counter()

    def put(index_and_interface):
        index, interface = index_and_interface
        place = PLACES[index % len(PLACES)]
        client = made[place]
        stream = f"{interface}-all"
        client.create_log_stream(logGroupName=GROUP, logStreamName=stream)
        events = sorted(by_interface[interface])
        for at in range(0, len(events), 10_000):
            client.put_log_events(
                logGroupName=GROUP, logStreamName=stream,
                logEvents=[{"timestamp": t, "message": m} for t, m in events[at:at + 10_000]])
        return place, len(events)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for place, count in pool.map(put, enumerate(interfaces)):
            records[place] += count
    log(f"seeded {sum(records.values()):,} records on {len(interfaces):,} streams "
        f"in {time.monotonic() - started:.0f}s")
    return records, len(interfaces)


def config(proxy_port, port, index):
    groups = []
    for account, region in PLACES:
        lines = [f'name = "{GROUP}"', f'region = "{region}"']
        if account != HOME:
            lines.append(f'role_arn = "{ROLES[account]}"')
        groups.append("[[cloudwatch.log_groups]]\n" + "\n".join(lines))
    return f"""
[server]
listen_address = "127.0.0.1:{port}"

[cloudwatch]
region = "us-east-1"
endpoint_url = "http://127.0.0.1:{proxy_port}"
poll_interval = "{POLL_INTERVAL}s"
lookback = "20m"
max_requests_per_second = {RPS}

{chr(10).join(groups)}

[shard]
index = {index}
count = {REPLICAS}
"""


def scrape(port):
    started = time.monotonic()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as answer:
        text = answer.read().decode()
    return text, time.monotonic() - started


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def busiest_second(times):
    """The most calls in any one-second window."""
    times = sorted(times)
    return max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


def main():
    work = tempfile.mkdtemp(prefix="bench-scale-")
    processes = []
    try:
        moto, endpoint = start_moto(os.path.join(REPO, ".venv/bin/moto_server"),
                                    stderr=open(os.path.join(work, "moto.log"), "wb"))
        processes.append(moto)
        moto_port = int(endpoint.rsplit(":", 1)[1])
        records, streams = seed(endpoint, work)
        calls = Calls()
        counting = proxy(moto_port, calls)
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_EC2_METADATA_DISABLED="true", AWS_REGION="us-east-1", RUST_LOG="warn")
        replicas = []
        launched = time.monotonic()
        for index in range(REPLICAS):
            port = free_port()
            path = os.path.join(work, f"replica-{index}.toml")
            with open(path, "w") as file:
                file.write(config(counting.server_address[1], port, index))
            process = subprocess.Popen(
                [BIN, "serve", "--config", path], env=env, stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(work, f"replica-{index}.log"), "wb"))
            processes.append(process)
            replicas.append((index, port, process))
        ready_after = {}
        for index, port, process in replicas:
            wait_http(f"http://127.0.0.1:{port}/ready", 900, process)
            ready_after[index] = time.monotonic() - launched
        first_done = time.monotonic()
        log(f"{REPLICAS} replicas ready (first poll of every group) after "
            + ", ".join(f"{s:.1f}s" for s in ready_after.values()) + f"; measuring {SECONDS}s")
        before = {index: (scrape(port)[0], cpu_seconds(process.pid)) for index, port, process in replicas}
        renders = collections.defaultdict(list)
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            time.sleep(min(10, max(0.1, deadline - time.monotonic())))
            for index, port, process in replicas:
                renders[index].append(scrape(port)[1])
        measured_end = time.monotonic()
        after = {index: (scrape(port), cpu_seconds(process.pid), peak_rss_kib(process.pid) / 1024)
                 for index, port, process in replicas}

        print(f"bench-scale: {streams:,} interfaces ({PER_INTERFACE} records/interface/min, "
              f"{MINUTES} min seeded, {sum(records.values()):,} records) in {len(PLACES)} "
              f"account-regions, {REPLICAS} replicas, poll_interval {POLL_INTERVAL}s, "
              f"max_requests_per_second {RPS:g}; steady state measured over {measured_end - first_done:.0f}s")
        print("replica  first-poll  FLE calls/poll (catch-up, steady)  read ampl.  CPU s (catch-up, steady/min)  peak RSS  series  /metrics render (median)  records")
        seen = 0.0
        for index, port, process in replicas:
            text0, cpu0 = before[index]
            (text1, _), cpu1, rss = after[index]
            calls0 = total(text0, "vpcflow_api_calls_total", operation="FilterLogEvents")
            calls1 = total(text1, "vpcflow_api_calls_total", operation="FilterLogEvents")
            polls0 = total(text0, "vpcflow_polls_total", outcome="success")
            polls1 = total(text1, "vpcflow_polls_total", outcome="success")
            fetched = total(text1, "vpcflow_log_events_fetched_total")
            new = total(text1, "vpcflow_log_events_new_total")
            steady_fetched = fetched - total(text0, "vpcflow_log_events_fetched_total")
            steady_new = new - total(text0, "vpcflow_log_events_new_total")
            series = sum(1 for line in text1.splitlines() if line and not line.startswith("#"))
            counted = total(text1, "vpcflow_records_total")
            seen += counted
            steady_polls = polls1 - polls0
            steady = (calls1 - calls0) / steady_polls if steady_polls else float("nan")
            catchup = calls0 / polls0 if polls0 else float("nan")
            minutes = (measured_end - first_done) / 60
            ampl_steady = f"{steady_fetched / steady_new:.2f}" if steady_new else f"{steady_fetched:.0f}/0"
            print(f"{index:>7}  {ready_after[index]:>9.1f}s  {catchup:>6.1f}, {steady:>5.1f} over {steady_polls:.0f} polls"
                  f"           {fetched / new if new else float('nan'):.2f} (steady {ampl_steady})"
                  f"  {cpu0:>6.1f}, {(cpu1 - cpu0) / minutes:>5.2f}"
                  f"                  {rss:>6.1f} MiB  {series:>6}  {statistics.median(renders[index]) * 1000:>7.1f} ms"
                  f"               {counted:,.0f}")
        expected = sum(records.values())
        print(f"records counted by all replicas: {seen:,.0f} of {expected:,} seeded"
              f" ({'exact' if seen == expected else 'NOT EXACT'})")
        print("account-region         calls (FilterLogEvents / DescribeLogStreams / AssumeRole / GetCallerIdentity)"
              "   FLE/s mean (catch-up, steady)  busiest 1 s   quota")
        everything = calls.between(launched, measured_end)
        for account, region in PLACES:
            mine = [c for c in everything if c[1] == account and c[2] == region]
            count = collections.Counter(c[3] for c in mine)
            fle = [c[0] for c in mine if c[3] == "FilterLogEvents"]
            catchup = [t for t in fle if t < first_done]
            steady = [t for t in fle if t >= first_done]
            print(f"{account}/{region:<10}  {count['FilterLogEvents']:>6} / {count['DescribeLogStreams']:>4}"
                  f" / {count['AssumeRole']:>3} / {count['GetCallerIdentity']:>3}"
                  f"                                   {len(catchup) / max(first_done - launched, 1e-9):.2f}, "
                  f"{len(steady) / max(measured_end - first_done, 1e-9):.2f}"
                  f"                     {busiest_second(fle):>3}           {QUOTA:g}/s")
        unknown = sum(1 for c in everything if c[1] == "unknown")
        if unknown:
            print(f"calls whose account the proxy could not tell: {unknown}")
        counting.shutdown()
        if seen != expected:
            sys.exit(1)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
