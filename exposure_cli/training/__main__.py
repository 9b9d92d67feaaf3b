"""``python -m exposure_cli.training [OPTIONS]`` — the same as ``exposure train [OPTIONS]``.

Handy for background runs (``nohup python -m exposure_cli.training --data corpus/ --minutes 60 ... &``)
without loading the other CLI commands.
"""

import typer

from ..commands.train import train_command

app = typer.Typer(add_completion=False)
app.command()(train_command)

if __name__ == "__main__":
    app()
