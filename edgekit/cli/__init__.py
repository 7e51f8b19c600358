"""The ``edgekit`` command: a thin shell over the library, one module per command group.

Each module in ``COMMANDS`` exposes ``register(app)``; commands catch :class:`EdgekitError` and
print one line (see ``_common.handle_errors``).
"""

from __future__ import annotations

import importlib

import typer

COMMANDS = ("convert", "compile", "inspect", "lint", "bench", "run", "demo", "zoo", "doctor", "webapp")

app = typer.Typer(
    name="edgekit",
    help="Put efficient vision models on devices: convert, rewrite for NPUs, verify, lint, run.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from edgekit import __version__

        typer.echo(f"edgekit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """edgekit: convert, verify, lint and run efficient vision models on devices."""


for _name in COMMANDS:
    importlib.import_module(f"edgekit.cli.{_name}").register(app)


# Metavars for option values, by option name (the rest: the option's name in capitals).
_METAVARS = {"out": "DIR", "output": "FILE", "input": "FILE", "record": "OUT.mp4", "snapshot": "OUT.png",
             "weights": "FILE", "target": "NAME", "threads": "N", "runs": "N", "warmup": "N", "frames": "N",
             "bench_runs": "N", "seed": "N", "to": "FORMATS", "passes": "IDS", "skip_pass": "ID",
             "input_shape": "SHAPE", "precision": "fp32|fp16|int8", "input_layout": "NCHW|NHWC",
             "system_config": "NAME", "memory_mode": "NAME", "compile_for": "ACCELERATOR", "rknn_python": "PATH",
             "backend": "NAME", "accelerator": "NAME", "task": "TASK", "mean": "M,M,M", "std": "S,S,S"}


def _tidy(command) -> None:
    """Help text without type annotations: flags show no metavar, options a word for their value
    (``--out DIR``), arguments their name."""
    for param in getattr(command, "params", []):
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
        elif param.metavar is None:
            param.metavar = _METAVARS.get(param.name, param.name.upper())
        if param.param_type_name == "argument":  # the name says it all: no type column
            param.display_type_rich = lambda ctx: None
    help_option = command.get_help_option

    def get_help_option(ctx, _original=help_option):
        option = _original(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option
    for sub in getattr(command, "commands", {}).values():
        _tidy(sub)


def command():
    """The click command behind ``edgekit`` (with tidy help)."""
    cmd = typer.main.get_command(app)
    _tidy(cmd)
    return cmd


def _kinds(exc: BaseException) -> set[str]:
    # typer vendors click (typer._click) in recent versions and uses click itself in older ones:
    # recognise click's exceptions by class name so both work.
    return {c.__name__ for c in type(exc).__mro__}


def _on_sigterm(signum, frame) -> None:
    from edgekit.errors import Terminated

    raise Terminated()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. Usage errors (a missing argument, an out-of-range option) are
    reported like every other error: one line on stderr, exit code 2. SIGTERM cleans up like
    Ctrl-C (temporary bundles and recordings are removed) and exits 143."""
    import signal
    import sys

    from edgekit.errors import Terminated

    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (an embedding host): leave signals to it
        pass
    try:
        code = command().main(args=argv, prog_name="edgekit", standalone_mode=False)
    except SystemExit as e:
        code = e.code
    except Terminated:
        print("edgekit: error: terminated", file=sys.stderr, flush=True)
        code = 143
    except KeyboardInterrupt:
        print("edgekit: error: interrupted", file=sys.stderr, flush=True)
        code = 130
    except Exception as e:
        kinds = _kinds(e)
        if "NoArgsIsHelpError" in kinds:  # bare `edgekit` or a bare group: show the help
            print(e.format_message())
            code = 0
        elif "Exit" in kinds:
            code = e.exit_code
        elif "Abort" in kinds:
            print("edgekit: error: interrupted", file=sys.stderr, flush=True)
            code = 130
        elif "ClickException" in kinds:
            message = " ".join(e.format_message().split())
            ctx = getattr(e, "ctx", None)
            hint = f" — see `{ctx.command_path} --help`" if ctx is not None and "UsageError" in kinds else ""
            print(f"edgekit: error: {message}{hint}", file=sys.stderr, flush=True)
            code = e.exit_code
        else:
            raise
    sys.exit(code if isinstance(code, int) else 0)
