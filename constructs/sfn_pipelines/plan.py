"""Plan one dependency group as nested series/parallel blocks.

Step Functions nests only sequences (Chain) and ``Parallel`` branches, and nothing may
leave a branch early. So a group runs as a tree of ``Series``/``Parallel`` blocks, which
expresses exactly the series-parallel orders. The planner recovers that structure exactly
when it exists: every step then waits for its ancestors only, never for a whole "level"
(two chains 10→1 and 1→10 take 11, not 20). When the order contains an "N" (a→c, b→c, b→d
with a, d unrelated) some ordering must be added: the planner chooses it with the duration
hints so the critical path grows as little as it can find, and reports each addition in
``Plan.added``. A dependency is never dropped.

Decomposition of a step set S (shared/reference/planning-notes.md):

1. S splits into weakly connected components → ``Parallel`` of the parts;
2. else S has series cut points along the topological order (a prefix whose every step is
   an ancestor of every later step) → ``Series`` of the parts;
3. else S contains an N and is cut into a prefix D and the rest U, adding "D before U".
   Candidates are thresholds on the earliest finish time inside S; each is scored by the
   exact critical path after the cut (``_cuts``). Large sets take the best-scored cut;
   sets of up to ``_SEARCH_SIZE`` steps plan their best few for real, memoised on the step
   set (``_search``). Wherever one ``Parallel`` per topological level would be shorter, the
   level plan is used instead: by induction the result is never worse than what a
   level-by-level generator produces.

Steps sit at positions of one topological order (smallest id first among the ready ones,
so it depends on the ids only) and relations are Python int bitsets, bit i = position i.
A split costs O(steps + edges) of the set; cheap checks first (steps at either end related
to all or to none of the others, small components at the ends) keep deep nesting such as a
chain with a side branch at every stage near-linear. The driver is an explicit stack, so
deep nesting cannot overflow Python's stack either. Nothing here imports CDK or does I/O.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Leaf:
    """One step."""

    step: str


@dataclass(frozen=True)
class Series:
    """Children run one after the other (a Chain)."""

    children: tuple[Node, ...]

    def __post_init__(self) -> None:
        if len(self.children) < 2:
            raise ValueError(f"Series needs at least 2 children. Received {len(self.children)}.")


@dataclass(frozen=True)
class Parallel:
    """Children run side by side (one branch each)."""

    children: tuple[Node, ...]

    def __post_init__(self) -> None:
        if len(self.children) < 2:
            raise ValueError(f"Parallel needs at least 2 children. Received {len(self.children)}.")


Node = Leaf | Series | Parallel


@dataclass(frozen=True)
class AddedConstraint:
    """An ordering the tree enforces although the graph did not require it.

    All of ``before`` finish before any of ``after`` starts. Only steps that take part in
    at least one new (not already implied) pair are listed; ids are sorted.
    """

    before: tuple[str, ...]
    after: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """The tree for one group, what it costs, and what it had to add."""

    root: Node
    added: tuple[AddedConstraint, ...]
    critical_path: float  # longest path of durations in the graph: no plan can beat it
    makespan: float  # finish time of ``root`` with the same durations, unlimited parallelism

    def steps(self) -> list[str]:
        """Step ids in render order."""
        return [n.step for n in _pre_order(self.root) if isinstance(n, Leaf)]


# ---------------------------------------------------------------------------------------
# public helpers on trees


def makespan(node: Node, durations: Mapping[str, float] | None = None) -> float:
    """Finish time of ``node``: series = sum, parallel = max; missing durations count 1.0."""
    durations = durations or {}
    span: dict[int, float] = {}
    for n in _post_order(node):
        if isinstance(n, Leaf):
            span[id(n)] = float(durations.get(n.step, 1.0))
        else:
            spans = [span[id(c)] for c in n.children]
            span[id(n)] = sum(spans) if isinstance(n, Series) else max(spans)
    return span[id(node)]


def structure_edges(node: Node) -> set[tuple[str, str]]:
    """The order the tree enforces, transitively reduced.

    For each pair of consecutive children of a ``Series``: every step that ends the first
    child precedes every step that starts the next one. Its transitive closure is exactly
    the tree's order. Two wide ``Parallel`` blocks in a row give a quadratic number of pairs.
    """
    ends: dict[int, tuple[list[str], list[str]]] = {}  # id(node) -> (first steps, last steps)
    edges: set[tuple[str, str]] = set()
    for n in _post_order(node):
        if isinstance(n, Leaf):
            ends[id(n)] = ([n.step], [n.step])
        elif isinstance(n, Series):
            for a, b in itertools.pairwise(n.children):
                edges.update((x, y) for x in ends[id(a)][1] for y in ends[id(b)][0])
            ends[id(n)] = (ends[id(n.children[0])][0], ends[id(n.children[-1])][1])
        else:
            ends[id(n)] = (
                [s for c in n.children for s in ends[id(c)][0]],
                [s for c in n.children for s in ends[id(c)][1]],
            )
    return edges


def to_dict(node: Node) -> dict:
    """JSON-friendly form: ``{"step": id}``, ``{"series": [...]}`` or ``{"parallel": [...]}``."""
    out: dict[int, dict] = {}
    for n in _post_order(node):
        if isinstance(n, Leaf):
            out[id(n)] = {"step": n.step}
        else:
            key = "series" if isinstance(n, Series) else "parallel"
            out[id(n)] = {key: [out[id(c)] for c in n.children]}
    return out[id(node)]


def render_text(node: Node, indent: str = "  ") -> str:
    """Nested outline for the CLI: one line per block or step, children indented."""
    lines: list[str] = []
    stack: list[tuple[Node, int]] = [(node, 0)]
    while stack:
        n, depth = stack.pop()
        if isinstance(n, Leaf):
            lines.append(indent * depth + n.step)
            continue
        kind = "series" if isinstance(n, Series) else "parallel"
        lines.append(f"{indent * depth}{kind} ({len(n.children)})")
        stack.extend((c, depth + 1) for c in reversed(n.children))
    return "\n".join(lines)


def _pre_order(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        if not isinstance(n, Leaf):
            stack.extend(reversed(n.children))


def _post_order(node: Node) -> list[Node]:
    """Children before parents, without recursion (trees may nest thousands deep)."""
    order = list(_pre_order(node))
    order.reverse()
    return order


# ---------------------------------------------------------------------------------------
# the graph, in topological positions


class _Graph:
    """One group with steps renumbered by a deterministic topological order.

    ``anc[i]``/``desc[i]`` are bitsets of strict ancestors/descendants; ``level`` is the
    longest edge count from a root, ``start``/``finish`` the earliest times by durations.
    """

    def __init__(self, steps: Sequence[str], edges: Iterable[tuple[str, str]], durations: Mapping[str, float]) -> None:
        names = sorted(set(steps))
        if len(names) != len(steps):
            dupes = sorted(s for s, k in Counter(steps).items() if k > 1)
            raise ValueError(f"duplicate step ids: {', '.join(dupes)}")
        if not names:
            raise ValueError("a group needs at least one step")
        rank = {s: i for i, s in enumerate(names)}
        kids: list[set[int]] = [set() for _ in names]
        for parent, child in edges:
            for s in (parent, child):
                if s not in rank:
                    raise ValueError(f"edge {parent!r} -> {child!r}: unknown step {s!r}")
            if parent == child:
                raise ValueError(f"edge {parent!r} -> {child!r}: a step cannot depend on itself")
            kids[rank[parent]].add(rank[child])
        order = _topological(names, kids)

        pos = {r: p for p, r in enumerate(order)}
        n = len(names)
        self.ids = [names[r] for r in order]
        self.children = [sorted(pos[c] for c in kids[r]) for r in order]
        self.parents: list[list[int]] = [[] for _ in range(n)]
        for p, cs in enumerate(self.children):
            for c in cs:
                self.parents[c].append(p)
        self.dur = [_duration(durations, s) for s in self.ids]

        self.level, self.start, self.finish = [0] * n, [0.0] * n, [0.0] * n
        upto = [0] * n  # ancestors and the step itself
        for i in range(n):
            a, lvl, start = 1 << i, 0, 0.0
            for p in self.parents[i]:
                a |= upto[p]
                lvl = max(lvl, self.level[p] + 1)
                start = max(start, self.finish[p])
            upto[i], self.level[i], self.start[i], self.finish[i] = a, lvl, start, start + self.dur[i]
        self.anc = [a ^ (1 << i) for i, a in enumerate(upto)]
        del upto
        fromhere = [0] * n  # the step and its descendants
        for i in reversed(range(n)):
            d = 1 << i
            for c in self.children[i]:
                d |= fromhere[c]
            fromhere[i] = d
        self.desc = [d ^ (1 << i) for i, d in enumerate(fromhere)]
        self.not_desc = [~d for d in self.desc]  # saves one big-int op per step and split
        del fromhere
        self.adj = [p + c for p, c in zip(self.parents, self.children, strict=True)]
        # Parallel branches are ordered by (earliest start, id): stable and readable.
        self.key = [(self.start[i], self.ids[i]) for i in range(n)]
        # Stamps instead of sets: mark[i] == stamp  <=>  i is in the set being split.
        self.mark, self.seen, self.stamp = [0] * n, [0] * n, 0


def _duration(durations: Mapping[str, float], step: str) -> float:
    value = float(durations.get(step, 1.0))
    if not (value >= 0 and math.isfinite(value)):
        raise ValueError(f"duration of step {step!r} must be a finite number >= 0. Received {value}.")
    return value


def _topological(names: list[str], kids: list[set[int]]) -> list[int]:
    """Kahn's algorithm, smallest id first, so the order depends on the ids only."""
    indeg = [0] * len(names)
    for cs in kids:
        for c in cs:
            indeg[c] += 1
    ready = [i for i, d in enumerate(indeg) if d == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for c in kids[i]:
            indeg[c] -= 1
            if indeg[c] == 0:
                heapq.heappush(ready, c)
    if len(order) < len(names):
        raise ValueError(f"cycle: {' -> '.join(names[i] for i in _find_cycle(kids, indeg))}")
    return order


def _find_cycle(kids: list[set[int]], indeg: list[int]) -> list[int]:
    """A cycle among the steps Kahn's algorithm could not order (each has a parent there)."""
    left = {i for i, d in enumerate(indeg) if d > 0}
    parent_in_left = {}
    for p in sorted(left):
        for c in kids[p]:
            if c in left:
                parent_in_left.setdefault(c, p)
    walk, seen, i = [], {}, min(left)
    while i not in seen:
        seen[i] = len(walk)
        walk.append(i)
        i = parent_in_left[i]
    cycle = [*walk[seen[i] :], i]
    cycle.reverse()  # walked child -> parent
    return cycle


# ---------------------------------------------------------------------------------------
# the planner

_LEAF, _SERIES, _PARALLEL, _CUT = 0, 1, 2, 3


class _Block:
    """A tree node under construction; ``cut[i]`` flags a possibly added boundary i."""

    __slots__ = ("children", "cut", "key", "kind", "span", "step")

    def __init__(self, kind: int, span: float, key: tuple, step: int = -1) -> None:
        self.kind, self.span, self.key, self.step = kind, span, key, step
        self.children: list[_Block] = []
        self.cut: list[bool] = []


def _leaf(g: _Graph, i: int) -> _Block:
    return _Block(_LEAF, g.dur[i], g.key[i], i)


def _series(blocks: list[_Block], cuts: list[bool]) -> _Block:
    """Series of ``blocks``, flattened; ``cuts[i]`` flags the boundary after ``blocks[i]``."""
    out = _Block(_SERIES, sum(b.span for b in blocks), min(b.key for b in blocks))
    for i, b in enumerate(blocks):
        if i:
            out.cut.append(cuts[i - 1])
        if b.kind == _SERIES:
            out.children += b.children
            out.cut += b.cut
        else:
            out.children.append(b)
    return out


def _parallel(blocks: list[_Block]) -> _Block:
    """Parallel of ``blocks``, flattened and ordered by key."""
    children = [c for b in blocks for c in (b.children if b.kind == _PARALLEL else [b])]
    children.sort(key=lambda b: b.key)
    out = _Block(_PARALLEL, max(b.span for b in children), children[0].key)
    out.children = children
    return out


_Part = tuple[list[int], "int | None"]  # members in topological order, their bitset if known
_FEW = 8  # steps unrelated to the first one that are checked one by one


def _mask(members: list[int]) -> int:
    """Bitset of ``members``; one bytes buffer beats thousands of big-int ORs."""
    buf = bytearray((max(members) >> 3) + 1)
    for i in members:
        buf[i >> 3] |= 1 << (i & 7)
    return int.from_bytes(buf, "little")


def _bits(mask: int) -> list[int]:
    """Positions set in a sparse bitset, lowest first."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def _mark(g: _Graph, members: list[int]) -> None:
    g.stamp += 1
    for i in members:
        g.mark[i] = g.stamp


def _peel(g: _Graph, members: list[int], mask: int) -> list[_Part]:
    """Series parts peeled off both ends, or [] if neither end step relates to all others.

    A few big-int operations per step: chains and deep nesting (a chain with a side step
    at every stage) never pay for a full scan per level.
    """
    lo, hi = 0, len(members)
    while hi - lo > 1 and g.desc[members[lo]] & mask == mask ^ 1 << members[lo]:
        mask ^= 1 << members[lo]
        lo += 1
    while hi - lo > 1 and g.anc[members[hi - 1]] & mask == mask ^ 1 << members[hi - 1]:
        mask ^= 1 << members[hi - 1]
        hi -= 1
    if lo == 0 and hi == len(members):
        return []
    middle = [(members[lo:hi], mask)] if lo < hi else []
    return [([i], None) for i in members[:lo]] + middle + [([i], None) for i in members[hi:]]


def _parallel_parts(g: _Graph, members: list[int], mask: int) -> list[_Part]:
    """Parts with no relation across them, or [] if the set is connected.

    Cheap cases first, so that deep nesting does not pay a full scan per level: steps at
    either end of the order unrelated to all others; a small component around the first
    or the last step; only a few steps unrelated to the first (a minimal step, so its
    descendants are in its component), checked one by one. Otherwise a breadth-first
    search labels the components.
    """
    lo, hi = 0, len(members)
    while lo < hi and not g.desc[members[lo]] & mask:
        mask ^= 1 << members[lo]
        lo += 1
    while lo < hi and not g.anc[members[hi - 1]] & mask:
        mask ^= 1 << members[hi - 1]
        hi -= 1
    if lo or hi < len(members):
        rest = [(members[lo:hi], mask)] if lo < hi else []
        return [([i], None) for i in members[:lo]] + rest + [([i], None) for i in members[hi:]]
    for end in (members[0], members[-1]):
        comp = _small_component(g, end, mask)
        if comp == mask:
            return []
        if comp:
            small = _bits(comp)
            rest = members.copy()
            for i in small:
                rest.remove(i)
            return [(small, comp), (rest, mask ^ comp)]
    first = members[0]
    inside = g.desc[first] & mask | 1 << first
    loose = mask ^ inside
    if not loose:
        return []
    if loose.bit_count() <= _FEW:
        left = _bits(loose)
        grown = True
        while grown and left:
            grown = False
            for i in [i for i in left if (g.anc[i] | g.desc[i]) & inside]:
                inside |= 1 << i
                left.remove(i)
                grown = True
        if not left:
            return []
        rest = members.copy()
        for i in left:
            rest.remove(i)
        return [(rest, inside), (left, mask ^ inside)]  # ``left`` may split further

    _mark(g, members)
    stamp, mark, seen, adj = g.stamp, g.mark, g.seen, g.adj
    label: dict[int, int] = {}
    for start in members:
        if seen[start] == stamp:
            continue
        seen[start] = stamp
        comp = [start]
        for i in comp:  # breadth-first: ``comp`` grows while it is read
            for j in adj[i]:
                if mark[j] == stamp and seen[j] != stamp:
                    seen[j] = stamp
                    comp.append(j)
        if len(comp) == len(members):
            return []
        label.update(dict.fromkeys(comp, len(label)))
    groups: dict[int, list[int]] = {}
    for i in members:
        groups.setdefault(label[i], []).append(i)
    return [(part, None) for part in groups.values()]


def _small_component(g: _Graph, start: int, mask: int) -> int:
    """Bitset of the component of ``start`` in ``mask`` if a few steps find all of it, else 0."""
    comp, todo, budget = 1 << start, [start], 4 * _FEW
    while todo:
        for j in g.adj[todo.pop()]:
            budget -= 1
            if budget < 0:
                return 0
            if mask >> j & 1 and not comp >> j & 1:
                comp |= 1 << j
                todo.append(j)
    return comp


def _series_parts(g: _Graph, members: list[int], mask: int) -> list[_Part]:
    """Split a connected set at every prefix of the topological order that precedes the rest.

    The highest member that is not a descendant of i is i itself or a later step unrelated
    to i; a cut after position k is valid when no earlier step reaches past k.
    """
    parts, start, reach, not_desc = [], 0, -1, g.not_desc
    for k, i in enumerate(members):
        reach = max(reach, (mask & not_desc[i]).bit_length() - 1)
        if reach <= i:
            parts.append((members[start : k + 1], None))
            start = k + 1
    return parts


# Cut candidates per set: at most this many thresholds, the nearest to evenly spaced step
# counts. Besides bounding the work, this stops the one-cut score from peeling off one step
# at a time, which leaves the whole tangle to the next round (random 3,000-step graph with
# random hints: makespan 415 with every threshold, no better than level by level; 337
# with 32; critical path 258).
_MAX_CANDIDATES = 32
# Sets with an N up to this size try their best few cuts for real (memoised) instead of
# trusting the score: 2-4 % shorter on 20-60 step groups. Once the memo holds
# _SEARCH_BUDGET sets per step of the group, only the best-scored cut is tried: cuts that
# peel one step at a time could otherwise branch exponentially.
_SEARCH_SIZE, _SEARCH_WIDTH, _SEARCH_BUDGET = 48, 2, 10


def _cuts(g: _Graph, members: list[int], width: int) -> list[list[int]]:
    """The ``width`` best prefixes D to run before the rest U of a set with an N.

    ``finish``/``tail`` are the longest paths of durations inside the set ending/starting
    at a step. Ranking steps by (finish, level) puts every parent before its children, so a
    threshold prefix keeps every dependency, and the critical path once "D before U" is
    added is exactly ``max finish(D) + max tail(U)``: one sweep scores all thresholds. Ties
    go to the more even split. Each D is returned in topological order.
    """
    stamp, mark, dur = g.stamp, g.mark, g.dur
    finish: dict[int, float] = {}
    for i in members:
        finish[i] = dur[i] + max((finish[p] for p in g.parents[i] if mark[p] == stamp), default=0.0)
    tail: dict[int, float] = {}
    for i in reversed(members):
        tail[i] = dur[i] + max((tail[c] for c in g.children[i] if mark[c] == stamp), default=0.0)
    rank = {i: (finish[i], g.level[i]) for i in members}
    order = sorted(members, key=lambda i: (rank[i], i))
    size = len(order)
    bounds = [k for k in range(1, size) if rank[order[k - 1]] < rank[order[k]]]
    if len(bounds) > _MAX_CANDIDATES:
        picked = set()
        for j in range(1, _MAX_CANDIDATES + 1):
            target = size * j // (_MAX_CANDIDATES + 1)
            x = bisect.bisect_left(bounds, target)
            picked.add(min(bounds[max(x - 1, 0) : x + 1], key=lambda k, t=target: (abs(k - t), k)))
        bounds = sorted(picked)
    head = list(itertools.accumulate((finish[i] for i in order), max))
    suffix = list(itertools.accumulate((tail[i] for i in reversed(order)), max))[::-1]
    scored = sorted((round(head[k - 1] + suffix[k], 9), abs(2 * k - size), k) for k in bounds)
    return [sorted(order[:k]) for _, _, k in scored[:width]]


def _level_plan(g: _Graph, members: list[int]) -> _Block:
    """One ``Parallel`` per topological level: the baseline the planner never loses to."""
    levels: dict[int, list[int]] = {}
    for i in members:
        levels.setdefault(g.level[i], []).append(i)
    slices = []
    for lvl in sorted(levels):
        leaves = [_leaf(g, i) for i in levels[lvl]]
        slices.append(leaves[0] if len(leaves) == 1 else _parallel(leaves))
    return _series(slices, [True] * (len(slices) - 1))


def _level_span(g: _Graph, members: list[int]) -> float:
    longest: dict[int, float] = {}
    for i in members:
        longest[g.level[i]] = max(longest.get(g.level[i], 0.0), g.dur[i])
    return sum(longest.values())


def _split(g: _Graph, members: list[int], mask: int | None, width: int) -> tuple[int, list[_Part]]:
    """(``_PARALLEL``, components) | (``_SERIES``, parts) | (``_CUT``, best prefixes)."""
    if mask is None:
        mask = _mask(members)
    parts = _peel(g, members, mask)  # implies the set is connected
    if parts:
        return _SERIES, parts
    parts = _parallel_parts(g, members, mask)
    if parts:
        return _PARALLEL, parts
    parts = _series_parts(g, members, mask)
    if len(parts) > 1:
        return _SERIES, parts
    _mark(g, members)
    return _CUT, [(d, None) for d in _cuts(g, members, width)]


def _rest(members: list[int], prefix: list[int]) -> list[int]:
    taken = set(prefix)
    return [i for i in members if i not in taken]


def _join_cut(g: _Graph, members: list[int], before: _Block, after: _Block) -> _Block:
    """Run "before" then "after", unless one Parallel per level is shorter (see module doc)."""
    block = _series([before, after], [True])
    if block.span > _level_span(g, members) + 1e-9:
        return _level_plan(g, members)
    return block


def _search(g: _Graph, part: _Part, memo: dict[int, _Block]) -> _Block:
    """Plan a small set, trying its best few cuts for real; memoised on the step set."""
    members, mask = part
    if len(members) == 1:
        return _leaf(g, members[0])
    if mask is None:
        mask = _mask(members)
    if mask in memo:
        return memo[mask]
    search = functools.partial(_search, g, memo=memo)
    width = _SEARCH_WIDTH if len(memo) < _SEARCH_BUDGET * len(g.ids) else 1
    kind, parts = _split(g, members, mask, width)
    if kind == _PARALLEL:
        block = _parallel([search(p) for p in parts])
    elif kind == _SERIES:
        block = _series([search(p) for p in parts], [False] * (len(parts) - 1))
    else:
        tries = [_join_cut(g, members, search(d), search((_rest(members, d[0]), None))) for d in parts]
        block = min(tries, key=lambda b: round(b.span, 9))  # first (best scored) on ties
    memo[mask] = block
    return block


def _solve(g: _Graph) -> _Block:
    """Decompose all steps without recursion: ``todo`` holds sets to split and pending joins.

    A large set with an N takes its best-scored cut; small ones go to ``_search``.
    """
    results: list[_Block] = []
    memo: dict[int, _Block] = {}
    todo: list[tuple] = [("split", (list(range(len(g.ids))), None))]
    while todo:
        task = todo.pop()
        if task[0] == "join":
            _, kind, count, members = task
            parts = results[-count:]
            del results[-count:]
            if kind == _PARALLEL:
                results.append(_parallel(parts))
            elif kind == _SERIES:
                results.append(_series(parts, [False] * (count - 1)))
            else:
                results.append(_join_cut(g, members, *parts))
            continue
        members, mask = task[1]
        if len(members) == 1:
            results.append(_leaf(g, members[0]))
            continue
        kind, parts = _split(g, members, mask, 1)
        if kind == _CUT:
            if len(members) <= _SEARCH_SIZE:
                results.append(_search(g, task[1], memo))
                continue
            parts = [parts[0], (_rest(members, parts[0][0]), None)]
        todo.append(("join", kind, len(parts), members if kind == _CUT else None))
        todo.extend(("split", p) for p in reversed(parts))
    return results[0]


def _steps_of(block: _Block) -> list[int]:
    out, stack = [], [block]
    while stack:
        b = stack.pop()
        if b.kind == _LEAF:
            out.append(b.step)
        else:
            stack.extend(b.children)
    return out


def _added(g: _Graph, root: _Block) -> list[AddedConstraint]:
    """The new pairs at each flagged series boundary, in render order.

    Only consecutive children are compared: together with the graph, those pairs imply
    the rest of the order the tree adds.
    """
    found: list[AddedConstraint] = []
    stack: list[_Block | tuple[_Block, _Block]] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple):
            first, second = (_steps_of(b) for b in item)
            m1, m2 = _mask(first), _mask(second)
            before = sorted(g.ids[i] for i in first if g.desc[i] & m2 != m2)
            if before:
                after = sorted(g.ids[i] for i in second if g.anc[i] & m1 != m1)
                found.append(AddedConstraint(tuple(before), tuple(after)))
        elif item.kind != _LEAF:
            cs = item.children
            for k in reversed(range(len(cs))):
                stack.append(cs[k])
                if k and item.kind == _SERIES and item.cut[k - 1]:
                    stack.append((cs[k - 1], cs[k]))
    return found


def _to_node(g: _Graph, root: _Block) -> Node:
    built: dict[int, Node] = {}
    stack, order = [root], []
    while stack:
        b = stack.pop()
        order.append(b)
        stack.extend(b.children)
    for b in reversed(order):
        if b.kind == _LEAF:
            built[id(b)] = Leaf(g.ids[b.step])
        else:
            kids = tuple(built.pop(id(c)) for c in b.children)
            built[id(b)] = Series(kids) if b.kind == _SERIES else Parallel(kids)
    return built[id(root)]


def plan_group(
    steps: Sequence[str],
    edges: Iterable[tuple[str, str]],
    durations: Mapping[str, float] | None = None,
) -> Plan:
    """Plan one dependency group; ``edges`` are (parent, child), durations default to 1.0.

    Raises ValueError for an empty group, a duplicate step, an edge naming an unknown step,
    a self-loop, a cycle or a negative duration (callers validate earlier; this is a guard).
    """
    g = _Graph(list(steps), edges, durations or {})
    root = _solve(g)
    return Plan(
        root=_to_node(g, root),
        added=tuple(_added(g, root)),
        critical_path=max(g.finish),
        makespan=root.span,
    )
