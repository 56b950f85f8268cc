"""The pieces of ``threadloom demo``: a local news site and a crawl-and-extract pipeline.

:class:`DemoSite` serves generated articles from an HTTP server on 127.0.0.1
(an ephemeral port), with per-source latency, transient failures (HTTP 503) and
one dead link (HTTP 404), so that the pipeline meets what a crawler meets.

The pipeline (:func:`build_workflow`) is the kind of system threadloom is built for,
in miniature: for each source, fetch its latest articles (IO-bound, retried
with exponential backoff on transient failures), parse each one (CPU-bound:
HTML to text, keywords, named entities, a similarity fingerprint), aggregate
per source (``all_done``: a dead link does not stop the digest), then one
report over all sources.  A feed of breaking headlines is checked on a cron
schedule, at the highest priority, and matched against the focus points.

Nothing here talks to anything but 127.0.0.1: the fetcher refuses other hosts
and ignores proxy settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import random
import re
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

from ._types import TaskPriority
from .graph.dag import TriggerRule
from .retry import RetryPolicy
from .scheduling import CronSchedule
from .workflow import TaskSpec, Workflow

__all__ = [
    "ARTICLES_PER_SOURCE",
    "FEED_CRON",
    "FOCUS_POINTS",
    "SOURCES",
    "ArticleFacts",
    "DemoSite",
    "PageGoneError",
    "Report",
    "SourceDigest",
    "TransientFetchError",
    "build_workflow",
]


@dataclasses.dataclass(frozen=True)
class Source:
    """A site section the demo crawls."""

    name: str
    priority: int
    latency: float  # typical seconds per response
    transient_failure_rate: float
    dead_slot: int | None = None  # an article link that is gone (404) in every round


SOURCES = (
    Source("city-desk", TaskPriority.HIGH, 0.030, 0.10),
    Source("science-wire", TaskPriority.HIGH, 0.050, 0.10),
    Source("market-watch", TaskPriority.NORMAL, 0.040, 0.15),
    Source("legacy-blog", TaskPriority.NORMAL, 0.120, 0.25, dead_slot=4),
)
ARTICLES_PER_SOURCE = 6
#: What the analysts care about (its "focus points").
FOCUS_POINTS = ("latency", "energy", "markets", "robotics")
#: Every other second (the six-field form: seconds first).
FEED_CRON = "*/2 * * * * *"

#: Retries for fetches: 0.1 s, 0.2 s, 0.4 s (+ up to 50 ms of jitter), transient errors only.
FETCH_RETRY = RetryPolicy(
    max_retries=3, delay=0.1, backoff=2.0, max_delay=1.0, jitter=0.05, retry_on=(ConnectionError,)
)


# --------------------------------------------------------------------------- the site

_FIRST = ("Ada", "Grace", "Linus", "Barbara", "Ken", "Frances", "Edsger", "Radia", "Donald")
_LAST = ("Lovelace", "Hopper", "Torvalds", "Liskov", "Thompson", "Allen", "Dijkstra", "Knuth")
_ORGS = (
    "Riverside Labs",
    "Northwind Energy",
    "Harbor Robotics",
    "Quarry Capital",
    "Meridian Institute",
    "Port Authority",
)
_TOPICS = (
    "latency",
    "energy",
    "markets",
    "robotics",
    "batteries",
    "throughput",
    "grid",
    "sensors",
    "compilers",
    "logistics",
    "bandwidth",
    "forecasts",
)
_VERBS = ("reports", "measures", "questions", "doubles", "cuts", "expands", "reviews", "ships")
_FILLER = (
    "the",
    "a",
    "new",
    "of",
    "in",
    "with",
    "after",
    "during",
    "for",
    "quarterly",
    "regional",
    "early",
    "surprising",
    "steady",
    "record",
    "cheaper",
)


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _sentence(rng: random.Random) -> str:
    subject = _person(rng) if rng.random() < 0.5 else rng.choice(_ORGS)
    words = [subject, rng.choice(_VERBS)]
    for _ in range(rng.randint(6, 14)):
        roll = rng.random()
        if roll < 0.25:
            words.append(rng.choice(_TOPICS))
        elif roll < 0.32:
            words.append(str(rng.randint(2, 990)))
        else:
            words.append(rng.choice(_FILLER))
    return " ".join(words) + "."


def render_article(source: str, slot: int, rng: random.Random) -> str:
    """Return an article page (HTML) for *source*'s slot, from *rng*."""
    title = f"{rng.choice(_ORGS)} {rng.choice(_VERBS)} {rng.choice(_TOPICS)}"
    paragraphs = "\n".join(
        "<p>" + " ".join(_sentence(rng) for _ in range(rng.randint(4, 7))) + "</p>"
        for _ in range(rng.randint(6, 10))
    )
    return (
        "<!doctype html><html><head>"
        f"<title>{title}</title><meta name='source' content='{source}'></head><body>"
        f"<nav><a href='/sources/{source}/articles/{(slot + 1) % ARTICLES_PER_SOURCE}'>next</a>"
        "</nav><script>var tracking = 'ignored by the parser';</script>"
        f"<article><h1>{title}</h1>{paragraphs}</article></body></html>"
    )


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _SiteServer
    protocol_version = "HTTP/1.0"

    def do_GET(self) -> None:
        site = self.server.site
        status, content_type, body = site.respond(self.path)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if status == 503:
            self.send_header("Retry-After", "1")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log: the demo shows its own progress."""


class _SiteServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    site: DemoSite


class DemoSite:
    """A news site on 127.0.0.1 that serves generated articles, slowly and unreliably.

    Routes: ``/sources/<source>/articles/<slot>`` (an HTML article),
    ``/feed`` (JSON breaking headlines); anything else is 404.

    Args:
        seed: Seeds the page generator, latencies and failures.
        latency_scale: Multiplies every source's latency (0 for none).

    Attributes:
        base_url: ``http://127.0.0.1:<port>`` once started.
    """

    def __init__(self, seed: int = 7, latency_scale: float = 1.0) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._latency_scale = latency_scale
        self._sources = {source.name: source for source in SOURCES}
        self._server: _SiteServer | None = None
        self._thread: threading.Thread | None = None
        self.requests: Counter[int] = Counter()
        self.base_url = ""

    def start(self) -> str:
        """Start serving on an ephemeral port of 127.0.0.1; return the base URL."""
        server = _SiteServer(("127.0.0.1", 0), _Handler)
        server.site = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="threadloom-demo-site",
            daemon=True,
        )
        self._thread.start()
        host, port = server.server_address[:2]
        self.base_url = f"http://{host!s}:{port}"
        return self.base_url

    def stop(self) -> None:
        """Stop serving and close the socket."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> DemoSite:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """Return (status, content type, body) for GET *path*, after the simulated latency."""
        parts = path.strip("/").split("/")
        if parts == ["feed"]:
            status, content_type, body, delay = self._feed()
        elif len(parts) == 4 and parts[0] == "sources" and parts[2] == "articles":
            status, content_type, body, delay = self._article(parts[1], parts[3])
        else:
            status, content_type, body, delay = 404, "text/plain", b"not found", 0.0
        with self._lock:
            self.requests[status] += 1
        if delay > 0:
            time.sleep(delay)
        return status, content_type, body

    def _article(self, source_name: str, slot_text: str) -> tuple[int, str, bytes, float]:
        source = self._sources.get(source_name)
        if source is None or not slot_text.isdigit():
            return 404, "text/plain", b"no such page", 0.0
        slot = int(slot_text)
        with self._lock:
            delay = source.latency * self._latency_scale * self._rng.lognormvariate(0.0, 0.5)
            if self._rng.random() < 0.03:
                delay *= 8  # a slow outlier
            transient = self._rng.random() < source.transient_failure_rate
            page_seed = self._rng.getrandbits(64)
        if slot >= ARTICLES_PER_SOURCE or slot == source.dead_slot:
            return 404, "text/plain", b"this article was removed", delay
        if transient:
            return 503, "text/plain", b"overloaded, try again", delay
        page = render_article(source.name, slot, random.Random(page_seed))
        return 200, "text/html; charset=utf-8", page.encode(), delay

    def _feed(self) -> tuple[int, str, bytes, float]:
        with self._lock:
            delay = 0.02 * self._latency_scale * self._rng.lognormvariate(0.0, 0.3)
            rng = random.Random(self._rng.getrandbits(64))
        headlines = [
            f"{rng.choice(_ORGS)} {rng.choice(_VERBS)} {rng.choice(_TOPICS)}" for _ in range(8)
        ]
        return 200, "application/json", json.dumps({"headlines": headlines}).encode(), delay


# --------------------------------------------------------------------------- the pipeline


class TransientFetchError(ConnectionError):
    """The server was overloaded or unreachable: worth retrying."""


class PageGoneError(LookupError):
    """The page does not exist (HTTP 4xx): retrying will not help."""


# Proxies are ignored: the demo's traffic must stay on 127.0.0.1 whatever
# http_proxy says (urllib would otherwise send 127.0.0.1 through a proxy
# unless no_proxy lists it).
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(url: str, timeout: float = 5.0) -> str:
    """GET *url* from the demo site and return the body.

    Raises:
        ValueError: *url* is not on 127.0.0.1.
        TransientFetchError: HTTP 5xx, a timeout or a refused connection.
        PageGoneError: HTTP 4xx.
    """
    if urlsplit(url).hostname != "127.0.0.1":
        raise ValueError(f"the demo only fetches from 127.0.0.1, not {url!r}")
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            body: bytes = response.read()
            return body.decode()
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code >= 500:
            raise TransientFetchError(f"HTTP {exc.code} from {url}") from None
        raise PageGoneError(f"HTTP {exc.code} from {url}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        raise TransientFetchError(f"{url}: {exc}") from None


def fetch_article(base_url: str, source: str, slot: int) -> str:
    """Fetch one article page (the IO-bound stage)."""
    return fetch(f"{base_url}/sources/{source}/articles/{slot}")


class _TextExtractor(HTMLParser):
    """Collects the title and the text of <article>, skipping scripts and navigation."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.chunks: list[str] = []
        self._stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        while self._stack:
            if self._stack.pop() == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self._stack:
            return
        if self._stack[-1] == "title":
            self.title += data
        elif "article" in self._stack and self._stack[-1] not in ("script", "style", "nav"):
            self.chunks.append(data)


