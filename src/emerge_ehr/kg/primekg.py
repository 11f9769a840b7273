"""Real PrimeKG (Chandak et al., 2023) from a folder holding its kg.csv and disease_features.csv.

kg.csv has ~8.1M rows, so edges are streamed straight to Parquet and nodes come from a streamed unique.
"""

from __future__ import annotations

import time
from pathlib import Path

import polars as pl

from emerge_ehr.kg.schema import EDGE_SCHEMA, KGError, NODE_SCHEMA, validate_kg, write_edges, write_nodes

DEFINITION_COLUMNS = ("mondo_definition", "orphanet_definition")
DESCRIPTION_COLUMNS = ("umls_description", "orphanet_clinical_description", "mayo_symptoms")
NODE_SIDE = ("index", "id", "type", "name", "source")


def find_table(root: Path, stem: str, required: bool = True) -> Path | None:
    """The first of stem.csv, stem.csv.gz, stem.parquet in root; PrimeKG mirrors ship all three forms."""
    for suffix in (".csv", ".csv.gz", ".parquet"):
        if (root / f"{stem}{suffix}").exists():
            return root / f"{stem}{suffix}"
    if required:
        raise KGError(f"{root / (stem + '.csv')}: file not found (expected {stem}.csv, .csv.gz or .parquet)")
    return None


def scan_table(path: Path, required: tuple[str, ...]) -> pl.LazyFrame:
    """Scan a table as strings (PrimeKG ids such as '1649' must stay text) after checking its columns."""
    if path.suffix == ".parquet":
        frame = pl.scan_parquet(path)
    elif path.name.endswith(".gz"):  # polars decompresses gzip CSV only eagerly
        frame = pl.read_csv(path, infer_schema=False).lazy()
    else:
        frame = pl.scan_csv(path, infer_schema=False)
    columns = frame.collect_schema().names()
    missing = [name for name in required if name not in columns]
    if missing:
        raise KGError(f"{path}: missing column(s) {missing}")
    return frame


def _first_text(frame: pl.LazyFrame, columns: tuple[str, ...]) -> pl.Expr:
    """The first non-empty of the given text columns that the file has; PrimeKG leaves most of them empty."""
    present = [name for name in columns if name in frame.collect_schema().names()]
    cleaned = [pl.col(name).cast(pl.String).str.strip_chars().replace("", None) for name in present]
    return pl.coalesce(cleaned) if cleaned else pl.lit(None, pl.String)


def node_texts(root: Path) -> pl.DataFrame:
    """Definitions and descriptions by node_index, from disease_features and (if present) drug_features."""
    parts = []
    disease = scan_table(find_table(root, "disease_features"), ("node_index",))
    parts.append(disease.select(pl.col("node_index").cast(pl.Int64).alias("index"),
                                definition=_first_text(disease, DEFINITION_COLUMNS),
                                description=_first_text(disease, DESCRIPTION_COLUMNS)))
    drug_path = find_table(root, "drug_features", required=False)
    if drug_path is not None:
        drug = scan_table(drug_path, ("node_index",))
        parts.append(drug.select(pl.col("node_index").cast(pl.Int64).alias("index"),
                                 definition=pl.lit(None, pl.String),
                                 description=_first_text(drug, ("description", "indication"))))
    texts = pl.concat(parts).collect()
    # A node may appear on several feature rows; keep its first non-empty text of each kind.
    return texts.group_by("index", maintain_order=True).agg(
        pl.col("definition").drop_nulls().first(), pl.col("description").drop_nulls().first()
    )


def primekg_nodes(edges: pl.LazyFrame, texts: pl.DataFrame, kg_path: Path) -> pl.DataFrame:
    """Unique nodes over both edge ends, with feature texts; one index with two identities is an error."""
    sides = [edges.select(pl.col(f"{side}_{name}").alias(name) for name in NODE_SIDE) for side in ("x", "y")]
    nodes = pl.concat(sides).unique().collect(engine="streaming").sort("index")
    if nodes["index"].is_duplicated().any():
        bad = nodes.filter(pl.col("index").is_duplicated())["index"].head(3).to_list()
        raise KGError(f"{kg_path}: column 'x_index'/'y_index' maps one index to different nodes, e.g. {bad}")
    return nodes.join(texts, on="index", how="left").with_columns(
        synonyms=pl.lit([], pl.List(pl.String))
    ).select(list(NODE_SCHEMA))


def build_primekg(root: str | Path, out_dir: str | Path) -> dict:
    """Convert a PrimeKG download folder into nodes.parquet and edges.parquet; returns counts and seconds."""
    started = time.perf_counter()
    root, out_dir = Path(root), Path(out_dir)
    kg_path = find_table(root, "kg")
    edges = scan_table(kg_path, tuple(EDGE_SCHEMA)).select(pl.col(c).cast(t) for c, t in EDGE_SCHEMA.items())
    nodes = primekg_nodes(edges, node_texts(root), kg_path)
    validate_kg(nodes, edges)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_nodes(nodes, out_dir)
    write_edges(edges, out_dir)
    counts = pl.scan_parquet(out_dir / "edges.parquet").group_by("relation").len().sort("relation").collect()
    return {
        "nodes": nodes.height,
        "edges": int(counts["len"].sum()),
        "nodes_by_type": dict(nodes.group_by("type").len().sort("type").iter_rows()),
        "edges_by_relation": dict(counts.iter_rows()),
        "with_definition": int(nodes["definition"].is_not_null().sum()),
        "seconds": round(time.perf_counter() - started, 2),
    }
