"""Kill a process that edits and autosaves corrections with SIGKILL, again and again.

    python benchmarks/bench_sigkill.py [--trials 70] [--autosave 2.5]

A child process edits a stack of labels the way a person does in the Correct step: every
20 ms it changes one slice (filled with the edit's number) and marks that slice as the
one checked, and it autosaves the slices changed since the last save every ``--autosave``
seconds through :class:`napari_unet.work.session.Session`, as the dock does. The parent kills
it with SIGKILL while it is saving (the worst moment: a kill at a random time rarely
lands in the few milliseconds a save takes), at a random point within the save, then
restores the session and checks:

- corrupt: the save cannot be loaded;
- mixed version: the slices and the checked list come from different saves (a slice
  newer than the state's edit, or a checked list that is not that edit's);
- orphan .part: temporary files still there after the next save (a kill mid-write leaves
  one; the next save must clean it up);
- seconds of edits lost: the time between the last edit the child made and the edit
  the restored save holds.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import emit_json, machine, table

SHAPE = (12, 1024, 1024)  # 4 MB slices: a save of the changed ones takes a while


def child(folder: str, autosave: float) -> None:
    from napari_unet.work.session import Session

    session = Session(folder, SHAPE)
    labels = np.zeros(SHAPE, np.int32)
    dirty: set[int] = set()
    last_save = time.monotonic()
    k = 0
    while True:
        k += 1
        z = k % SHAPE[0]
        labels[z] = k
        dirty.add(z)
        print(k, time.monotonic(), flush=True)
        if time.monotonic() - last_save >= autosave:
            print("save", time.monotonic(), flush=True)
            session.save(labels, checked=[z], dirty=dirty, extra={"edit": k})
            dirty.clear()
            last_save = time.monotonic()
        time.sleep(0.02)


def trial(autosave: float, rng: random.Random) -> dict:
    from napari_unet.work.session import Session

    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", folder, "--autosave", str(autosave)],
            stdout=subprocess.PIPE,
            text=True,
        )
        lines, saves = [], 0
        target = rng.randint(1, 3)  # the first, second or third save
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("save"):
                saves += 1
                if saves == target:
                    time.sleep(rng.uniform(0.0, 0.15))  # somewhere within it
                    break
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        lines += out.splitlines()
        edits = {
            int(k): float(t)
            for k, t in (line.split() for line in lines if line.strip() and not line.startswith("save"))
        }
        parts_at_kill = len(list(Path(folder).glob(".*.part")))
        session = Session(folder, SHAPE)
        row = {"corrupt": 0, "mixed": 0, "parts_at_kill": parts_at_kill, "orphans": 0, "lost_s": 0.0}
        try:
            loaded = session.load()
            state = session.state()
        except Exception:  # anything a restore raises counts as a corrupt save
            row["corrupt"] = 1
            return row
        if loaded is None:  # killed before the first save: everything since the start is lost
            row["lost_s"] = max(edits.values()) - min(edits.values()) if edits else 0.0
            return row
        labels, checked, _ = loaded
        edit = int(state["edit"])
        z = edit % SHAPE[0]
        newest = int(labels.max())
        if newest != edit or int(labels[z].min()) != edit or checked != [z]:
            row["mixed"] = 1
        row["lost_s"] = max(edits.values()) - edits[edit]
        session.save(labels, checked=checked, dirty={z})  # the next session's first save
        row["orphans"] = len(list(Path(folder).glob(".*.part")))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=70)
    parser.add_argument("--autosave", type=float, default=2.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.autosave)
        return
    rng = random.Random(args.seed)
    rows = [trial(args.autosave, rng) for _ in range(args.trials)]
    summary = {
        "trials": len(rows),
        "corrupt_saves": sum(r["corrupt"] for r in rows),
        "mixed_version_saves": sum(r["mixed"] for r in rows),
        "part_files_at_kill": sum(r["parts_at_kill"] for r in rows),
        "orphan_part_files": sum(r["orphans"] for r in rows),
        "max_seconds_lost": round(max(r["lost_s"] for r in rows), 2),
        "median_seconds_lost": round(float(np.median([r["lost_s"] for r in rows])), 2),
    }
    print(f"SIGKILL during editing with autosave every {args.autosave:g} s, on {machine()}")
    print(table([{"what": k.replace("_", " "), "value": v} for k, v in summary.items()]))
    emit_json({"benchmark": "sigkill", "autosave_s": args.autosave, **summary})


if __name__ == "__main__":
    main()
