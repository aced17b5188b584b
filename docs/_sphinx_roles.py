"""Griffe extension for the API pages: the package's docstrings cross-reference with Sphinx
roles (``:class:`TrajectoryDataset```, ``:func:`~attsolver.solve```), which mkdocstrings
would print raw.  Each role becomes a link to the object's API entry, resolved from the scope
of the docstring that holds it (as Sphinx resolves it); a name that is not documented on the
site (an external library's, a private helper's) stays a plain code span, as in Sphinx.

Loaded by mkdocstrings (``extensions:`` in mkdocs.yml); the docstrings themselves are left as
they are, so ``help()`` and editors keep showing the roles they understand.
"""

from __future__ import annotations

import html
import re

from griffe import Extension, Object

#: ``:role:`target``` and ``:py:role:`target```; target is ``name``, ``~dotted.name`` (show the
#: last part only) or ``title <dotted.name>``
_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj|const|type):`(?P<target>[^`]+)`")
_TITLED = re.compile(r"^(?P<title>.*?)\s*<(?P<path>[^<>]+)>$")


def _resolve(obj: Object, path: str) -> str | None:
    """The full path of ``path`` seen from ``obj``'s scope, or None if griffe does not know it."""
    head, _, rest = path.partition(".")
    candidates = [path] if rest else []             # an absolute dotted path first
    try:
        candidates.append(obj.resolve(head) + (f".{rest}" if rest else ""))
    except Exception:                                 # NameResolutionError, or a broken alias
        pass
    collection = obj.modules_collection
    for full in candidates:
        try:
            collection[full]                        # raises KeyError when not loaded / not found
        except (KeyError, ValueError, AttributeError):
            continue
        return full
    return None


def _link(obj: Object, match: re.Match) -> str:
    target = match["target"].strip().lstrip("!")
    titled = _TITLED.match(target)
    if titled:
        title, path = titled["title"], titled["path"]
    else:
        path = target.lstrip("~").rstrip("()")
        title = path.rsplit(".", 1)[-1] if target.startswith("~") else path
    full = _resolve(obj, path)
    code = f"<code>{html.escape(title)}</code>"
    if full is None:
        return code
    # "optional": autorefs links it when the object has an entry on some page, else leaves the text
    return f'<autoref identifier="{html.escape(full)}" optional>{code}</autoref>'


class SphinxRoles(Extension):
    """Rewrite the Sphinx roles of every docstring into autorefs links at load time."""

    def on_object(self, *, obj: Object, **kwargs) -> None:
        docstring = obj.docstring
        if docstring is not None and ":" in docstring.value and "`" in docstring.value:
            docstring.value = _ROLE.sub(lambda m: _link(obj, m), docstring.value)