@dataclasses.dataclass(frozen=True)
class ArticleFacts:
    """What parsing one article extracted."""

    title: str
    words: int
    keywords: tuple[tuple[str, int], ...]
    entities: tuple[str, ...]
    focus_hits: tuple[str, ...]
    fingerprint: int


_WORD = re.compile(r"[a-z]+")
_ENTITY = re.compile(r"\b(?:[A-Z][a-z]+)(?: [A-Z][a-z]+)+\b")
_STOPWORDS = frozenset(_FILLER) | frozenset(_VERBS)


def simhash(tokens: list[str], width: int = 64) -> int:
    """A similarity fingerprint: near-identical texts differ in few bits."""
    weights = [0] * width
    for index in range(len(tokens) - 2):
        shingle = " ".join(tokens[index : index + 3]).encode()
        value = int.from_bytes(hashlib.blake2b(shingle, digest_size=8).digest(), "big")
        for bit in range(width):
            weights[bit] += 1 if value >> bit & 1 else -1
    return sum(1 << bit for bit in range(width) if weights[bit] > 0)


def parse_article(upstream: Mapping[str, str]) -> ArticleFacts:
    """Extract facts from the fetched page (the CPU-bound stage).

    Args:
        upstream: The fetch task's name -> the page it fetched (exactly one).
    """
    (page,) = upstream.values()
    extractor = _TextExtractor()
    extractor.feed(page)
    extractor.close()
    text = " ".join(extractor.chunks)
    tokens = _WORD.findall(text.lower())
    counts = Counter(token for token in tokens if token not in _STOPWORDS)
    entities = tuple(sorted(set(_ENTITY.findall(text))))
    return ArticleFacts(
        title=extractor.title.strip(),
        words=len(tokens),
        keywords=tuple(counts.most_common(8)),
        entities=entities,
        focus_hits=tuple(focus for focus in FOCUS_POINTS if counts[focus]),
        fingerprint=simhash(tokens),
    )


