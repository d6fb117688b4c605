"""Deterministic benchmark dataset for safehold and its peers (restic, borg).

`generate` writes a tree that looks like a small server: many small text files
(source code and logs), some medium binaries, one large random file and one
large compressible SQL dump. `mutate` then changes about 1 % of it the way a day
of use would, including small in-place edits in the middle of big files so that
content-defined chunking is what decides how much a re-run has to store.

Everything derives from seeded `random.Random` instances, so the same seed and
scale always give byte-identical trees.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

KIB = 1024
MIB = 1024 * KIB
BLOCK = 16 * MIB  # randbytes() is capped below 256 MiB; 16 MiB blocks keep memory low.

SMALL_DIR = "src"
MEDIUM_DIR = "media"
LARGE_FILE = "large/disk.img"
DUMP_FILE = "db/dump.sql"

CODE_EXTS = (".py", ".c", ".h", ".go", ".js", ".md", ".json", ".yaml")
LOG_EXT = ".log"
KEYWORDS = ("def", "class", "if", "for", "while", "return", "import", "static", "const", "let")
LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "WARN", "ERROR")
# Maps every byte onto 16 symbols: ~4 bits of entropy, so zstd gets about 2x.
SEMI_TABLE = bytes(b"0123456789abcdef"[i % 16] for i in range(256))


@dataclass(frozen=True)
class Plan:
    """How much of each kind of data one scale factor means."""

    small_files: int
    directories: int
    medium_files: int
    large_bytes: int
    dump_bytes: int

    @classmethod
    def for_scale(cls, scale: float) -> Plan:
        """Scale counts of small/medium files and sizes of the two big files together."""
        if scale <= 0:
            raise ValueError("scale must be positive")
        return cls(
            small_files=max(10, round(20_000 * scale)),
            directories=max(3, round(300 * scale)),
            medium_files=max(2, round(40 * scale)),
            large_bytes=max(MIB, round(400 * MIB * scale)),
            dump_bytes=max(MIB, round(500 * MIB * scale)),
        )


class Vocabulary:
    """Seeded pseudo-words and line pools, so text compresses like real text does."""

    def __init__(self, rng: random.Random, size: int = 4000) -> None:
        consonants, vowels = "bcdfghklmnprstvwz", "aeiou"
        syllables = [c + v for c in consonants for v in vowels]
        words = {"".join(rng.choices(syllables, k=rng.randint(1, 4))) for _ in range(size)}
        self.words = sorted(words)
        self.rng = rng

    def word(self) -> str:
        return self.rng.choice(self.words)

    def code_line(self) -> str:
        """One line of plausible source code."""
        rng, w = self.rng, self.word
        indent = "    " * rng.randint(0, 3)
        kind = rng.randrange(5)
        if kind == 0:
            return f"{indent}{rng.choice(KEYWORDS)} {w()}_{w()}({w()}, {w()}):"
        if kind == 1:
            return f"{indent}{w()} = {w()}.{w()}({rng.randint(0, 9999)})"
        if kind == 2:
            return f"{indent}# {w()} {w()} {w()} {w()} {w()}"
        if kind == 3:
            return f"{indent}return {w()}[{rng.randint(0, 99)}] + {w()}"
        return ""

    def log_line(self) -> str:
        """One line of a plausible application log."""
        rng, w = self.rng, self.word
        stamp = (
            f"2024-{rng.randint(1, 12):02}-{rng.randint(1, 28):02}T"
            f"{rng.randint(0, 23):02}:{rng.randint(0, 59):02}:{rng.randint(0, 59):02}."
            f"{rng.randint(0, 999):03}Z"
        )
        return (
            f"{stamp} {rng.choice(LEVELS)} [{w()}] {w()} {w()} {w()} "
            f"id={rng.getrandbits(32):08x} took={rng.randint(1, 5000)}ms"
        )

    def pool(self, make: Callable[[], str], size: int) -> LinePool:
        return LinePool([make() + "\n" for _ in range(size)])


class LinePool:
    """Pre-built lines: drawing from a pool is far faster than formatting each line."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.mean_len = sum(len(line) for line in lines) / len(lines)

    def blob(self, rng: random.Random, size: int) -> bytes:
        """Exactly `size` bytes of whole lines, the last one cut short."""
        data = b""
        while len(data) < size:
            lines = rng.choices(self.lines, k=int(size / self.mean_len * 1.1) + 1)
            data += "".join(lines).encode()
        return data[:size]


