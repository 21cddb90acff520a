"""One name for each thing the outputs show: an app as the matrix titles it, a stack (a cell without its app) and a
cell, each built from the matrix, so that every table, chart and sentence names a stack the same way."""

from __future__ import annotations

from servers.matrix import Cell, Matrix


def app_title(app: str, matrix: Matrix) -> str:
    return matrix.apps[app].title if app in matrix.apps else app


def stack_label(cell: Cell, matrix: Matrix) -> str:
    """The stack's one name, from the matrix: server · loop, then the HTTP implementation where the server offers a
    choice of it ("uvicorn · uvloop · httptools", "granian · uvloop": granian parses HTTP/1.1 in Rust, with no choice)
    and always for HTTP/2 ("granian · uvloop · h2c"), then the workers when more than one."""
    server = matrix.servers.get(cell.server)
    h1 = [h for h in server.http if h not in matrix.http2] if server else []
    shown = server is None or len(h1) > 1 or cell.http in matrix.http2  # h2c is always named
    parts = [cell.server, cell.loop] + ([cell.http] if shown else [])
    workers = f" ×{cell.workers}" if cell.workers > 1 else ""
    return " · ".join(parts) + workers + (f" @{cell.variant}" if cell.variant else "")


def cell_label(cell: Cell, matrix: Matrix) -> str:
    """A cell's one name: 'FastAPI on uvicorn · uvloop · httptools'."""
    return f"{app_title(cell.app, matrix)} on {stack_label(cell, matrix)}"