@dataclasses.dataclass(frozen=True)
class SourceDigest:
    """One source's articles, merged."""

    source: str
    articles: int
    missing: int
    near_duplicates: int
    keywords: tuple[tuple[str, int], ...]
    entities: int
    focus_hits: Mapping[str, int]


def aggregate_source(
    source: str, expected: int, upstream: Mapping[str, ArticleFacts]
) -> SourceDigest:
    """Merge one source's parsed articles; articles that could not be had count as missing.

    Runs under the ``all_done`` trigger rule, so *upstream* holds only the
    parses that completed.
    """
    facts = list(upstream.values())
    keywords: Counter[str] = Counter()
    focus: Counter[str] = Counter()
    entities: set[str] = set()
    for fact in facts:
        keywords.update(dict(fact.keywords))
        focus.update(fact.focus_hits)
        entities.update(fact.entities)
    duplicates = sum(
        1
        for i, first in enumerate(facts)
        for second in facts[i + 1 :]
        if (first.fingerprint ^ second.fingerprint).bit_count() <= 3
    )
    return SourceDigest(
        source=source,
        articles=len(facts),
        missing=expected - len(facts),
        near_duplicates=duplicates,
        keywords=tuple(keywords.most_common(5)),
        entities=len(entities),
        focus_hits=dict(focus),
    )


