"""Optional download of real PrimeKG; only the rule the user switches on with explicit URLs calls it."""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

from emerge_ehr.kg.schema import EDGE_SCHEMA, KGError

CHUNK = 1 << 20


def _header(path: Path) -> list[str]:
    """The CSV header's column names, enough to catch an HTML error page or a wrong file."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        return [name.strip().strip('"') for name in handle.readline().rstrip("\r\n").split(",")]


def _fetch(url: str, target: Path, required: tuple[str, ...], timeout: float) -> None:
    """Download url to a temp file, check its header, then rename, so a failed download leaves nothing."""
    tmp = target.with_name(f".{target.name}.part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            shutil.copyfileobj(response, out, CHUNK)
        missing = [name for name in required if name not in _header(tmp)]
        if missing:
            raise KGError(f"{target.name} downloaded from {url}: missing column(s) {missing}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def download_primekg(url_kg: str, url_disease_features: str, out_dir: str | Path, timeout: float = 60) -> None:
    """Fetch PrimeKG's kg.csv and disease_features.csv into out_dir for build_primekg."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _fetch(url_kg, out_dir / "kg.csv", tuple(EDGE_SCHEMA), timeout)
    _fetch(url_disease_features, out_dir / "disease_features.csv", ("node_index",), timeout)
