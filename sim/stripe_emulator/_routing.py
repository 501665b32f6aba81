"""Route declarations shared by the resource modules, and the dispatcher that finds them in O(path).

Each resource module lists its endpoints as :class:`Route` values: method, path template (``{id}``
marks an object id), handler, and the ``stripe.params`` class whose keys are the parameters Stripe
accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ._errors import invalid_request
from ._params import Params, known_parameters
from ._state import State
from ._store import StripeObject

Handler = Callable[..., StripeObject]


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: ``handler(state, params, *path_ids)`` answers ``method path``."""

    method: str
    path: str
    handler: Handler
    params_class: str

    def allowed(self) -> frozenset[str]:
        """The parameter names this endpoint accepts."""
        return known_parameters(self.params_class)


class Router:
    """Finds the route of a request path: a segment trie where ``{id}`` matches any segment."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self._root: dict[str, dict] = {}
        for route in routes:
            node = self._root
            for segment in route.path.strip("/").split("/"):
                node = node.setdefault("*" if segment == "{id}" else segment, {})
            node[route.method] = route  # type: ignore[assignment]

    def resolve(self, method: str, path: str) -> tuple[Route, list[str]]:
        """The route for ``method path`` and the ids found in the path, or a 404 like Stripe's."""
        node = self._root
        ids: list[str] = []
        for segment in path.strip("/").split("/"):
            child = node.get(segment)
            if child is None:
                child = node.get("*")
                if child is None:
                    break
                ids.append(segment)
            node = child
        else:
            route = node.get(method)
            if isinstance(route, Route):
                return route, ids
        raise invalid_request(
            f"Unrecognized request URL ({method.upper()}: {path}). "
            "Please see https://stripe.com/docs or we can help at https://support.stripe.com/.",
            status=404,
        )


def dispatch(state: State, route: Route, params: Params, ids: list[str]) -> StripeObject:
    """Validate parameter names against the route's, then run its handler."""
    params.check_known(route.allowed())
    return route.handler(state, params, *ids)
