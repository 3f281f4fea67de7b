"""Reports: the pieces (outlier fences, crash files, metric rows) and the pages of a real ds-xa30 run
opened in headless Chromium (Selenium, the system chromedriver).

Browser rule: when Chromium, its driver or selenium is missing the browser tests FAIL when running
as root or in CI (``CI`` set: ``.ci/run`` installs them with apt-get) and are skipped only on a
developer's machine without root."""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bids_boldsr.reports import collect, group_page
from bids_boldsr.reports.participant import build_participant_report, fmt, metric_rows

RUN = "sub-01_task-fa_run-1"


def real_crash(log_dir: Path) -> Path:
    """A crash file written by Nipype itself (a node whose function raises), in ``log_dir``."""
    from nipype.interfaces.utility import Function
    from nipype.pipeline import engine as pe

    def boom(x):
        raise ValueError(f"synthetic failure for the report test ({x})")

    import tempfile

    wf = pe.Workflow(name="sub_02_wf", base_dir=tempfile.mkdtemp(prefix="crashwork"))
    wf.add_nodes([pe.Node(Function(["x"], ["y"], boom), name="super_resolve")])
    wf.get_node("super_resolve").inputs.x = 1
    wf.config["execution"].update({"crashdump_dir": str(log_dir), "crashfile_format": "txt"})
    try:
        with pytest.raises(RuntimeError):
            wf.run(plugin="Linear")
    finally:
        shutil.rmtree(wf.base_dir, ignore_errors=True)
    (crash,) = log_dir.glob("crash-*.txt")
    return crash


def test_tukey_flags_the_outlier():
    table = pd.DataFrame({"subject": [f"{i:02d}" for i in range(1, 7)],
                          "run": [f"sub-{i:02d}_task-{'rest' if i < 4 else 'nback'}" for i in range(1, 7)],
                          "fd_mean": [0.10, 0.12, 0.11, 0.13, 0.09, 0.95]})
    lo, hi = group_page.tukey(table["fd_mean"].to_numpy())
    assert lo < 0.09 and 0.13 < hi < 0.95
    (strip,) = group_page.strips(table)
    flagged = [p["run"] for p in strip["points"] if p["outlier"]]
    assert flagged == ["sub-06_task-nback"] and strip["n_outliers"] == 1
    assert {p["href"] for p in strip["points"]} == {f"sub-{i:02d}.html#{r}" for i, r in
                                                     zip(range(1, 7), table["run"])}
    assert [p["task"] for p in strip["points"]][:3] == ["rest"] * 3
    assert len(strip["fences"]) == 2 and strip["fences"][0] < strip["points"][4]["x"] < strip["fences"][1]


def test_metric_rows_and_format():
    qc = {"dice_brain_mask_A": 0.71234, "dice_brain_mask_whole_A": 0.5, "brain_coverage_A": 1.0,
          "fd_mean": float("nan"), "fd_max": 0.4, "tsnr_sr": 80.8364, "sr_voxel_size": [1.6875, 1.6875, 1.7]}
    reg = {r["key"]: r["text"] for r in metric_rows(qc, "reg")}
    assert reg == {"dice_brain_mask_A": "0.7123", "dice_brain_mask_whole_A": "0.5", "brain_coverage_A": "1",
                   "fd_max": "0.4"}  # NaN rows are left out
    sr = {r["key"]: r["text"] for r in metric_rows(qc, "sr")}
    assert sr == {"tsnr_sr": "80.84", "sr_voxel_size": "1.688 x 1.688 x 1.7"}
    assert fmt(3) == "3" and fmt(float("nan")) == "n/a"


def test_failed_participant_page_lists_the_crash(tmp_path):
    """No QC table (the run failed): the page still renders, with the crash's node and message."""
    out = tmp_path / "out"
    crash = real_crash(out / "sub-02" / "log" / "20260101-000000_abcd")
    info = collect.parse_crash(crash)
    assert info["node"].endswith("super_resolve")
    assert "synthetic failure for the report test (1)" in info["message"]
    page = build_participant_report(out, "02", bids_dir=None, cache_dir=tmp_path / "cache").read_text()
    assert "synthetic failure for the report test (1)" in page and 'id="no-errors"' not in page
    assert crash.relative_to(out).as_posix() in page  # a relative link to the crash file


