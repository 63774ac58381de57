"""``nowcast dashboard``: regenerate (and optionally serve) the operator dashboard."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Add the ``dashboard`` subcommand to *app*."""

    @app.command("dashboard")
    def dashboard(
        site_dir: Annotated[
            Path,
            typer.Argument(
                metavar="SITE_DIR", help="Site directory written by the forecast publisher."
            ),
        ],
        serve: Annotated[
            bool, typer.Option("--serve", help="Serve the site over http on 127.0.0.1.")
        ] = False,
        port: Annotated[
            int, typer.Option("--port", min=0, max=65535, help="TCP port for --serve.")
        ] = 8765,
    ) -> None:
        """Regenerate the static dashboard of SITE_DIR from its JSON files.

        A publish killed half-way is finished first (rolled back, or forward into the
        forecast archive), corrupt logs are set aside and dead publishers' temporary
        files removed. The page also works when index.html is opened from disk (data come
        in data.js); --serve runs python's http.server bound to 127.0.0.1 until Ctrl-C.
        """
        from products.dashboard import make_server
        from products.site import refresh_site

        if not site_dir.is_dir():
            raise typer.BadParameter(
                f"{site_dir} is not a directory; expected a site written by publish_run",
                param_hint="SITE_DIR",
            )
        index = refresh_site(site_dir)
        typer.echo(f"dashboard: {index}")
        if not serve:
            return
        server = make_server(site_dir, port=port)
        host, bound = server.server_address[:2]
        typer.echo(f"serving {site_dir} at http://{host}:{bound}/ (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            typer.echo("stopped")
        finally:
            server.server_close()
