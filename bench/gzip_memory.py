"""Peak memory of decompressing a gzip upload into its staged copy (work/<job>/source/), small vs large.

    .venv/bin/python bench/gzip_memory.py [--small-mb 10] [--large-mb 100]

S3 is a moto server in its own process (its memory holds the objects, not ours). Each size is
staged by a fresh child process that first imports what the vendor function imports (boto3, the
library); its peak resident set (VmHWM) is read at the end. The decompressed data is NDJSON-like
text (about 4:1 under gzip). Goal: large peak <= 1.2 x small peak (memory does not grow with the
file: one 8 MiB part at a time).
"""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PYTHON, ROOT, Report, child_env, parser, table

CHILD = r"""
import json, sys, time, boto3
from vendor_import.source import S3Source, stage_gunzipped
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="bench", aws_secret_access_key="bench")
size = s3.head_object(Bucket="bench-gz", Key=sys.argv[2])["ContentLength"]
started = time.perf_counter()
n = stage_gunzipped(S3Source(s3, "bench-gz", sys.argv[2], size=size), s3, "bench-gz", sys.argv[2] + ".staged",
                    max_bytes=None, too_large="")
seconds = time.perf_counter() - started
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"decompressed": n, "peak_kb": hwm, "seconds": seconds}))
"""


def write_gzip(path: Path, mb: float) -> int:
    """About ``mb`` MiB of NDJSON records, gzip-compressed, written as it goes; returns the plain size."""
    target, n, written = int(mb * 1024 * 1024), 0, 0
    with gzip.open(path, "wb", compresslevel=6) as f:
        while written < target:
            n += 1
            line = json.dumps({"id": f"R{n:09d}", "email": f"user{n}@example.com", "score": (n * 7919) % 100003,
                               "note": os.urandom(24).hex()}).encode() + b"\n"
            f.write(line)
            written += len(line)
    return written


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--small-mb", type=float, default=10)
    p.add_argument("--large-mb", type=float, default=100)
    args = p.parse_args(argv)
    import boto3

    port = free_port()
    server = subprocess.Popen([str(Path(PYTHON).with_name("moto_server")), "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    rows, results = [], {}
    try:
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                          aws_secret_access_key="bench")
        for _ in range(100):
            try:
                s3.create_bucket(Bucket="bench-gz")
                break
            except Exception:  # noqa: BLE001 - the server is still starting
                time.sleep(0.1)
        with tempfile.TemporaryDirectory(prefix="bench-gz-") as tmp:
            for label, mb in (("small", args.small_mb), ("large", args.large_mb)):
                path = Path(tmp) / f"{label}.ndjson.gz"
                plain = write_gzip(path, mb)
                s3.upload_file(str(path), "bench-gz", path.name)
                out = subprocess.run([PYTHON, "-c", CHILD, endpoint, path.name], env=child_env(), cwd=ROOT,
                                     capture_output=True, text=True, timeout=1800, check=True)
                r = json.loads(out.stdout)
                assert r["decompressed"] == plain, (r, plain)
                r.update(gzip_bytes=path.stat().st_size, plain_bytes=plain)
                results[label] = r
                rows.append([label, f"{plain / 1048576:.1f}", f"{path.stat().st_size / 1048576:.1f}",
                             f"{r['peak_kb'] / 1024:.1f}", f"{r['seconds']:.1f}"])
                path.unlink()
                s3.delete_object(Bucket="bench-gz", Key=path.name)
                s3.delete_object(Bucket="bench-gz", Key=path.name + ".staged")
    finally:
        server.terminate()
        server.wait(timeout=10)
    ratio = results["large"]["peak_kb"] / results["small"]["peak_kb"]
    print(table(rows, ["file", "decompressed MiB", "gzip MiB", "peak RSS MiB", "seconds"]))
    report = Report("gzip_memory", args)
    report.figures.update({f"{label}_peak_mb": round(r["peak_kb"] / 1024, 1) for label, r in results.items()})
    report.check("large / small peak RSS", round(ratio, 3), 1.2, unit="x")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