def test_participant_page_shows_the_processing_timeline(tmp_path):
    """A run's profile.tsv becomes the Profile section: the timeline image (one bar per timed step)
    and the slowest steps, slowest first, with the totals from profile.json."""
    import re

    from bids_boldsr.profile import COLUMNS
    from bids_boldsr.reports.fig_profile import timeline

    out = tmp_path / "out"
    log = out / "sub-03" / "log" / "20260102-000000_beef"
    log.mkdir(parents=True)
    steps = [("wf.t1w_nonlinear", "t1w_nonlinear", 0.5, 98.3, "computed"), ("wf.coreg", "coreg", 1.0, 60.2, "computed"),
             ("wf.hmc", "hmc", 61.0, 76.1, "computed"), ("wf.ds_bold", "ds_bold", 99.0, 99.0, "computed"),
             ("wf.boldref", "boldref", 0.2, 0.9, "reused")]
    rows = ["\t".join(COLUMNS)] + [f"{n}\t{st}\t{a}\t{b}\t{b - a:.2f}\t{(b - a) * 0.98:.2f}\t0.98\t0.6\t{status}"
                                   for n, st, a, b, status in steps]
    (log / "profile.tsv").write_text("\n".join(rows) + "\n")
    (log / "profile.json").write_text(json.dumps({"wall_s": 99.0, "cpu_s": 170.4, "peak_total_rss_gb": 2.1,
                                                  "machine": {"cpus": 2, "gpu": None}}))
    page = build_participant_report(out, "03", bids_dir=None, cache_dir=tmp_path / "cache").read_text()
    assert 'id="profile"' in page and 'href="#profile"' in page and "170.4 CPU s" in page
    img = re.search(r'id="profile-timeline" src="([^"]+)"', page).group(1)
    assert (out / img).stat().st_size > 5000
    table = page[page.index('id="profile-slowest"'):]
    order = [table.index(f"<td title=\"wf.{st}\">") for st in ("t1w_nonlinear", "coreg", "hmc")]
    assert order == sorted(order)  # slowest first
    with pytest.raises(ValueError, match="no timed steps"):
        timeline([{"start_s": "n/a", "wall_s": "n/a"}], tmp_path / "empty.png")


# ---------------------------------------------------------------- browser


def _must_have_browser() -> bool:
    return bool(os.environ.get("CI")) or os.geteuid() == 0


def _browser():
    """Headless Chromium through the system chromedriver; requests recorded in the performance log."""
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    missing = [what for what, ok in (("chromium-driver", Path(driver_path).exists()),
                                     ("chromium", bool(shutil.which("chromium") or shutil.which("chromium-browser"))))
               if not ok]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install -e '.[test]')")
    if missing:
        msg = f"browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if _must_have_browser():
            pytest.fail(msg)
        pytest.skip(msg)
    opts = webdriver.ChromeOptions()
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps", "--no-first-run",
                "--disable-extensions", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(driver_path), options=opts)


@pytest.fixture(scope="module")
def browser():
    driver = _browser()
    yield driver
    driver.quit()


