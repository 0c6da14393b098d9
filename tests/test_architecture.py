"""The code is a stack of areas (ARCHITECTURE.md): each area imports only the areas below it.

Every import counts, at module level or inside a function: a local import that dodges a cycle
still ties the two areas together. The areas below are listed bottom first.
"""

from __future__ import annotations

import ast
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

import npsd
from npsd.app import create_app
from npsd.auth import tokens
from npsd.auth.deps import RoleCheck
from npsd.kit.config import Settings
from npsd.kit.http import request_session

SRC = Path(npsd.__file__).parent
# bottom first; an area may import itself and any area listed before it
STACK = [
    "kit",
    "migrations",
    "auth",
    "analytics",
    "records",
    "contacts",
    "followup",
    "exports",
    "surveys",
    "collect",
    "webhooks",
    "insights",
    "alerts",
    "digests",
    "privacy",
    "imports",
    "web",
    "app",
]
TOP_LEVEL_APP_MODULES = {"app", "cli", "demo", "__main__"}


def area_of(module: str) -> str | None:
    """The area of a dotted ``npsd.`` module name (None outside npsd and for the package itself)."""
    parts = module.split(".")
    if parts[0] != "npsd" or len(parts) == 1:
        return None
    head = parts[1]
    return "app" if head in TOP_LEVEL_APP_MODULES else head


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """Every npsd module ``path`` imports, anywhere in the file, with its line."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> Iterator[tuple[int, str]]:
    """Every module ``source`` imports, anywhere in it, with its line (relative to ``package``)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # ``from npsd import events`` imports the module npsd.events
                yield node.lineno, f"{target}.{alias.name}"


def sources() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "versions" not in p.parts)


def test_every_area_is_in_the_stack() -> None:
    areas = {area_of(module_name(p)) for p in sources()} - {None}
    assert areas <= set(STACK), (
        f"areas missing from the stack (and from ARCHITECTURE.md): {areas - set(STACK)}"
    )


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_down_the_stack(path: Path) -> None:
    own = area_of(module_name(path))
    if own is None:
        return
    upward = []
    for line, target in imports_of(path):
        other = area_of(target)
        if other is None or other == own or other not in STACK:
            continue
        if STACK.index(other) > STACK.index(own):
            upward.append(f"line {line}: {own} imports {target} ({other} is above {own})")
    assert not upward, "\n".join(upward)


def test_no_cycle_between_modules() -> None:
    """Inside an area too, modules form no circle (the order they load in is a fact, not luck)."""
    names = {module_name(p): p for p in sources()}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        deps = set()
        for _, target in imports_of(path):
            while target and target not in names:
                target = target.rpartition(".")[0]
            if target and target != name and target != "npsd":
                deps.add(target)
        graph[name] = deps
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_the_check_sees_local_and_relative_imports() -> None:
    """The walker finds imports inside functions and relative ones (or the checks above prove nothing)."""
    probe = "def f():\n    from npsd.app import create_app\n    from ..records import service\n"
    found = {t for _, t in imports_in(probe, "npsd.kit")}
    assert "npsd.app" in found
    assert "npsd.records.service" in found


# ------------------------------------------------------------------------------ route invariants


def _resolution_order(dependant: Dependant) -> Iterator[Any]:
    """The dependency callables of a route in the order FastAPI runs them (depth first)."""
    for sub in dependant.dependencies:
        yield from _resolution_order(sub)
        yield sub.call


def _api_routes(routes: list[Any]) -> Iterator[tuple[str, APIRoute]]:
    """Every API route with its path (FastAPI keeps an included router's routes inside it)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route.path, route
        elif hasattr(route, "original_router"):  # an included router
            yield from _api_routes(route.original_router.routes)


def _write_routes() -> list[tuple[str, APIRoute]]:
    # the engine connects lazily: building the app touches no file
    url = f"sqlite:///{Path(tempfile.gettempdir()) / 'npsd-route-walk.db'}"
    app = create_app(Settings(database_url=url, secret_key="k" * 40))
    return [(path, r) for path, r in _api_routes(app.routes) if r.methods & {"POST", "PUT", "PATCH"}]


@pytest.mark.parametrize(
    "path, route", _write_routes(), ids=[f"{sorted(r.methods)[0]} {p}" for p, r in _write_routes()]
)
def test_a_write_route_checks_its_strictest_role_first_and_before_its_session(
    path: str, route: APIRoute
) -> None:
    """The first role check claims the request's Idempotency-Key (auth/deps.py): it must be the
    route's strictest, or a caller a later check refuses could keep or replay a reply, and it must
    come before the request's session takes the SQLite write turn, or the claim would wait on it."""
    order = list(_resolution_order(route.dependant))
    checks = [i for i, call in enumerate(order) if isinstance(call, RoleCheck)]
    if not checks:  # a public write (login, respondent pages): no principal, no key kept
        return
    first = order[checks[0]]
    strictest = max((order[i] for i in checks), key=lambda c: tokens.ROLE_RANK[c.role])
    assert tokens.ROLE_RANK[first.role] == tokens.ROLE_RANK[strictest.role], (
        f"first role check is {first.role}, but the route also needs {strictest.role}"
    )
    sessions = [i for i, call in enumerate(order) if call is request_session]
    assert not sessions or checks[0] < sessions[0], "the request's session is opened before the role check"


def test_the_route_walk_sees_role_checks_and_sessions() -> None:
    """The walk above finds what it looks for (else it would pass on nothing)."""
    routes = _write_routes()
    assert len(routes) > 20
    by_path = {(p, m): r for p, r in routes for m in r.methods}
    order = list(_resolution_order(by_path[("/v1/nps-surveys/{id}/invitations", "POST")].dependant))
    assert any(isinstance(c, RoleCheck) and c.role == "editor" for c in order)
    assert request_session in order
