"""Per-op time of an XLA CPU program from an xprof trace, summed over a run.

    XLA_FLAGS=--xla_cpu_enable_xprof_traceme=true ... tf.profiler.experimental.start(DIR) ... stop()
    .venv/bin/python -m benchmarks.xplane_summary DIR/plugins/profile/*/HOST.xplane.pb [--per 127]

Sums each XLA thunk's events (fusions, dots, copies ...) over every thread of the trace, grouped by
kind (the name without its ``.N`` suffix), and divides by ``--per`` (e.g. the decode steps the
traced call ran) to give ms per step and thunks per step; the top single thunks follow.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys


def summarize(path: str, per: int, top: int) -> None:
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    by_name: collections.Counter = collections.Counter()
    by_kind: collections.Counter = collections.Counter()
    kind_count: collections.Counter = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if line.name == "python":  # the host thread's TensorFlow events enclose the whole run
                continue
            for ev in line.events:
                name = plane.event_metadata[ev.metadata_id].name
                if name.startswith(("ThunkExecutor", "ThreadpoolListener", "end: ", "while")):
                    continue
                by_name[name] += ev.duration_ps
                kind = re.sub(r"\.\d+$", "", name)
                by_kind[kind] += ev.duration_ps
                kind_count[kind] += 1
    total = sum(by_kind.values())
    print(f"thunk time {total / 1e9:.1f} ms, {total / 1e9 / per:.3f} ms per step ({per} steps)")
    for kind, ps in by_kind.most_common():
        print(f"{ps / 1e9 / per:8.3f} ms/step {kind_count[kind] / per:7.1f}/step  {kind}")
    print("\ntop thunks:")
    for name, ps in by_name.most_common(top):
        print(f"{ps / 1e9 / per:8.3f} ms/step  {name}")


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("xplane")
    ap.add_argument("--per", type=int, default=1, help="divide by this many steps")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    summarize(args.xplane, args.per, args.top)


if __name__ == "__main__":
    main(sys.argv[1:])
