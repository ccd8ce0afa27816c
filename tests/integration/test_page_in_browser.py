"""The leaderboard page as a person sees it: the smoke search's index.html opened in headless
Chromium (Debian's `chromium`, installed by .ci/run) at a laptop's 1366 px. Every image loads,
nothing makes the page scroll sideways, the headline names the top row with its interval, and the
main table holds no raw field names or fractions. The screenshot is kept in test-artifacts/."""

import json
import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

BROWSER = next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")
                if shutil.which(name)), None)
WIDTH = 1366
# Run in the page once it has loaded (images included): what the test checks, as JSON in a <pre>.
CHECK = """<script>
window.addEventListener('load', () => {
  const width = document.documentElement.clientWidth;
  const visible = e => !e.closest('details:not([open])') && !e.closest('.wide');
  const result = {
    width: width,
    scrollWidth: document.documentElement.scrollWidth,
    images: [...document.images].map(i => ({src: i.getAttribute('src'), loaded: i.complete && i.naturalWidth > 0})),
    overflowing: [...document.body.querySelectorAll('*')].filter(e => visible(e)
        && e.getBoundingClientRect().right > width + 1).map(e => e.tagName + ' ' + e.textContent.slice(0, 40)),
    headline: document.getElementById('headline').textContent,
    mainTable: document.querySelector('h2 + table').innerText,
    firstRow: document.querySelector('h2 + table tbody tr').innerText,
  };
  const out = document.createElement('pre');
  out.id = 'check';
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


def browser(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--window-size={WIDTH},900", "--virtual-time-budget=10000", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(BROWSER is None, reason="no headless Chromium installed (Debian: apt-get install chromium)")
def test_the_leaderboard_page_reads_at_a_glance_in_a_real_browser(smoke_run, tmp_path):
    run_dir = smoke_run[0]
    page_dir = tmp_path / "leaderboard"
    shutil.copytree(run_dir / "leaderboard", page_dir)
    page = (page_dir / "index.html").read_text()
    (page_dir / "check.html").write_text(page.replace("</body>", CHECK + "</body>"))
    dom = browser("--dump-dom", (page_dir / "check.html").as_uri())
    found = re.search(r'<pre id="check">(.*?)</pre>', dom.stdout, re.S)
    assert found, dom.stdout[-2000:] + dom.stderr[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                        .replace("&gt;", ">"))

    assert result["width"] == WIDTH and result["scrollWidth"] <= WIDTH, result
    assert not result["overflowing"], result["overflowing"]
    assert len(result["images"]) >= 5 and all(image["loaded"] for image in result["images"]), result["images"]
    sources = {image["src"] for image in result["images"]}
    assert {"search_progress.png", "best_so_far.png"} <= sources

    board = json.loads((run_dir / "leaderboard" / "leaderboard.json").read_text())
    top = board[0]
    assert f"trial {top['trial']}" in result["headline"] and top["trial"] in result["firstRow"]
    assert f"{100 * top['test_macro_f1']:.2f} ({100 * top['test_macro_f1_low']:.1f}-" in result["headline"]
    assert "python -m results.export" in result["headline"]
    for raw in ("selection_metric", "val_score", "constant_prediction", "test_f1_low"):
        assert raw not in result["mainTable"], raw
    cells = [cell.strip() for line in result["mainTable"].splitlines() for cell in line.split("\t")]
    assert "False" not in cells and "True" not in cells  # the constant mark only where it applies
    assert not [cell for cell in cells if re.fullmatch(r"[01]\.\d{4,}", cell)], cells  # percents, not fractions (p: 3 digits)

    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "leaderboard-1366.png"
    browser(f"--screenshot={shot}", (page_dir / "index.html").as_uri())
    assert shot.stat().st_size > 10_000
