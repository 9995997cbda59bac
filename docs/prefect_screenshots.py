"""The README's screenshots of Prefect's UI, from a real run: `python docs/prefect_screenshots.py`.

Run it after `make demo`, from the project folder (it uses the demo's model, as articlegen.toml
records it). It copies the demo's database to a temporary folder, imports a few new prompts
into the copy (one of them too long for the model, so the run shows how failures look), starts a
Prefect server and `articlegen serve` on loopback, runs the generate-articles deployment, and
with the system's Chromium (driven by Playwright) saves the custom-run form and the run's
artifacts into docs/ (prefect-form.png, -run, -artifacts and -summary); then it
submits the form as it stands and reports the run that started.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DOCS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
PROMPTS = (
    "topic,preset,max_new_tokens,prompt\n"
    "Night trains are back,nucleus,60,\n"
    "Heat pumps in old houses,precise,60,\n"
    "A winter garden,creative,60,\n"
    f"A prompt longer than the model's context,nucleus,60,{'word ' * 400}\n"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(url: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"{url} did not answer in {seconds:.0f} s")


def main(source: Path = Path("articlegen.db")) -> None:
    if not source.exists():
        sys.exit(f"{source} does not exist: run `make demo` first")
    work = Path(tempfile.mkdtemp(prefix="articlegen-prefect-shots-"))
    shutil.copy(source, work / "articles.db")
    (work / "new.csv").write_text(PROMPTS, encoding="utf-8")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(work / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_UI_API_URL": api,
        "PREFECT_API_URL": api,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "ARTICLEGEN_DATABASE_URL": f"sqlite:///{work / 'articles.db'}",
        "ARTICLEGEN_WEB_URL": "http://127.0.0.1:8000",
    }
    os.environ.update(env)  # for the Prefect client below, before Prefect is imported
    server = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    serve = None
    try:
        _wait_for(f"{api}/health")
        subprocess.run(
            [str(BIN / "articlegen"), "import", str(work / "new.csv")], env=env, check=True
        )
        serve = subprocess.Popen(
            [str(BIN / "articlegen"), "serve"], env=env, start_new_session=True
        )
        _shoot(api, f"http://127.0.0.1:{port}")
    finally:
        for process in (serve, server):
            if process is not None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)
    print(
        "wrote " + ", ".join(str(DOCS / f"prefect-{n}.png") for n in ("form", "run", "artifacts"))
    )


def _shoot(api: str, ui: str) -> None:
    from playwright.sync_api import sync_playwright
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    deadline = time.monotonic() + 120
    deployment = None
    while deployment is None and time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            found = [d for d in client.read_deployments() if d.name == "articlegen"]
            flows = {d.id: client.read_flow(d.flow_id).name for d in found}
        deployment = next((d for d in found if flows[d.id] == "generate-articles"), None)
        time.sleep(1)
    if deployment is None:
        sys.exit("articlegen serve did not register its deployments")
    run = run_deployment(
        "generate-articles/articlegen", parameters={"temperature": "0.8"}, timeout=600
    )
    assert isinstance(run, FlowRun)
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        # Tall: Prefect's pages scroll inside their own frame, which a full-page shot misses.
        page = browser.new_page(viewport={"width": 1280, "height": 2300})
        page.goto(f"{ui}/deployments/deployment/{deployment.id}/run")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=DOCS / "prefect-form.png")
        page.goto(f"{ui}/runs/flow-run/{run.id}")
        page.wait_for_load_state("networkidle")
        time.sleep(2)
        page.screenshot(path=DOCS / "prefect-run.png")  # its state and its log
        page.set_viewport_size({"width": 1280, "height": 1100})  # the cards need less
        page.get_by_text("Artifacts", exact=True).first.click()
        page.wait_for_load_state("networkidle")
        time.sleep(2)
        page.screenshot(path=DOCS / "prefect-artifacts.png")
        page.get_by_text("-summary", exact=False).first.click()
        page.wait_for_load_state("networkidle")
        time.sleep(2)
        page.screenshot(path=DOCS / "prefect-summary.png")
        # The form, submitted as a person would: one field set, every other left as it is.
        page.goto(f"{ui}/deployments/deployment/{deployment.id}/run")
        page.wait_for_load_state("networkidle")
        with get_client(sync_client=True) as client:
            before = {r.id for r in client.read_flow_runs()}
        page.get_by_role("button", name="Submit").click()
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:  # until the form's run exists and has ended
            with get_client(sync_client=True) as client:
                new = [r for r in client.read_flow_runs() if r.id not in before]
            if new and new[0].state is not None and new[0].state.is_final():
                break
            time.sleep(2)
        browser.close()
    if not new:
        sys.exit("submitting the form started no run")
    latest = new[0]
    state = latest.state.name if latest.state else "unknown"
    print(f"the form's run {latest.name}: parameters {latest.parameters}, ended {state}")


if __name__ == "__main__":
    main()
