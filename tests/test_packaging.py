"""The deployment files stay consistent with the code (Docker itself cannot run on CI machines)."""

from pathlib import Path

import tomllib
import yaml

from vbsearch.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]


def test_compose_file_is_sane():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    qdrant, app = compose["services"]["qdrant"], compose["services"]["app"]
    image, tag = qdrant["image"].split(":")
    assert image == "qdrant/qdrant" and tag.startswith("v") and tag != "latest"
    assert "/readyz" in " ".join(qdrant["healthcheck"]["test"])
    assert "QDRANT__SERVICE__API_KEY" in qdrant["environment"]
    assert any(v.endswith(":/qdrant/storage") for v in qdrant["volumes"])
    assert app["depends_on"]["qdrant"]["condition"] == "service_healthy"
    assert app["environment"]["VBSEARCH_QDRANT_URL"].startswith("http://qdrant:")
    assert app["command"][0] == "vbsearch" and app["command"][1] in {c.name for c in COMMANDS}
    assert (ROOT / app.get("build", ".")).joinpath("Dockerfile").is_file()


def test_compose_api_service_serves_the_same_image():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    app, api = compose["services"]["app"], compose["services"]["api"]
    assert api["build"] == app["build"]
    assert api["depends_on"]["qdrant"]["condition"] == "service_healthy"
    assert api["environment"]["VBSEARCH_QDRANT_URL"] == app["environment"]["VBSEARCH_QDRANT_URL"]
    assert api["environment"]["VBSEARCH_DATA_DIR"] == app["environment"]["VBSEARCH_DATA_DIR"]
    assert "VBSEARCH_API_TOKEN" in api["environment"]
    cmd = api["command"]
    assert cmd[:2] == ["vbsearch", "serve"] and next(c for c in COMMANDS if c.name == "serve").target
    port = cmd[cmd.index("--port") + 1]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"
    assert any(p.endswith(f":{port}:{port}") for p in api["ports"])
    # the index volume is shared, so the service searches what app's index runs write
    assert {v.split(":")[0] for v in app["volumes"]} == {v.split(":")[0] for v in api["volumes"]}


def test_dockerfile_copies_every_package():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]
    dockerfile = (ROOT / "Dockerfile").read_text()
    for pkg in packages:
        assert f"COPY {pkg} {pkg}" in dockerfile, pkg
