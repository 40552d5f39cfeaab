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
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import jinja2
from jinja2 import meta, nodes
from jinja2.defaults import DEFAULT_NAMESPACE
from jinja2.filters import FILTERS as DEFAULT_FILTERS
from jinja2.tests import TESTS as DEFAULT_TESTS

from .context import LiveContext
from .errors import FragmentError
from .wire import check_name, element_id, partial

__all__ = [
    "Fragment",
    "FragmentRenderer",
    "FragmentSpec",
    "Rendered",
    "digest",
    "fragments_by_label",
]

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
class Rendered:
    """One render, with what every stream that sends it needs: its digest and its partial
    (computed once, however many streams send it)."""

    html: str
    name: str
    held: list[Any]  # the objects whose identities are part of the key
    _digest: str | None = None
    _partial: str | None = None

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest = digest(self.html)
        return self._digest

    @property
    def partial(self) -> str:
        if self._partial is None:
            self._partial = partial(self.name, self.html)
        return self._partial


class FragmentRenderer:
    """Renders fragments with a Jinja environment, sharing renders of equal inputs."""

    def __init__(self, env: jinja2.Environment, cache_size: int = 1024) -> None:
        self.env = env
        self.cache_size = cache_size
        self.renders = 0  # fragments actually rendered
        self.shared = 0  # fragments served from an equal earlier render
        self._cache: OrderedDict[Hashable, Rendered] = OrderedDict()
        self._reads: dict[tuple[str, str | None], tuple[_Reads | None, _UpToDate]] = {}

    def render(
        self,
        fragment: Fragment,
        label: str,
        route_template: str,
        context: Mapping[str, Any],
    ) -> str:
        """The HTML of `fragment` for `context`; FragmentError if it lacks its element."""
        return self.rendered(fragment, label, route_template, context).html

    def rendered(
        self,
        fragment: Fragment,
        label: str,
        route_template: str,
        context: Mapping[str, Any],
    ) -> Rendered:
        """`render`, with the render's digest and partial."""
        held: list[Any] = []
        key = self._key(fragment, route_template, context, held)
        entry = self._cache.get(key)
        if entry is not None:
            self._cache.move_to_end(key)
            self.shared += 1
            return entry
        name = fragment.name or label
        html = self._render(fragment, label, route_template, context)
        self.renders += 1
        if f'id="{element_id(name)}"' not in html:
            raise FragmentError(
                f"label {label!r}: the {fragment.describe(route_template)} has no element "
                f"marked {{{{ live.target({name!r}) }}}}, so htmx cannot swap it"
            )
        entry = self._cache[key] = Rendered(html, name, held)
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return entry

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
        source: Any = fragment.render
        if fragment.render is None:
            # The loaded template itself (held, so its id is not reused): a template that
            # auto_reload loads again is a new object, and renders afresh.
            source = self.env.get_template(fragment.template or route_template)
            held.append(source)
        reads = self._reads_of(fragment, route_template)
        chosen = None if reads is None else self._chosen(reads, context)
        names = sorted(context) if chosen is None else chosen
        parts = tuple((name, _key_of(context[name], held)) for name in names)
        globals_part = () if reads is None else self._globals_key(reads, context, held)
        return (id(source), fragment.block, fragment.name, parts, globals_part)

    def _chosen(self, reads: _Reads, context: Mapping[str, Any]) -> list[str] | None:
        """The context names the key needs, or None when the render may read anything."""
        for name in reads.names:
            if name not in context:
                return None  # a macro of the template, or a name set elsewhere: unknown
        for name in reads.loads:
            if name in context or name not in self.env.globals:
                continue  # the context's own value, or a variable the fragment sets
            value = self.env.globals[name]
            if value is not DEFAULT_NAMESPACE.get(name) and callable(value):
                return None  # a global function (url_for, gettext) may read anything
        for name in reads.called:
            if name in context:
                value = context[name]
            elif name in self.env.globals:
                value = self.env.globals[name]
            else:
                continue  # the fragment's own variable or macro
            if not isinstance(value, LiveContext) and value is not DEFAULT_NAMESPACE.get(name):
                return None  # a method may take the context (pass_context) or read anything
        for used, registered, builtin in (
            (reads.filters, self.env.filters, DEFAULT_FILTERS),
            (reads.tests, self.env.tests, DEFAULT_TESTS),
        ):
            for name in used:
                function = registered.get(name)
                # Jinja's own (map, select, ...) take the context only to find other filters.
                if function is not builtin.get(name) and _reads_context(function):
                    return None
        return sorted(reads.names)

    def _globals_key(
        self, reads: _Reads, context: Mapping[str, Any], held: list[Any]
    ) -> tuple[tuple[str, Hashable], ...]:
        """Plain global values the fragment reads (they may change between renders)."""
        return tuple(
            (name, _key_of(self.env.globals[name], held))
            for name in sorted(reads.loads)
            if name not in context and name in self.env.globals
        )

    def _reads_of(self, fragment: Fragment, route_template: str) -> _Reads | None:
        """What a template fragment reads; None when that cannot be known (a function, an
        include, an import, an extension's node)."""
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
    ) -> tuple[_Reads | None, _UpToDate]:
        """What `_reads_of` returns, and the loader's check that the source is unchanged."""
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
        if any(True for _ in body.find_all(_OPAQUE)):
            return None, uptodate
        reads = _Reads(
            names=frozenset(meta.find_undeclared_variables(body)),
            loads=frozenset(n.name for n in body.find_all(nodes.Name) if n.ctx == "load"),
            filters=frozenset(f.name for f in body.find_all(nodes.Filter)),
            tests=frozenset(t.name for t in body.find_all(nodes.Test)),
            called=frozenset(_called_roots(body)),
        )
        return reads, uptodate


