"""The commands' standard output when its reader goes away (``gestor check | head -1``).

Python ignores SIGPIPE, so a write to a pipe whose reader has closed raises BrokenPipeError (at the
write, or at the flush when the interpreter exits: "Exception ignored ... BrokenPipeError" and exit
code 120). A command whose reader left ends quietly instead, as the coreutils do: the recipe of
Python's own documentation (library/signal, "Note on SIGPIPE"): point the descriptor at /dev/null
so that nothing more fails, and exit.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, TypeVar

T = TypeVar("T")

EXIT_BROKEN_PIPE = 141  # what a shell reports for a command ended by SIGPIPE (128 + 13)


def quiet_stdout() -> None:
    """Point standard output (file descriptor 1) at /dev/null: its reader is gone; what is still
    written, and the flush at exit, go nowhere without an error."""
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, sys.stdout.fileno())
    finally:
        os.close(null)


def flush_stdout() -> bool:
    """Flush standard output; False (and :func:`quiet_stdout`) when its reader is gone."""
    try:
        sys.stdout.flush()
        return True
    except BrokenPipeError:
        quiet_stdout()
        return False


def print_out(*args: object, **kwargs: object) -> None:
    """``print`` to standard output (or ``file=``) that never raises for a reader gone away: a
    program that must finish its work whoever reads (stop-loads) prints with this."""
    try:
        print(*args, **kwargs)  # type: ignore[call-overload]
    except BrokenPipeError:
        quiet_stdout()


def quiet_on_broken_pipe(command: Callable[[], T]) -> T | int:
    """Run ``command`` (a command's body, returning its exit code, or its parsed arguments) and
    flush its output. Its reader gone: no traceback; what it returned when it had finished (only
    the flush failed), else :data:`EXIT_BROKEN_PIPE`. Standard error is pointed at /dev/null too when the break came from
    it (``2>&1 | head``)."""
    try:
        code = command()
    except BrokenPipeError:
        quiet_stdout()
        try:
            sys.stderr.flush()
        except BrokenPipeError:
            os.dup2(sys.stdout.fileno(), sys.stderr.fileno())
        return EXIT_BROKEN_PIPE
    except SystemExit:  # argparse's --help and errors: what they printed is flushed here
        flush_stdout()
        raise
    flush_stdout()
    return code
