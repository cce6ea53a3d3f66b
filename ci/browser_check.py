#!/usr/bin/env python
"""Open every page of the built book in headless Chromium and check what a reader would see.

For each page listed in ``book/_build/book_manifest.json`` (written by ``ci/build_book.py``) the
page is served from ``book/_build/html`` by a local ``http.server`` on 127.0.0.1 and loaded by
Debian's ``chromium`` twice: ``--dump-dom`` (the DOM after the page has loaded and its scripts
ran) and ``--screenshot`` (saved to ``book/_build/screenshots/<page>.png`` for reviewers). The
page passes when

- Chromium loads it and the DOM has the book's article;
- its ``<title>`` and a level-1 heading contain the page's title;
- every ``<img>`` with a local ``src`` resolves to a non-empty, well-formed image file, and the
  article has at least as many such images as the executed notebook has figure outputs
  (an ``<img>`` with an empty ``src`` fails too);
- no output area is an error/traceback output, no stderr output reports an error or a
  traceback, and the page text contains no Python traceback;
- the screenshot is a non-blank PNG.

Without Chromium the check fails, unless ``GECO_ALLOW_NO_BROWSER=1`` is set: then it prints
``SKIP`` and exits 0.

Usage::

    python ci/build_book.py --profile smoke && python ci/browser_check.py
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "book" / "_build"
SKIP_ENV = "GECO_ALLOW_NO_BROWSER"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
    "track", "wbr",
}  # fmt: skip
ERROR_TEXT = re.compile(r"Traceback \(most recent call last\)|\b\w*(Error|Exception)\b")
BADGE_SUFFIX = "colab-badge.svg"


class PageDOM(HTMLParser):
    """What the checks need from a serialized DOM: title, headings, images, output blocks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, set[str]]] = []
        self.title = ""
        self.h1: list[str] = []
        self.images: list[dict] = []
        self.figcaptions: list = []  # text of every <figcaption>
        self.outputs: list[dict] = []  # {"kind": traceback|error|stderr, "text": str}
        self.has_article = False
        self.text: list[str] = []
        self._capture: list[tuple[int, list[str]]] = []  # (stack depth, text sink)
        self._title: list[str] = []

    def _inside(self, predicate) -> bool:
        return any(predicate(tag, classes) for tag, classes in self.stack)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        if tag == "img":
            self.images.append(
                {
                    "src": (attrs.get("src") or "").strip(),
                    "in_article": self._inside(lambda t, c: t == "article" or "bd-article" in c),
                    "in_figure": self._inside(lambda t, c: t == "figure"),
                }
            )
        if tag == "figcaption":
            self._capture.append((len(self.stack) + 1, sink := []))
            self.figcaptions.append(sink)
        if tag == "article" or "bd-article" in classes:
            self.has_article = True
        if tag in VOID:
            return
        self.stack.append((tag, classes))
        depth = len(self.stack)
        if tag == "title" and self._inside(lambda t, c: t == "head") and not self._title:
            self._capture.append((depth, sink := []))
            self._title = sink
        elif tag == "h1":
            self._capture.append((depth, sink := []))
            self.h1.append(sink)  # joined in close()
        if "output" in classes and classes & {"traceback", "error", "stderr"}:
            kind = "stderr" if "stderr" in classes else "traceback"
            self._capture.append((depth, sink := []))
            self.outputs.append({"kind": kind, "text": sink})

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        for i in range(len(self.stack) - 1, -1, -1):  # tolerate unclosed children
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break
        self._capture = [(d, s) for d, s in self._capture if d <= len(self.stack)]

    def handle_data(self, data):
        self.text.append(data)
        for _, sink in self._capture:
            sink.append(data)

    def close(self):
        super().close()
        self.title = " ".join("".join(self._title).split())
        self.h1 = [" ".join("".join(parts).split()) for parts in self.h1]
        for out in self.outputs:
            out["text"] = "".join(out["text"])
        self.figcaptions = [" ".join("".join(parts).split()) for parts in self.figcaptions]
        self.text = "".join(self.text)