def write_random(path: Path, rng: random.Random, size: int, semi: bool = False) -> None:
    """Write `size` random bytes; `semi` folds them onto 16 symbols to be ~2x compressible."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            block = rng.randbytes(min(BLOCK, left))
            f.write(block.translate(SEMI_TABLE) if semi else block)
            left -= len(block)


def make_directories(rng: random.Random, vocab: Vocabulary, root: Path, count: int) -> list[Path]:
    """A random nested tree: every new directory hangs below an existing one."""
    dirs = [root]
    for i in range(count):
        parent = rng.choice(dirs)
        dirs.append(parent / f"{vocab.word()}{i}")
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    return dirs


def generate_small(rng: random.Random, vocab: Vocabulary, root: Path, plan: Plan) -> None:
    """Source files and logs of 1-16 KiB spread over a few hundred directories."""
    dirs = make_directories(rng, vocab, root / SMALL_DIR, plan.directories)
    code_pool = vocab.pool(vocab.code_line, 50_000)
    log_pool = vocab.pool(vocab.log_line, 50_000)
    for i in range(plan.small_files):
        is_log = rng.random() < 0.25
        ext = LOG_EXT if is_log else rng.choice(CODE_EXTS)
        path = rng.choice(dirs) / f"{vocab.word()}_{i}{ext}"
        size = rng.randint(KIB, 16 * KIB)
        path.write_bytes((log_pool if is_log else code_pool).blob(rng, size))


def generate_medium(rng: random.Random, root: Path, plan: Plan) -> None:
    """Binaries of 1-20 MiB: alternately incompressible and about 2x compressible."""
    for i in range(plan.medium_files):
        semi = i % 2 == 1
        size = rng.randint(MIB, 20 * MIB)
        name = f"asset_{i:03}.{'dat' if semi else 'bin'}"
        write_random(root / MEDIUM_DIR / name, rng, size, semi=semi)


class DumpWriter:
    """SQL INSERT statements that zstd compresses roughly 3-5x, like a real dump."""

    TABLES = ("customers", "orders", "invoices", "events")

    def __init__(self, rng: random.Random, vocab: Vocabulary) -> None:
        self.rng = rng
        self.vocab = vocab
        self.next_id = 1

    def _row_tail(self) -> str:
        rng, w = self.rng, self.vocab.word
        return (
            f"'{w().title()} {w().title()}', '{w()}.{w()}@{w()}.example', "
            f"'{w().title()}', {rng.randint(0, 99999)}.{rng.randint(0, 99):02}, "
            f"'2024-{rng.randint(1, 12):02}-{rng.randint(1, 28):02} "
            f"{rng.randint(0, 23):02}:{rng.randint(0, 59):02}:{rng.randint(0, 59):02}', "
            f"'{rng.choice(('new', 'paid', 'shipped', 'refunded', 'cancelled'))}', "
            f"{rng.getrandbits(31)});\n"
        )

    def rows(self, table: str, size: int) -> Iterator[bytes]:
        """Batches of INSERTs for `table`, about `size` bytes in all, with rising ids."""
        tails = [self._row_tail() for _ in range(20_000)]
        written = 0
        while written < size:
            batch = self.rng.choices(tails, k=5000)
            start, self.next_id = self.next_id, self.next_id + len(batch)
            text = "".join(
                f"INSERT INTO {table} VALUES ({n}, {tail}"
                for n, tail in zip(range(start, self.next_id), batch, strict=True)
            )
            data = text.encode()
            written += len(data)
            yield data

    def write(self, path: Path, size: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        per_table = size // len(self.TABLES)
        with open(path, "wb") as f:
            f.write(b"-- safehold benchmark dump\nBEGIN;\n")
            for table in self.TABLES:
                f.write(f"CREATE TABLE {table} (id bigint primary key, payload text);\n".encode())
                for data in self.rows(table, per_table):
                    f.write(data)
            f.write(b"COMMIT;\n")


def generate(root: Path, scale: float, seed: int = 0) -> None:
    """Write the whole dataset below `root`, which must be empty or absent."""
    if root.exists() and any(root.iterdir()):
        raise SystemExit(f"error: {root} is not empty")
    plan = Plan.for_scale(scale)
    rng = random.Random(seed)
    vocab = Vocabulary(rng)
    generate_small(rng, vocab, root, plan)
    generate_medium(rng, root, plan)
    write_random(root / LARGE_FILE, rng, plan.large_bytes)
    DumpWriter(rng, vocab).write(root / DUMP_FILE, plan.dump_bytes)


def files_under(root: Path) -> list[Path]:
    """Regular files below `root`, sorted so that mutations are reproducible."""
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []


def overwrite_spots(path: Path, rng: random.Random, spots: int, max_len: int, text: bool) -> None:
    """Replace a few byte ranges in place: same size, same inode, new content."""
    size = path.stat().st_size
    with open(path, "r+b") as f:
        for _ in range(spots):
            length = min(rng.randint(max_len // 8, max_len), size)
            offset = rng.randrange(0, size - length + 1)
            data = rng.randbytes(length)
            f.seek(offset)
            f.write(data.translate(SEMI_TABLE) if text else data)


def insert_bytes(path: Path, offset: int, data: bytes) -> None:
    """Insert `data` at `offset`, shifting the rest: fixed-size chunking loses here."""
    with open(path, "r+b") as f, tempfile.TemporaryFile() as tail:
        f.seek(offset)
        shutil.copyfileobj(f, tail, BLOCK)
        tail.seek(0)
        f.seek(offset)
        f.write(data)
        shutil.copyfileobj(tail, f, BLOCK)


def append_bytes(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def mutate_small(rng: random.Random, vocab: Vocabulary, root: Path) -> None:
    """Edit ~1.5 % of the small files; add and delete ~0.1 % of them."""
    files = files_under(root / SMALL_DIR)
    if not files:
        return
    pool = vocab.pool(vocab.code_line, 5000)
    for path in rng.sample(files, max(1, len(files) * 15 // 1000)):
        data = path.read_bytes()
        cut = rng.randrange(len(data) + 1)
        path.write_bytes(data[:cut] + pool.blob(rng, rng.randint(20, 400)) + data[cut:])
    churn = max(1, len(files) // 1000)
    for path in rng.sample(files, churn):
        path.unlink()
    dirs = sorted({p.parent for p in files})
    for i in range(churn):
        path = rng.choice(dirs) / f"new_{rng.getrandbits(32):08x}_{i}.py"
        path.write_bytes(pool.blob(rng, rng.randint(KIB, 16 * KIB)))


def mutate_medium(rng: random.Random, root: Path) -> None:
    """Overwrite spots in a quarter of the binaries, grow a tenth by 1-4 %, drop one."""
    files = files_under(root / MEDIUM_DIR)
    if not files:
        return
    for path in rng.sample(files, max(1, len(files) // 4)):
        overwrite_spots(path, rng, spots=rng.randint(1, 4), max_len=64 * KIB, text=False)
    for path in rng.sample(files, max(1, len(files) // 10)):
        append_bytes(path, rng.randbytes(path.stat().st_size // rng.randint(25, 100)))
    if len(files) > 2:
        rng.choice(files).unlink()


def mutate_dump(rng: random.Random, vocab: Vocabulary, path: Path) -> None:
    """Rewrite rows in place, insert a block mid-file and append ~1 % new rows at the end."""
    if not path.is_file():
        return
    size = path.stat().st_size
    overwrite_spots(path, rng, spots=1 + size // (25 * MIB), max_len=8 * KIB, text=True)
    writer = DumpWriter(rng, vocab)
    writer.next_id = 10**9 + rng.getrandbits(20)
    block = next(writer.rows("orders", 1))[: size // 1000]
    insert_bytes(path, rng.randrange(size // 4, size * 3 // 4), block)
    for data in writer.rows("events", size // 100):
        append_bytes(path, data)


def mutate_large(rng: random.Random, path: Path) -> None:
    """A handful of small writes into the disk image, as a running VM would make."""
    if path.is_file():
        spots = 1 + path.stat().st_size // (50 * MIB)
        overwrite_spots(path, rng, spots=spots, max_len=64 * KIB, text=False)


def mutate(root: Path, seed: int) -> None:
    """Change about 1 % of a generated dataset, deterministically for a given seed."""
    if not (root / SMALL_DIR).is_dir():
        raise SystemExit(f"error: {root} does not look like a generated dataset")
    rng = random.Random(seed)
    vocab = Vocabulary(rng)
    mutate_small(rng, vocab, root)
    mutate_medium(rng, root)
    mutate_dump(rng, vocab, root / DUMP_FILE)
    mutate_large(rng, root / LARGE_FILE)


def tree_stats(root: Path) -> tuple[int, int]:
    """(file count, total bytes) of the regular files below `root`."""
    count = total = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            count += 1
            total += st.st_size
    return count, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write a new dataset into DIR")
    gen.add_argument("dir", type=Path)
    gen.add_argument("--scale", type=float, default=1.0, help="1.0 is about 1.5 GiB")
    gen.add_argument("--seed", type=int, default=0)
    mut = sub.add_parser("mutate", help="change about 1 %% of the dataset in DIR")
    mut.add_argument("dir", type=Path)
    mut.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    if args.command == "generate":
        generate(args.dir, args.scale, args.seed)
    else:
        mutate(args.dir, args.seed)
    count, total = tree_stats(args.dir)
    elapsed = time.perf_counter() - started
    print(f"{args.command}: {args.dir}: {count} files, {total / MIB:.1f} MiB, {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
