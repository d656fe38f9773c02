"""Mutation score of the sending path and the input checks (`make mutation`; not part of CI).

Each module is mutated by mutmut in a throw-away copy of the repository, and its mutants run
against that module's own test files only, which keeps a pass within minutes. The score is
(killed + timed out) / mutants tried. ``--every N`` tries one mutant in N (those whose number
ends in 0, or 0 and 5, ...: spread over every function), for the large modules on a busy machine.

    python tools/mutation.py                       # every module, every mutant
    python tools/mutation.py ratelimit keys        # some modules
    python tools/mutation.py --every 5 sender      # a fifth of sender's mutants
    python tools/mutation.py --survivors validate  # also list the mutants that survived
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Module -> the test files that pin it.
MODULES: dict[str, tuple[str, ...]] = {
    "ratelimit": (
        "tests/test_ratelimit.py", "tests/test_server_limits.py", "tests/test_sender_limits.py",
        "tests/test_sender_pinned.py",
    ),
    "keys": (
        "tests/test_keys.py", "tests/test_contacts.py", "tests/test_queue.py",
        "tests/test_deliverylog.py",
    ),
    "deliverylog": (
        "tests/test_deliverylog.py", "tests/test_deliverylog_pinned.py", "tests/test_queue.py",
        "tests/test_delivery.py",
    ),
    "validate": ("tests/test_validate.py", "tests/test_validate_pinned.py"),
    "contacts": (
        "tests/test_contacts.py", "tests/test_sheets.py", "tests/test_contacts_pinned.py",
    ),
    "sender": (
        "tests/test_sender.py",
        "tests/test_sender_limits.py",
        "tests/test_sender_marks.py",
        "tests/test_sender_replies.py",
        "tests/test_sender_pinned.py",
        "tests/test_sender_domains.py",
    ),
    "transport": ("tests/test_transport.py", "tests/test_sender.py", "tests/test_sender_pinned.py"),
}
KILLED = {"killed", "timeout"}
# mutmut stops a mutant after (the tests' recorded time + 1 s) x this in wall time, twice that in
# CPU time. Its default, 15, let a mutant that waits forever hold one of the two workers of a
# 2-core machine for many minutes; the recorded time was measured on the same busy machine.
TIMEOUT_MULTIPLIER = 6
# Speed and real-clock tests measure the machine, and mutmut's trampolines slow every call; a
# test that swaps email-validator for a recorder does not reach mutmut's copy of the module.
DESELECT = "not is_fast and not real_clock and not deliverability_checking_goes_to_email"
_RESULT = re.compile(r"^\s+(\S+__mutmut_\d+): (.+)$")


def repository_copy(into: Path) -> None:
    """The repository's files (tracked and new, not ignored) as they are in the work tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)


def mutmut_settings(module: str, tests: tuple[str, ...]) -> str:
    """The [tool.mutmut] table that mutates ``module`` and runs only ``tests``."""
    listed = ", ".join(f'"{test}"' for test in tests if (ROOT / test).exists())
    return (
        "\n[tool.mutmut]\n"
        'source_paths = ["mailaction"]\n'
        f'only_mutate = ["mailaction/{module}.py"]\n'
        f"pytest_add_cli_args_test_selection = [{listed}]\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-p", "tools.mutation_caches", "-q",'
        f' "-k", "{DESELECT}"]\n'
        'also_copy = ["tests", "tools", "templates", "contacts", "config.example.toml"]\n'
        f"timeout_multiplier = {TIMEOUT_MULTIPLIER}\n"
    )


def sample_pattern(module: str, every: int) -> list[str]:
    """mutmut name patterns for one mutant in ``every`` (by the last digit of its number)."""
    if every <= 1:
        return []
    digits = "".join(str(digit) for digit in range(0, 10, every))
    return [f"mailaction.{module}.*__mutmut_*[{digits}]"]


def mutate(module: str, every: int, show: bool) -> tuple[dict[str, str], dict[str, str]]:
    """Run mutmut on one module: its mutants' results by name, and the survivors' diffs."""
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    with tempfile.TemporaryDirectory(prefix=f"mutation-{module}-") as directory:
        work = Path(directory)
        repository_copy(work)
        with (work / "pyproject.toml").open("a") as pyproject:
            pyproject.write(mutmut_settings(module, MODULES[module]))
        run = subprocess.run(
            [mutmut, "run", *sample_pattern(module, every)],
            cwd=work, capture_output=True, text=True, check=False,
        )  # fmt: skip
        if run.returncode != 0:  # e.g. a test failed before any mutant: say why
            print(f"{module}: mutmut stopped (exit {run.returncode}):", file=sys.stderr)
            print(*(run.stdout + run.stderr).splitlines()[-15:], sep="\n", file=sys.stderr)
        listed = subprocess.run(
            [mutmut, "results", "--all", "true"],
            cwd=work, capture_output=True, text=True, check=False,
        ).stdout  # fmt: skip
        results = {}
        for line in listed.splitlines():
            found = _RESULT.match(line)
            if found and found[1].startswith(f"mailaction.{module}.") and found[2] != "not checked":
                results[found[1]] = found[2]
        diffs = {
            name: subprocess.run(
                [mutmut, "show", name], cwd=work, capture_output=True, text=True, check=False
            ).stdout
            for name, status in results.items()
            if show and status not in KILLED
        }
    return results, diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(MODULES))
    parser.add_argument("--every", type=int, default=1, choices=(1, 2, 5, 10))
    parser.add_argument("--survivors", action="store_true", help="show the surviving mutants")
    options = parser.parse_args()
    unknown = set(options.modules) - set(MODULES)
    if unknown:
        parser.error(f"unknown module {', '.join(sorted(unknown))}; known: {', '.join(MODULES)}")
    for module in options.modules or list(MODULES):
        started = time.monotonic()
        results, diffs = mutate(module, options.every, options.survivors)
        counts = Counter(results.values())
        tried = len(results)
        killed = sum(counts[status] for status in KILLED)
        score = f"{100 * killed / tried:5.1f} %" if tried else "  n/a"
        details = ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))
        sample = f" (one in {options.every})" if options.every > 1 else ""
        print(
            f"{module:12} {score}  {killed}/{tried}{sample}  [{details}]"
            f"  {time.monotonic() - started:.0f} s",
            flush=True,
        )
        for name, diff in sorted(diffs.items()):
            print(f"--- {name}: {results[name]}\n{diff}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
