"""The ``remamber-deploy`` command line: one entry point, one module per subcommand.

Subcommand modules are imported only when chosen, so ``remamber-deploy --help`` stays fast and a
missing optional dependency of one subcommand does not break the others. Each module provides
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import signal
import sys

from .errors import RemamberError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "predict": ("remamber.predict", "segment the object a sentence refers to in an image"),
    "export": ("remamber.export.cli_export", "export ReMamber to ONNX: one remamber::SS2DScan node per SS2D call (--scan-op selective: SelectiveScan)"),
    "build-engine": ("remamber.export.cli_engine", "build a TensorRT / TensorRT-RTX engine from an ONNX file"),
    "compare": ("remamber.export.cli_compare", "compare ONNX Runtime (custom ops) with PyTorch on the same inputs"),
    "bench": ("remamber.bench.cli", "parity and latency at 480 and 1024, reports and regression gate"),
    "scan-bench": ("remamber.bench.scan_bench", "throughput of the selective-scan backends on the model's shapes"),
    "native": ("remamber.native", "locate the compiled plugin libraries and print how to build them"),
    "serve": ("remamber.serve.server", "serve ReMamber on Triton Inference Server (PyTriton), 127.0.0.1 by default"),
    "triton-repo": ("remamber.serve.repo", "write a Triton model repository (ensemble: pre, ONNX Runtime/TensorRT, post)"),
    "serve-bench": ("remamber.serve.bench", "load test of a Triton server: throughput and latency vs concurrency"),
    "prepare-inputs": ("remamber.prepare_inputs", "write an image and sentence as the network's input .npy files (C++ runner)"),
    "eval": ("remamber.bench.eval_cli", "oIoU/mIoU per runtime and precision on a RefCOCO-format dataset"),
    "make-dataset": ("remamber.data.cli", "write a synthetic referring-segmentation dataset in the RefCOCO layout"),
    "train": ("remamber.train.cli", "train ReMamber (tiny preset) with a resumable checkpoint, logged metrics and an fp16 export"),
}


def _top_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="remamber-deploy",
        description="ReMamber to ONNX Runtime and TensorRT, with parity and latency checks.",
    )
    parser.add_argument("--version", action="version", version=f"remamber-deploy {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse with its errors on one line (no usage block), still exit status 2."""

    def error(self, message):
        from .validate.numbers import take_type_error

        bad_value = take_type_error(message)  # an option value our validation refused: report it as such
        if bad_value is not None:
            raise bad_value
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every ``finally`` / context manager cleans up the same way
    (temporary folders of export and bench, atomic writes) before the process exits with 143."""


# errno values that mean "the path the user gave cannot be used", not a bug in this program
USER_OS_ERRORS = {errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.ENOENT, errno.ENOTDIR,
                  errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EDQUOT, errno.EXDEV, errno.ELOOP}


def _terminate_like_interrupt():
    """Route SIGTERM through KeyboardInterrupt's clean-up path; returns the previous handler."""
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
        raise Terminated()

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        return signal.getsignal(signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    if debug:
        argv.remove("--debug")
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        _top_parser().parse_args(argv or ["--help"])
        return 2
    module_name, help_text = COMMANDS[command]
    idx = argv.index(command)
    parser = OneLineErrorParser(prog=f"remamber-deploy {command}", description=help_text)
    previous_sigterm = _terminate_like_interrupt()
    try:
        module = importlib.import_module(module_name)
        module.add_arguments(parser)
        args = parser.parse_args(argv[idx + 1 :])
        return int(module.run(args) or 0)
    except RemamberError as exc:
        if debug:
            raise
        print(f"remamber-deploy {command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # The file system refusing a path the user chose (full disk, read-only, permissions) is a user
        # error, reported in one line; any other OSError is a bug and keeps its traceback.
        if debug or exc.errno not in USER_OS_ERRORS:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print(f"remamber-deploy {command}: error: cannot use{where}: {exc.strerror}; check the path, its "
              "permissions and the free space", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (see _terminate_like_interrupt)
        print("terminated" if isinstance(exc, Terminated) else "interrupted", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        try:
            signal.signal(signal.SIGTERM, previous_sigterm if previous_sigterm is not None else signal.SIG_DFL)
        except ValueError:  # not the main thread
            pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
