"""The ``/app`` router: the page, its assets, and what it refuses to serve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI

from adapters.serial.observation import device_resource_id
from console import build_console_router
from console.router import CSP, STATIC_DIR, asset_table, public_paths
from tests.support.asgi import AsgiClient


@pytest.fixture
def client() -> AsgiClient:
    app = FastAPI()
    app.include_router(build_console_router())
    return AsgiClient(app)


def test_app_redirects_to_the_page(client: AsgiClient) -> None:
    response = client.get("/app", follow_redirects=False)
    assert response.status_code == 308
    assert response.headers["location"] == "/app/"


def test_page_is_html_with_a_strict_csp(client: AsgiClient) -> None:
    response = client.get("/app/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CSP
    assert "default-src 'none'" in CSP and "script-src 'self'" in CSP
    assert '<script type="module" src="static/js/main.js">' in response.text
    assert '<html lang="en">' in response.text


@pytest.mark.parametrize(
    ("path", "media"),
    [
        ("js/main.js", "text/javascript"),
        ("css/console.css", "text/css"),
    ],
)
def test_assets_have_their_media_type(client: AsgiClient, path: str, media: str) -> None:
    response = client.get(f"/app/static/{path}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media)
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path",
    [
        "nope.js",
        "%2e%2e/router.py",
        "..%2Frouter.py",
        "js/../../router.py",
        "/etc/passwd",
        "%2Fetc%2Fpasswd",
    ],
)
def test_only_listed_assets_are_served(client: AsgiClient, path: str) -> None:
    response = client.get(f"/app/static/{path}")
    assert response.status_code == 404
    assert "import" not in response.text


def test_asset_table_lists_files_only_under_the_root(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.js").write_text("1")
    (tmp_path / ".hidden").write_text("secret")
    assert asset_table(tmp_path) == {"a/x.js": tmp_path / "a" / "x.js"}


def test_router_refuses_a_static_dir_without_the_page(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        build_console_router(tmp_path)


def test_device_id_is_the_one_readings_reference(client: AsgiClient) -> None:
    body = client.get("/app/device-id/demo-icu-monitor-1").json()
    assert body == {
        "device_id": "demo-icu-monitor-1",
        "id": device_resource_id("demo-icu-monitor-1"),
    }


def test_vitals_json_is_served(client: AsgiClient) -> None:
    panels = client.get("/app/vitals.json").json()["panels"]
    assert [p["key"] for p in panels][:2] == ["hr", "spo2"]


# --- the assets themselves: every reference resolves, nothing is fetched from elsewhere

ASSETS = asset_table(STATIC_DIR)
TEXT_ASSETS = {k: v.read_text("utf-8") for k, v in ASSETS.items() if v.suffix != ".png"}
REMOTE = re.compile(
    r"""(?:src|href)\s*=\s*["']\s*(?:https?:)?//"""
    r"""|url\(\s*["']?\s*(?:https?:)?//"""
    r"""|(?:from|import)\s*\(?\s*["'](?:https?:)?//"""
    r"""|fetch\(\s*["'`](?:https?:)?//""",
    re.IGNORECASE,
)


@pytest.mark.parametrize("name", sorted(TEXT_ASSETS))
def test_no_asset_loads_anything_remote(name: str) -> None:
    assert not REMOTE.search(TEXT_ASSETS[name]), name


@pytest.mark.parametrize("name", sorted(n for n in TEXT_ASSETS if n.endswith(".js")))
def test_every_module_import_resolves_to_an_asset(name: str) -> None:
    imports = re.findall(r"""^import .*? from "([^"]+)";""", TEXT_ASSETS[name], re.M | re.S)
    for spec in imports:
        assert spec.startswith("./"), f"{name} imports {spec}: only local modules"
        target = (Path(name).parent / spec).as_posix().replace("/./", "/")
        assert target in ASSETS, f"{name} imports {spec}, which is not an asset"


def test_every_module_is_reachable_from_main() -> None:
    seen: set[str] = set()
    todo = ["js/main.js"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for spec in re.findall(r"""from "\./([^"]+)";""", TEXT_ASSETS[name]):
            todo.append(f"js/{spec}")
    assert seen == {n for n in ASSETS if n.endswith(".js")}


def test_page_references_exist() -> None:
    page = TEXT_ASSETS["index.html"]
    for ref in re.findall(r"""(?:src|href)="static/([^"]+)\"""", page):
        assert ref in ASSETS, ref


def test_page_preloads_every_module() -> None:
    # The first view must not wait for an import waterfall (bench/console.py): a module
    # added without its modulepreload link would bring one back.
    page = TEXT_ASSETS["index.html"]
    preloaded = set(re.findall(r'<link rel="modulepreload" href="static/(js/[^"]+)">', page))
    modules = {name for name in ASSETS if name.endswith(".js")} - {"js/main.js"}
    assert preloaded == modules


def test_public_paths_are_the_page_its_assets_and_the_sign_in_options_only() -> None:
    paths = public_paths()
    assert {"/app", "/app/", "/app/static/js/main.js", "/app/static/index.html"} <= paths
    assert "/app/sign-in/options" in paths  # which sign-in is offered: no data
    assert len(paths) == len(ASSETS) + 3
    assert "/app/vitals.json" not in paths
    assert not any(p.startswith("/app/device-id") for p in paths)
    assert all(p == "/app" or p.startswith("/app/") for p in paths)