@dataclasses.dataclass(frozen=True)
class Report:
    """The round's report over every source."""

    articles: int
    missing: int
    sources: int
    top_keywords: tuple[str, ...]
    focus_hits: Mapping[str, int]


def build_report(upstream: Mapping[str, SourceDigest]) -> Report:
    """Combine the source digests into one report."""
    keywords: Counter[str] = Counter()
    focus: Counter[str] = Counter()
    for digest in upstream.values():
        keywords.update(dict(digest.keywords))
        focus.update(digest.focus_hits)
    return Report(
        articles=sum(d.articles for d in upstream.values()),
        missing=sum(d.missing for d in upstream.values()),
        sources=len(upstream),
        top_keywords=tuple(word for word, _ in keywords.most_common(3)),
        focus_hits=dict(focus),
    )


def fetch_feed(base_url: str) -> list[str]:
    """Fetch the breaking headlines."""
    headlines: list[str] = json.loads(fetch(f"{base_url}/feed"))["headlines"]
    return headlines


def match_alerts(upstream: Mapping[str, list[str]]) -> list[str]:
    """Return the headlines that mention a focus point."""
    (headlines,) = upstream.values()
    return [line for line in headlines if any(focus in line for focus in FOCUS_POINTS)]


#: The display order of the stages (a task's stage is its first tag).
STAGES = ("fetch", "parse", "aggregate", "report", "feed")
#: The task each crawl round executes (with its dependency closure: the whole crawl).
ROUND_TARGET = "report"


def build_workflow(base_url: str, feed_cron: str = FEED_CRON) -> Workflow:
    """Return the demo's task graph for the site at *base_url*.

    Args:
        base_url: The demo site's address (``http://127.0.0.1:<port>``).
        feed_cron: When the feed check fires.

    Returns:
        A workflow: per source, fetch -> parse per article, an aggregate per
        source, one report; and a scheduled feed check.
    """
    tasks: dict[str, TaskSpec] = {}

    def add(spec: TaskSpec) -> None:
        tasks[spec.name] = spec

    digests = []
    for source in SOURCES:
        parses = []
        for slot in range(ARTICLES_PER_SOURCE):
            fetch_name = f"fetch:{source.name}/{slot}"
            add(
                TaskSpec(
                    name=fetch_name,
                    func=fetch_article,
                    call="threadloom._demo:fetch_article",
                    args=(base_url, source.name, slot),
                    priority=source.priority,
                    retry=FETCH_RETRY,
                    tags=("fetch", source.name),
                )
            )
            parse_name = f"parse:{source.name}/{slot}"
            add(
                TaskSpec(
                    name=parse_name,
                    func=parse_article,
                    call="threadloom._demo:parse_article",
                    depends_on=(fetch_name,),
                    priority=TaskPriority.LOW,
                    results_param="upstream",
                    tags=("parse", source.name),
                )
            )
            parses.append(parse_name)
        digest_name = f"aggregate:{source.name}"
        add(
            TaskSpec(
                name=digest_name,
                func=aggregate_source,
                call="threadloom._demo:aggregate_source",
                args=(source.name, ARTICLES_PER_SOURCE),
                depends_on=tuple(parses),
                priority=TaskPriority.LOW,
                trigger_rule=TriggerRule.ALL_DONE,
                results_param="upstream",
                tags=("aggregate", source.name),
            )
        )
        digests.append(digest_name)
    add(
        TaskSpec(
            name=ROUND_TARGET,
            func=build_report,
            call="threadloom._demo:build_report",
            depends_on=tuple(digests),
            priority=TaskPriority.LOW,
            trigger_rule=TriggerRule.ALL_DONE,
            results_param="upstream",
            tags=("report",),
        )
    )
    add(
        TaskSpec(
            name="feed:fetch",
            func=fetch_feed,
            call="threadloom._demo:fetch_feed",
            args=(base_url,),
            priority=TaskPriority.CRITICAL,
            retry=FETCH_RETRY,
            tags=("feed",),
        )
    )
    add(
        TaskSpec(
            name="feed:alerts",
            func=match_alerts,
            call="threadloom._demo:match_alerts",
            depends_on=("feed:fetch",),
            priority=TaskPriority.CRITICAL,
            results_param="upstream",
            schedule=CronSchedule(feed_cron),
            tags=("feed",),
        )
    )
    return Workflow(source="threadloom demo", name="demo", tasks=tasks)