def parse_dom(html: str) -> PageDOM:
    dom = PageDOM()
    dom.feed(html)
    dom.close()
    return dom


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of a PNG/JPEG/GIF, (1, 1) for an SVG with an <svg> root; None if broken."""
    data = path.read_bytes()
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        w, h = struct.unpack(">II", data[16:24])
        return (w, h) if w and h else None
    if data[:6] in (b"GIF87a", b"GIF89a"):
        w, h = struct.unpack("<HH", data[6:10])
        return (w, h) if w and h else None
    if data.startswith(b"\xff\xd8"):
        return (1, 1)
    if b"<svg" in data[:2048]:
        return (1, 1)
    return None


def check_page(dom: PageDOM, page: dict, page_url: str, html_dir: Path) -> tuple[list[str], int]:
    """Problems found in one page's DOM, and the number of figures it shows."""
    problems = []
    if not dom.has_article:
        problems.append("the DOM has no article: the page did not load as a book page")
    title = page["title"]
    if title not in dom.title:
        problems.append(f"<title> is {dom.title!r}, expected it to contain {title!r}")
    if not any(title in h for h in dom.h1):
        problems.append(f"no <h1> contains {title!r} (h1: {dom.h1})")
    shown = 0
    for img in dom.images:
        src = img["src"]
        if not src:
            problems.append("an <img> has an empty src")
            continue
        if src.startswith("data:"):
            shown += img["in_article"]
            if img["in_article"] and not img["in_figure"]:
                problems.append("an output figure is shown without a <figure>/<figcaption>")
            continue
        url = urlparse(urljoin(page_url, src))
        if url.hostname not in ("127.0.0.1", "localhost"):
            problems.append(f"<img> {src} is not part of the book (it needs a network)")
            continue
        path = (html_dir / unquote(url.path).lstrip("/")).resolve()
        if not path.is_file() or path.stat().st_size == 0:
            problems.append(f"<img> {src} does not resolve to a file ({path})")
        elif image_size(path) is None:
            problems.append(f"<img> {src} is not a well-formed image ({path})")
        elif img["in_article"] and not src.endswith(BADGE_SUFFIX):
            shown += 1
    captions = [c for c in dom.figcaptions if len(c) >= 20]
    if len(captions) < page.get("figures", 0):
        problems.append(f"{len(captions)} figure caption(s), the executed notebook has "
                        f"{page['figures']} figure(s): every figure needs a <figcaption>")
    if shown < page.get("figures", 0):
        problems.append(f"{shown} figure(s) shown, the executed notebook has {page['figures']}")
    for out in dom.outputs:
        first = next((ln for ln in out["text"].splitlines() if ln.strip()), "")[:120]
        if out["kind"] != "stderr":
            problems.append(f"an error output is shown: {first!r}")
        elif match := ERROR_TEXT.search(out["text"]):
            problems.append(f"a stderr output reports {match.group(0)!r}: {first!r}")
    if "Traceback (most recent call last)" in dom.text:
        problems.append("the page shows a Python traceback")
    return problems, shown


def chromium_candidates(explicit: str | None) -> list[str]:
    """``--chromium``, else ``$CHROMIUM``, else the usual names (an explicit choice is final)."""
    chosen = explicit or os.environ.get("CHROMIUM")
    return [chosen] if chosen else list(CHROMIUM_CANDIDATES)


def find_chromium(candidates: list[str]) -> str | None:
    for candidate in candidates:
        if found := shutil.which(candidate):
            return found
    return None


def run_chromium(chromium: str, args: list[str], timeout_s: float) -> tuple[int, str, str]:
    """Run Chromium with a throw-away profile; returns (status, stdout, stderr)."""
    with tempfile.TemporaryDirectory(prefix="geco-chromium-") as profile:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            return 124, out, err + f"\n(chromium timed out after {timeout_s:.0f} s)"
        return proc.returncode, out, err


