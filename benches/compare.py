#!/usr/bin/env python3
"""rbk against restic, borg and rustic on the same module state, in one run.

    python3 benches/compare.py [--size-mib 620] [--generations 5] [--tasks 4] [--restores 3]
                               [--pstates ours|dbbench] [--work DIR]

Generates a module with rbk's own generator (real RocksDB PStates, depot segments), then for
each generation (after the first, `rbk testdata advance --percent 5`: ~5% new depot data and
~5% of PState keys overwritten, so RocksDB flushes and compacts) backs it up with every tool
found on PATH, rotating the order per generation so machine drift hits all alike. Finally
restores the last generation with each, --restores times in rotating order (median kept). Prints one table: first backup, median incremental,
store bytes after the last generation, durable restore, peak RSS, and rbk's ratio to each.

`--pstates dbbench` replaces every PState with a RocksDB written by another program, RocksDB's
own `db_bench` (`apt-get install rocksdb-tools`): `fillrandom` to the size our generator gave
that PState (100-byte values, snappy blocks, 8 MiB memtables and SSTs), and each later
generation `overwrite`s 5% of its keys instead of our writer's updates (the depots still
advance with rbk's generator). Tuning to one writer's SSTs is how a store 1.27x borg's went
unnoticed.

A restore counts until its bytes are durable, for every tool alike: the tool's restore, then
`sync`. rbk's restore fsyncs on its own; the table also shows rbk's restore with --no-sync
(then `sync`).

Tools: restic (repository v2, compression auto = zstd), borg (`--compression zstd,3`, no
encryption), rustic (`cargo install rustic-rs --locked`). Anything missing is skipped. The
page cache is warm for every tool alike (the module was just written or read).
Run manually, not in CI; build rbk first: cargo build --release -p rbk-cli.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODULE = "com.rbk.BankModule"
PASSWORD = "compare-bench"


def timed(cmd, env=None, cwd=None):
    """Runs cmd under /usr/bin/time; returns (seconds, peak RSS in MiB, stdout)."""
    start = time.monotonic()
    p = subprocess.run(
        ["/usr/bin/time", "-f", "RSS_KB=%M"] + cmd,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    secs = time.monotonic() - start
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    rss = 0
    for line in p.stderr.splitlines():
        if line.startswith("RSS_KB="):
            rss = int(line.split("=")[1]) / 1024
    return secs, rss, p.stdout


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except FileNotFoundError:
                pass
    return total


class Tool:
    name = ""

    def __init__(self, work):
        self.repo = work / f"repo-{self.name}"
        self.env = dict(os.environ)

    def available(self):
        return shutil.which(self.name) is not None


DBBENCH_BYTES_PER_KEY = 51  # what db_bench's fillrandom below writes per key, measured


def db_bench(db, benchmark, num, writes=None):
    cmd = ["db_bench", f"--benchmarks={benchmark}", f"--db={db}", f"--num={num}",
           "--value_size=100", "--compression_type=snappy", "--threads=1",
           "--write_buffer_size=8388608", "--target_file_size_base=8388608",
           f"--use_existing_db={0 if benchmark == 'fillrandom' else 1}"]
    if writes is not None:
        cmd.append(f"--writes={writes}")
    subprocess.run(cmd, check=True, capture_output=True)


def pstate_dirs(src):
    return sorted(p for p in src.glob("tasks/*/pstates/*") if p.is_dir())


def dbbench_pstates(src):
    """Replaces each PState with a db_bench-written RocksDB of about the same size; returns
    {dir: keys}."""
    keys = {}
    for p in pstate_dirs(src):
        n = max(dir_bytes(p) // DBBENCH_BYTES_PER_KEY, 1000)
        shutil.rmtree(p)
        db_bench(p, "fillrandom", n)
        keys[p] = n
    return keys


def advance_dbbench(rbk, data, src, keys, work):
    """One generation: depots advance with rbk's generator (its PState writes go to scratch
    copies that are thrown away), then db_bench overwrites 5% of each PState's keys."""
    side = work / "pstates-aside"
    for p in keys:
        dest = side / p.relative_to(src)
        dest.parent.mkdir(parents=True, exist_ok=True)
        p.rename(dest)
    subprocess.run([rbk, "--data-dir", str(data), "testdata", "advance", "--percent", "5"],
                   check=True, capture_output=True)
    for p, n in keys.items():
        if p.exists():
            shutil.rmtree(p)
        (side / p.relative_to(src)).rename(p)
        db_bench(p, "overwrite", n, writes=max(n // 20, 1))


class Rbk(Tool):
    name = "rbk"

    def __init__(self, work, exe, data):
        super().__init__(work)
        self.exe, self.data, self.last = exe, data, None

    def available(self):
        return Path(self.exe).exists()

    def init(self):
        pass

    def backup(self, src):
        secs, rss, out = timed(
            [self.exe, "--data-dir", str(self.data), "--provider", f"fs {self.repo}",
             "backup", "--module", MODULE, "--json", "--quiet"])
        self.last = json.loads(out)["backup_id"]
        return secs, rss

    def restore(self, target, sync=True):
        return timed(
            [self.exe, "--data-dir", str(target), "--provider", f"fs {self.repo}",
             "restore", "--backupId", self.last, "--quiet"] + ([] if sync else ["--no-sync"]))[:2]


class Restic(Tool):
    name = "restic"

    def __init__(self, work):
        super().__init__(work)
        self.env.update(RESTIC_PASSWORD=PASSWORD, RESTIC_REPOSITORY=str(self.repo))

    def init(self):
        timed(["restic", "init", "--repository-version", "2"], env=self.env)

    def backup(self, src):
        return timed(["restic", "backup", "--quiet", "--compression", "auto", str(src)],
                     env=self.env)[:2]

    def restore(self, target):
        return timed(["restic", "restore", "latest", "--target", str(target)], env=self.env)[:2]


class Rustic(Restic):
    name = "rustic"

    def __init__(self, work):
        super().__init__(work)
        self.env.update(RUSTIC_PASSWORD=PASSWORD, RUSTIC_REPOSITORY=str(self.repo))

    def init(self):
        timed(["rustic", "init"], env=self.env)

    def backup(self, src):
        return timed(["rustic", "backup", str(src)], env=self.env)[:2]

    def restore(self, target):
        return timed(["rustic", "restore", "latest", str(target)], env=self.env)[:2]


class Borg(Tool):
    name = "borg"

    def __init__(self, work):
        super().__init__(work)
        self.env.update(BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK="yes",
                        BORG_RELOCATED_REPO_ACCESS_IS_OK="yes")
        self.n = 0

    def init(self):
        timed(["borg", "init", "--encryption=none", str(self.repo)], env=self.env)

    def backup(self, src):
        self.n += 1
        # Relative paths, so extraction recreates the tree under the target dir.
        return timed(["borg", "create", "--compression", "zstd,3",
                      f"{self.repo}::g{self.n}", src.name], env=self.env, cwd=src.parent)[:2]

    def restore(self, target):
        target.mkdir(parents=True)
        return timed(["borg", "extract", f"{self.repo}::g{self.n}"], env=self.env,
                     cwd=target)[:2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=620)
    ap.add_argument("--generations", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=4)
    ap.add_argument("--restores", type=int, default=3)
    ap.add_argument("--pstates", choices=["ours", "dbbench"], default="ours")
    ap.add_argument("--work", default="/tmp/rbk-compare")
    ap.add_argument("--rbk", default=str(Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "release/rbk"))
    a = ap.parse_args()

    work = Path(a.work)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    data = work / "data"
    src = data / "modules" / MODULE
    rbk = str(Path(a.rbk).resolve())
    subprocess.run([rbk, "--data-dir", str(data), "testdata", "generate", "--size-mib",
                    str(a.size_mib), "--tasks", str(a.tasks)], check=True, capture_output=True)
    keys = dbbench_pstates(src) if a.pstates == "dbbench" else None
    tools = [t for t in (Rbk(work, rbk, data), Restic(work), Borg(work), Rustic(work))
             if t.available()]
    pst = sum(dir_bytes(p) for p in pstate_dirs(src))
    print(f"module: {dir_bytes(src) / 2**20:.0f} MiB ({pst / 2**20:.0f} MiB PStates written by "
          f"{'db_bench' if keys else 'rbk testdata'}), {a.tasks} tasks; tools: "
          + ", ".join(t.name for t in tools), flush=True)
    for t in tools:
        t.init()

    runs = {t.name: [] for t in tools}
    rss = {t.name: 0.0 for t in tools}
    for g in range(a.generations):
        if g > 0 and keys:
            advance_dbbench(rbk, data, src, keys, work)
        elif g > 0:
            subprocess.run([rbk, "--data-dir", str(data), "testdata", "advance", "--percent", "5"],
                           check=True, capture_output=True)
        time.sleep(1.1)  # leave rbk's 1 s racy window behind, as any real schedule would
        order = tools[g % len(tools):] + tools[:g % len(tools)]
        for t in order:
            os.sync()
            secs, peak = t.backup(src)
            runs[t.name].append(secs)
            rss[t.name] = max(rss[t.name], peak)
        print(f"generation {g}: " + ", ".join(f"{t.name} {runs[t.name][-1]:.2f}s" for t in tools),
              flush=True)

    stored = {t.name: dir_bytes(t.repo) for t in tools}
    # Restores are repeated (tools alternating) and the median kept: this disk's flush speed
    # varies from run to run by tens of percent.
    runs_restore = {t.name: [] for t in tools}
    runs_nosync = []
    for r in range(a.restores):
        for t in tools[r % len(tools):] + tools[:r % len(tools)]:
            variants = [True, False] if t.name == "rbk" else [True]
            for sync in variants:
                target = work / f"restore-{t.name}"
                if target.exists():
                    shutil.rmtree(target)
                # Flush the previous restore's dirty pages first, so no tool pays for
                # another's writeback.
                os.sync()
                # Until durable for every tool: rbk's restore fsyncs every file and directory
                # before it swaps the module in, the others do not fsync at all, so each
                # restore is followed by a timed `sync`.
                secs, peak = t.restore(target, sync) if t.name == "rbk" else t.restore(target)
                started = time.monotonic()
                os.sync()
                secs += time.monotonic() - started
                (runs_restore[t.name] if sync else runs_nosync).append(secs)
                rss[t.name] = max(rss[t.name], peak)
    restore = {n: statistics.median(v) for n, v in runs_restore.items()}
    nosync = statistics.median(runs_nosync) if runs_nosync else None

    rows = []
    for t in tools:
        r = runs[t.name]
        rows.append((t.name, r[0], statistics.median(r[1:]) if len(r) > 1 else float("nan"),
                     stored[t.name], restore[t.name], rss[t.name]))
    print()
    print(f"{'tool':<8} {'first s':>8} {'incr s':>8} {'store MiB':>10} {'restore s':>10} {'RSS MiB':>8}"
          "   (restore: until durable, tool + sync)")
    for n, first, inc, st, rs, peak in rows:
        print(f"{n:<8} {first:>8.2f} {inc:>8.3f} {st / 2**20:>10.1f} {rs:>10.2f} {peak:>8.0f}")
    if nosync is not None:
        print(f"{'rbk':<8} {'':>8} {'':>8} {'':>10} {nosync:>10.2f} {'':>8}  restore --no-sync, then sync")
    base = rows[0]
    if base[0] == "rbk":
        for other in rows[1:]:
            print(f"rbk / {other[0]}: first {base[1] / other[1]:.2f}, incremental "
                  f"{base[2] / other[2]:.2f}, store {base[3] / other[3]:.2f}, restore "
                  f"{base[4] / other[4]:.2f} ({nosync / other[4]:.2f} with --no-sync), "
                  f"RSS {base[5] / other[5]:.2f}")


if __name__ == "__main__":
    main()