def _requested_urls(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def _check_media_loads(driver):
    """Every <img> decoded (naturalWidth > 0) and every <object>'s SVG loads as an image."""
    imgs = driver.execute_script(
        "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
    assert imgs and all(ok and width > 0 for _, ok, width in imgs), [i for i in imgs if not i[2]]
    objects = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const objs = Array.from(document.querySelectorAll('object'));
        Promise.all(objs.map(o => new Promise(res => { const im = new Image();
            im.onload = () => res([o.getAttribute('data'), im.naturalWidth]);
            im.onerror = () => res([o.getAttribute('data'), 0]); im.src = o.data; }))).then(done);""")
    assert all(width > 0 for _, width in objects), objects
    return imgs, objects


def _shown(value_text: str, expected) -> bool:
    if isinstance(expected, str):
        expected = json.loads(expected) if expected.startswith("[") else expected
    if isinstance(expected, list):
        return [float(v) for v in value_text.split(" x ")] == pytest.approx(expected, rel=1e-3)
    return float(value_text) == pytest.approx(float(expected), rel=1e-3, abs=1e-12)


def test_participant_report_in_browser(xa30_run, browser, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    _, out, _, _ = xa30_run
    page = out / "sub-01.html"
    browser.get_log("performance")  # drop what came before
    browser.get(page.as_uri())
    imgs, objects = _check_media_loads(browser)
    srcs = [s for s, _, _ in imgs] + [d for d, _ in objects]
    assert all(s.startswith("sub-01/figures/") for s in srcs), srcs  # relative, in the figures folder
    for suffix in ("-sr", "-reg", "-carpet", "-cb"):
        assert browser.find_element(By.ID, RUN + suffix).is_displayed()
    titles = [h.text for h in browser.find_elements(By.CSS_SELECTOR, f"section[id^='{RUN}-'] h3")]
    assert titles == ["Super-resolution", "Registration", "Carpet plot", "Cerebellum"]
    assert browser.find_element(By.ID, "no-errors").text == "No errors to report."
    methods = browser.find_element(By.ID, "methods").text
    assert "super-resolved" in methods and "Power JD" in methods and "bids-boldsr (processing)" in methods
    nav = [a.get_attribute("href").split("#")[1] for a in browser.find_elements(By.CSS_SELECTOR, "nav a")]
    assert nav == ["summary", RUN, "profile", "errors", "methods"]
    # the Profile section: the timeline loaded, its slowest step is profile.tsv's
    timeline = browser.find_element(By.ID, "profile-timeline")
    assert timeline.is_displayed() and int(timeline.get_attribute("naturalWidth")) > 300
    from bids_boldsr.profile import read_profile
    tsv = sorted((out / "sub-01" / "log").glob("*/profile.tsv"), key=lambda p: p.stat().st_mtime)[-1]
    slowest = max(read_profile(tsv), key=lambda r: float(r["wall_s"]) if r["wall_s"] != "n/a" else 0)
    first = browser.find_elements(By.CSS_SELECTOR, "#profile-slowest td")[0]
    assert first.text == slowest["stage"] and first.get_attribute("title") == slowest["node"]
    # the flickers: 4 pairs (SR, SR inset, coregistration, normalisation); hovering shows "before"
    flickers = browser.find_elements(By.CSS_SELECTOR, ".flicker")
    assert len(flickers) == 4
    after = flickers[0].find_element(By.CSS_SELECTOR, "img.after")
    assert after.value_of_css_property("visibility") == "visible"
    ActionChains(browser).move_to_element(flickers[0]).perform()
    assert after.value_of_css_property("visibility") == "hidden"
    # every number shown equals the QC table
    qc = pd.read_csv(out / "sub-01" / "sub-01_qc.tsv", sep="\t", na_values="n/a").iloc[0].to_dict()
    cells = {c.get_attribute("data-metric"): c.text for c in browser.find_elements(By.CSS_SELECTOR, "td[data-metric]")}
    assert {"tsnr_input", "tsnr_sr", "fd_mean", "dice_brain_mask_MNI152NLin2009aSym",
            "template_warp_jacobian_negative_fraction", "cerebellum_volume_ml"} <= set(cells)
    bad = {k: (v, qc[k]) for k, v in cells.items() if not _shown(v, qc[k])}
    assert not bad
    lobules = pd.read_csv(out / "sub-01/func" / f"{RUN}_desc-cerebellum_morph.tsv", sep="\t")
    html = page.read_text()
    assert f">{fmt(float(lobules['volume_mm3'].iloc[0]))}<" in html
    requests = _requested_urls(browser)
    assert requests and all(u.startswith(("file://", "data:")) for u in requests), requests
    shot = tmp_path / "participant.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_group_report_in_browser(xa30_run, browser, tmp_path):
    """Two participants from QC files only: sub-01 of the real run, and sub-02 whose QC row is sub-01's
    relabelled (task 'rest', FD x4) and whose run crashed (a real Nipype crash file)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from bids_boldsr.cli.run import main

    ds, out, work, _ = xa30_run
    grp = tmp_path / "group"
    (grp / "sub-01").mkdir(parents=True)
    shutil.copy(out / "sub-01" / "sub-01_qc.tsv", grp / "sub-01")
    shutil.copy(out / "sub-01.html", grp)
    (grp / "sub-01" / "figures").symlink_to(out / "sub-01" / "figures")
    row = pd.read_csv(out / "sub-01" / "sub-01_qc.tsv", sep="\t", dtype={"subject": str})
    row["subject"], row["run"], row["fd_mean"] = "02", "sub-02_task-rest_run-1", row["fd_mean"] * 4
    (grp / "sub-02").mkdir()
    row.to_csv(grp / "sub-02" / "sub-02_qc.tsv", sep="\t", index=False)
    real_crash(grp / "sub-02" / "log" / "20260101-000000_abcd")
    assert main([str(ds), str(grp), "group", "-w", str(work)]) == 0
    table = pd.read_csv(grp / "group_bold.tsv", sep="\t", dtype={"subject": str})
    assert list(table["subject"]) == ["01", "02"]

    browser.get_log("performance")
    browser.get((grp / "group_report.html").as_uri())
    assert not browser.find_elements(By.CSS_SELECTOR, "img, object")  # inline SVG only
    numeric = [c for c in table.columns if c not in group_page.SKIP and table[c].dtype.kind in "if"
               and table[c].notna().any()]
    strips = browser.find_elements(By.CSS_SELECTOR, ".strip")
    assert [s.get_attribute("id").removeprefix("strip-") for s in strips] == numeric
    links = {a.get_dom_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, ".strip a")}
    assert links == {"sub-01.html#sub-01_task-fa_run-1", "sub-02.html#sub-02_task-rest_run-1"}
    for tr in browser.find_elements(By.CSS_SELECTOR, "tr.qc-row"):
        rec = table.set_index("run").loc[tr.get_attribute("data-run")]
        for td in tr.find_elements(By.CSS_SELECTOR, "td[data-metric]"):
            key, text = td.get_attribute("data-metric"), td.text
            if isinstance(rec[key], float) and math.isnan(rec[key]):
                assert text == "n/a"
            elif text not in (str(rec[key]),):
                assert _shown(text, rec[key]), (key, text, rec[key])
    failures = browser.find_element(By.ID, "failures").text
    assert "sub-02" in failures and "synthetic failure for the report test (1)" in failures
    Select(browser.find_element(By.ID, "task-filter")).select_by_value("rest")
    rows = {tr.get_attribute("data-run"): tr.is_displayed() for tr in browser.find_elements(By.CSS_SELECTOR, "tr.qc-row")}
    assert rows == {"sub-01_task-fa_run-1": False, "sub-02_task-rest_run-1": True}
    Select(browser.find_element(By.ID, "task-filter")).select_by_value("")
    requests = _requested_urls(browser)
    assert requests and all(u.startswith(("file://", "data:")) for u in requests), requests
    shot = tmp_path / "group.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    # a point opens the participant's report
    browser.find_element(By.CSS_SELECTOR, "#strip-fd_mean a[href^='sub-01.html']").click()
    assert browser.current_url.endswith("sub-01.html#sub-01_task-fa_run-1")
    _check_media_loads(browser)


def test_reports_only_rebuilds_from_disk(xa30_run, tmp_path):
    """--reports-only on a copy of the outputs: the page and its figures come back, nothing in the
    work directory is touched (no step recomputed), and the numbers are those of the QC table."""
    import time

    from bids_boldsr.cli.run import main

    ds, out, work, _ = xa30_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy, symlinks=True)
    (copy / "sub-01.html").unlink()
    shutil.rmtree(copy / "sub-01" / "figures")
    wf_dir = next(work.glob("bids_boldsr_*_wf"))
    before = max(p.stat().st_mtime for p in wf_dir.rglob("*"))
    t0 = time.time()
    assert main([str(ds), str(copy), "participant", "--reports-only", "-w", str(work)]) == 0
    assert max(p.stat().st_mtime for p in wf_dir.rglob("*")) == before
    page = (copy / "sub-01.html").read_text()
    figures = sorted(p.name for p in (copy / "sub-01" / "figures").iterdir())
    assert f"{RUN}_desc-srafter_bold.png" in figures and f"{RUN}_desc-carpet_bold.png" in figures
    assert all(f"sub-01/figures/{name}" in page for name in figures)
    qc = pd.read_csv(copy / "sub-01" / "sub-01_qc.tsv", sep="\t").iloc[0]
    assert f'data-metric="tsnr_sr">{fmt(float(qc["tsnr_sr"]))}<' in page
    assert time.time() - t0 < 180
    assert main([str(ds), str(copy), "group", "--reports-only", "-w", str(work)]) == 0
    assert (copy / "group_report.html").is_file() and (copy / "group_bold.tsv").is_file()
