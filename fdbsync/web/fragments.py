"""Fragments: the HTML each label shows, and a renderer that renders each distinct set of
inputs once.

By default a label's fragment is the block of the same name in the route's template. A route
may map a label to another block, another template, a function of the render context, several
of these, or nothing. Every fragment's HTML must hold the element `live.target(name)` marks,
so htmx can swap it by id.

Thousands of pages often show the same thing: after a change, their sessions hold the very
same result objects. The renderer keys each render by the values the fragment reads (by
value for plain data, by identity for records and other objects, whose references the cache
keeps so an identity is never reused while its entry lives) and renders each key once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import jinja2
from jinja2 import meta, nodes

from .errors import FragmentError
from .wire import check_name, element_id

__all__ = ["Fragment", "FragmentRenderer", "FragmentSpec", "digest", "fragments_by_label"]

#: A fragment function: the render context (assigns, `live`, `request`) in, HTML out.
FragmentFunction = Callable[[Mapping[str, Any]], str]
_UpToDate: TypeAlias = Callable[[], bool] | None


@dataclass(frozen=True)
class Fragment:
    """Where one fragment's HTML comes from.

    `block` of `template` (the route's template when None), all of `template` when `block`
    is None, or `render(context)`. `name` is the element's name (`live.target(name)`); it
    defaults to the block's name, else the label's.
    """

    block: str | None = None
    template: str | None = None
    render: FragmentFunction | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.render is not None and (self.block is not None or self.template is not None):
            raise ValueError("a Fragment renders a block, a template or a function, not several")
        if self.name is not None:
            check_name(self.name)

    def named(self, label: str) -> Fragment:
        """This fragment with its element name settled."""
        if self.name is not None:
            return self
        if self.block is not None:
            return Fragment(self.block, self.template, None, check_name(self.block))
        return Fragment(self.block, self.template, self.render, check_name(label))

    def describe(self, route_template: str) -> str:
        if self.render is not None:
            return f"function {getattr(self.render, '__qualname__', self.render)!r}"
        template = self.template or route_template
        return f"block {self.block!r} of {template!r}" if self.block else f"template {template!r}"


#: What a route may map a label to: a block name, a Fragment, a function, None (no
#: fragment), or a sequence of these.
_OneFragment: TypeAlias = "str | Fragment | FragmentFunction"
FragmentSpec: TypeAlias = "_OneFragment | Sequence[_OneFragment] | None"


def fragments_by_label(
    mapping: Mapping[str, FragmentSpec] | None,
) -> dict[str, tuple[Fragment, ...]]:
    """A route's `fragments=` mapping, checked and normalised."""
    result: dict[str, tuple[Fragment, ...]] = {}
    for label, spec in (mapping or {}).items():
        items: Iterable[Any]
        if spec is None:
            items = ()
        elif isinstance(spec, str | Fragment) or callable(spec):
            items = (spec,)
        else:
            items = spec
        fragments = []
        for item in items:
            if isinstance(item, str):
                fragments.append(Fragment(block=item).named(label))
            elif isinstance(item, Fragment):
                fragments.append(item.named(label))
            elif callable(item):
                fragments.append(Fragment(render=item).named(label))
            else:
                raise TypeError(
                    f"label {label!r}: a fragment is a block name, a Fragment or a function, "
                    f"not {item!r}"
                )
        result[label] = tuple(fragments)
    return result


def digest(html: str) -> str:
    """A short digest of a fragment's HTML: what a page shows, without keeping the HTML."""
    return hashlib.blake2b(html.encode(), digest_size=16).hexdigest()


@dataclass
class _Entry:
    html: str
    held: list[Any]  # the objects whose identities are part of the key


class FragmentRenderer:
    """Renders fragments with a Jinja environment, sharing renders of equal inputs."""

    def __init__(self, env: jinja2.Environment, cache_size: int = 1024) -> None:
        self.env = env
        self.cache_size = cache_size
        self.renders = 0  # fragments actually rendered
        self.shared = 0  # fragments served from an equal earlier render
        self._cache: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._reads: dict[tuple[str, str | None], tuple[frozenset[str] | None, _UpToDate]] = {}

    def render(
        self,
        fragment: Fragment,
        label: str,
        route_template: str,
        context: Mapping[str, Any],
    ) -> str:
        """The HTML of `fragment` for `context`; FragmentError if it lacks its element."""
        held: list[Any] = []
        key = self._key(fragment, route_template, context, held)
        entry = self._cache.get(key)
        if entry is not None:
            self._cache.move_to_end(key)
            self.shared += 1
            return entry.html
        html = self._render(fragment, label, route_template, context)
        self.renders += 1
        if f'id="{element_id(fragment.name or label)}"' not in html:
            raise FragmentError(
                f"label {label!r}: the {fragment.describe(route_template)} has no element "
                f"marked {{{{ live.target({fragment.name or label!r}) }}}}, so htmx cannot "
                "swap it"
            )
        self._cache[key] = _Entry(html, held)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return html

    def clear(self) -> None:
        self._cache.clear()

    # -- inside ------------------------------------------------------------------------------

    def _render(
        self, fragment: Fragment, label: str, route_template: str, context: Mapping[str, Any]
    ) -> str:
        if fragment.render is not None:
            return str(fragment.render(context))
        template = self.env.get_template(fragment.template or route_template)
        if fragment.block is None:
            return template.render(context)
        block = template.blocks.get(fragment.block)
        if block is None:
            raise FragmentError(
                f"label {label!r}: template {template.name!r} has no block {fragment.block!r}; "
                f"add {{% block {fragment.block} %}} or map the label to another fragment "
                "with live_sync(fragments=...)"
            )
        return self.env.concat(block(template.new_context(dict(context))))

    def _key(
        self,
        fragment: Fragment,
        route_template: str,
        context: Mapping[str, Any],
        held: list[Any],
    ) -> Hashable:
        names = self._names(fragment, route_template)
        if names is not None and any(not self._plain_name(n, context) for n in names):
            names = None
        chosen = sorted(context) if names is None else sorted(n for n in names if n in context)
        source = fragment.render if fragment.render is not None else fragment.template
        parts = tuple((name, _key_of(context[name], held)) for name in chosen)
        return (id(source), source, fragment.block, route_template, parts)

    def _plain_name(self, name: str, context: Mapping[str, Any]) -> bool:
        """Whether what `name` renders depends on nothing but its own value: true for names
        in the context and for plain globals. A global such as url_for reads the whole
        context; an unknown name may be a macro of the template, which may read anything."""
        if name in context:
            return True
        if name not in self.env.globals:
            return False
        return getattr(self.env.globals[name], "jinja_pass_arg", None) is None

    def _names(self, fragment: Fragment, route_template: str) -> frozenset[str] | None:
        """The context names a template fragment reads; None when that cannot be known
        (a function, an include, an import, or a call to super)."""
        if fragment.render is not None:
            return None
        template_name = fragment.template or route_template
        cache_key = (template_name, fragment.block)
        found = self._reads.get(cache_key)
        if found is None or (self.env.auto_reload and found[1] is not None and not found[1]()):
            found = self._reads[cache_key] = self._analyse(template_name, fragment.block)
        return found[0]

    def _analyse(
        self, template_name: str, block_name: str | None
    ) -> tuple[frozenset[str] | None, _UpToDate]:
        """What `_names` returns, and the loader's check that the source is unchanged (with
        auto_reload, an edited template is analysed again)."""
        loader = self.env.loader
        if loader is None:
            return None, None
        source, _, uptodate = loader.get_source(self.env, template_name)
        tree = self.env.parse(source)
        body: nodes.Template = tree
        if block_name is not None:
            found = [b for b in tree.find_all(nodes.Block) if b.name == block_name]
            if not found:
                return None, uptodate
            body = nodes.Template(found[0].body, lineno=1)
            body.set_environment(self.env)
        opaque = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
        if any(True for _ in body.find_all(opaque)):
            return None, uptodate
        calls = (call.node for call in body.find_all(nodes.Call))
        if any(isinstance(node, nodes.Name) and node.name == "super" for node in calls):
            return None, uptodate
        return frozenset(meta.find_undeclared_variables(body)), uptodate


_PLAIN = (str, int, float, bool, bytes, type(None))


def _key_of(value: Any, held: list[Any]) -> Hashable:
    """A key equal for two values only if they render alike: plain data by value, lists,
    tuples and dicts by their items, anything else by identity (kept alive in `held`)."""
    if isinstance(value, _PLAIN):
        return (type(value), value)
    if type(value) in (list, tuple):
        return (type(value), tuple(_key_of(item, held) for item in value))
    if type(value) is dict:
        return (dict, tuple((_key_of(k, held), _key_of(v, held)) for k, v in value.items()))
    held.append(value)
    return ("id", id(value))