def screenshot_is_blank(path: Path) -> bool:
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    return float(pixels[..., :3].std()) < 1e-3


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Chromium closes its connections as soon as it has the page (e.g. mid favicon.ico).
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def serve(html_dir: Path) -> tuple[ThreadingHTTPServer, str]:
    handler = functools.partial(_QuietHandler, directory=str(html_dir))
    server = _QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", type=Path, default=BUILD / "book_manifest.json")
    parser.add_argument("--screenshots", type=Path, default=BUILD / "screenshots")
    parser.add_argument(
        "--chromium", default=None, help="browser binary (default: $CHROMIUM, else chromium)"
    )
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds per browser run")
    parser.add_argument(
        "--window", default="1280,3000", help="screenshot window WIDTH,HEIGHT (default 1280,3000)"
    )
    args = parser.parse_args(argv)

    candidates = chromium_candidates(args.chromium)
    chromium = find_chromium(candidates)
    if chromium is None:
        searched = ", ".join(candidates)
        message = (
            f"no Chromium found (searched {searched}); install Debian's package "
            "(`apt-get install chromium`, done by `bash ci/setup.sh` when run as root)"
        )
        if os.environ.get(SKIP_ENV) == "1":
            print(f"browser_check: SKIP {message} ({SKIP_ENV}=1)")
            return 0
        print(f"browser_check: ERROR {message}; set {SKIP_ENV}=1 to skip", file=sys.stderr)
        return 1
    if not args.manifest.is_file():
        print(
            f"browser_check: ERROR no {args.manifest}; build the book first "
            "(python ci/build_book.py --profile cpu)",
            file=sys.stderr,
        )
        return 1
    manifest = json.loads(args.manifest.read_text())
    html_dir = Path(manifest["html_dir"])
    args.screenshots.mkdir(parents=True, exist_ok=True)
    server, root = serve(html_dir)
    print(f"browser_check: {chromium}, {len(manifest['pages'])} page(s) from {root}")
    failures = 0
    try:
        for page in manifest["pages"]:
            start = time.perf_counter()
            url = urljoin(root, page["html"])
            shot = args.screenshots / (page["docname"].replace("/", "__") + ".png")
            shot.unlink(missing_ok=True)
            status, dom_html, err = run_chromium(chromium, ["--dump-dom", url], args.timeout)
            if status != 0 or "<html" not in dom_html:
                problems, shown = [f"chromium could not load the page (status {status})"], 0
                problems.append(err.strip().splitlines()[-1] if err.strip() else "no stderr")
            else:
                problems, shown = check_page(parse_dom(dom_html), page, url, html_dir)
            status, _, err = run_chromium(
                chromium,
                [f"--window-size={args.window}", "--virtual-time-budget=10000",
                 f"--screenshot={shot}", url],
                args.timeout,
            )  # fmt: skip
            if status != 0 or not shot.is_file():
                problems.append(f"no screenshot (chromium status {status})")
            elif image_size(shot) is None or screenshot_is_blank(shot):
                problems.append(f"the screenshot {shot} is blank or broken")
            wall = time.perf_counter() - start
            verdict = "ok  " if not problems else "FAIL"
            print(
                f"  {verdict} {page['html']:<32s} {shown} figure(s) "
                f"(>= {page.get('figures', 0)} expected)  {wall:5.1f} s  {shot.name}",
                flush=True,
            )
            for problem in problems:
                print(f"       - {problem}", flush=True)
            failures += bool(problems)
    finally:
        server.shutdown()
        server.server_close()
    if failures:
        print(f"browser_check: {failures} page(s) FAILED", file=sys.stderr)
        return 1
    print(
        f"browser_check: all {len(manifest['pages'])} page(s) ok; screenshots in {args.screenshots}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