@dataclass(frozen=True)
class _Reads:
    """What a block reads: context names it never sets (`names`), every name it loads
    (context, globals and its own variables), the filters and tests it applies, and the
    names it calls through (`helpers.who()` calls through `helpers`)."""

    names: frozenset[str]
    loads: frozenset[str]
    filters: frozenset[str]
    tests: frozenset[str]
    called: frozenset[str]  # names whose value, or something reached from it, is called


#: Nodes whose reads cannot be seen from the block: other templates, and extensions' nodes
#: (`{% debug %}`, custom tags), which may read the whole context.
_OPAQUE = (
    nodes.Include,
    nodes.Import,
    nodes.FromImport,
    nodes.Extends,
    nodes.ContextReference,
    nodes.DerivedContextReference,
    nodes.ExtensionAttribute,
    nodes.ImportedName,
)


def _called_roots(body: nodes.Node) -> Iterator[str]:
    for call in body.find_all(nodes.Call):
        node = call.node
        while isinstance(node, nodes.Getattr | nodes.Getitem):
            node = node.node
        if isinstance(node, nodes.Name):
            yield node.name


def _reads_context(function: Any) -> bool:
    """Whether a filter or test is given the render context (and may read any of it)."""
    passed = getattr(function, "jinja_pass_arg", None)
    return passed is not None and getattr(passed, "name", "") == "context"


_PLAIN = (str, int, float, bool, bytes, type(None))


def _key_of(value: Any, held: list[Any]) -> Hashable:
    """A key equal for two values only if they render alike: plain data by value, lists,
    tuples and dicts by their items, anything else by identity (kept alive in `held`)."""
    if isinstance(value, float):
        return (float, repr(value))  # 0.0 and -0.0 are equal but render apart
    if isinstance(value, _PLAIN):
        return (type(value), value)
    if type(value) in (list, tuple):
        return (type(value), tuple(_key_of(item, held) for item in value))
    if type(value) is dict:
        return (dict, tuple((_key_of(k, held), _key_of(v, held)) for k, v in value.items()))
    held.append(value)
    return ("id", id(value))
