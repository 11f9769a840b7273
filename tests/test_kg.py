"""Knowledge-graph builders: the offline built-in KG, PrimeKG conversion, download, and the shared contract."""

from __future__ import annotations

import csv
import functools
import http.server
import threading

import polars as pl
import pytest
from kg_fixture import DISEASE_TEXTS, KG_COLUMNS, NODES, RELATIONS, write_primekg_fixture

from emerge_ehr.kg.builtin import build_builtin_kg, icd_synonyms
from emerge_ehr.kg.download import download_primekg
from emerge_ehr.kg.primekg import build_primekg
from emerge_ehr.kg.schema import EDGE_SCHEMA, NODE_SCHEMA, KGError, load_kg, validate_kg

from conftest import DEFAULTS


def _node(nodes: pl.DataFrame, node_id: str) -> dict:
    rows = nodes.filter(pl.col("id") == node_id).to_dicts()
    assert len(rows) == 1, node_id
    return rows[0]


def _assert_both_directions(edges: pl.DataFrame) -> None:
    reverse = edges.select("relation", x_index="y_index", y_index="x_index")
    assert reverse.join(edges, on=["relation", "x_index", "y_index"], how="anti").height == 0


@pytest.fixture(scope="module")
def builtin_kg(tmp_path_factory) -> tuple[pl.DataFrame, pl.DataFrame, dict]:
    """The full default build (~10 s), shared by the content tests."""
    out = tmp_path_factory.mktemp("builtin")
    stats = build_builtin_kg(out)
    nodes, edges = load_kg(out)
    return nodes, edges.collect(), stats


def test_builtin_schema_and_size(builtin_kg):
    nodes, edges, stats = builtin_kg
    assert dict(nodes.schema) == NODE_SCHEMA and dict(edges.schema) == EDGE_SCHEMA
    assert nodes["index"].to_list() == list(range(nodes.height))
    assert nodes["id"].n_unique() == nodes.height
    by_type = stats["nodes_by_type"]
    assert by_type["effect/phenotype"] > 15_000 and by_type["gene/protein"] > 3_000 and by_type["disease"] > 45_000
    assert stats["nodes"] == nodes.height and stats["edges"] == edges.height
    assert set(stats["edges_by_relation"]) == {
        "phenotype_phenotype", "disease_phenotype_positive", "disease_phenotype_negative",
        "phenotype_protein", "disease_protein", "disease_disease",
    }
    _assert_both_directions(edges)
    assert edges.select("relation", "x_index", "y_index").is_duplicated().sum() == 0


def test_builtin_hpo_terms(builtin_kg):
    nodes, edges, _ = builtin_kg
    tachycardia = _node(nodes, "HP:0001649")
    assert tachycardia["name"] == "Tachycardia" and tachycardia["type"] == "effect/phenotype"
    assert tachycardia["source"] == "HPO"
    assert tachycardia["definition"] and "[" not in tachycardia["definition"] and '"' not in tachycardia["definition"]
    assert tachycardia["synonyms"] and "Tachycardia" not in tachycardia["synonyms"]
    parents = edges.filter(pl.col("x_id") == "HP:0001649", pl.col("relation") == "phenotype_phenotype")
    assert "HP:0011675" in parents["y_id"].to_list()  # Arrhythmia
    assert parents["display_relation"].unique().to_list() == ["parent-child"]


def test_builtin_diseases_and_genes(builtin_kg):
    nodes, edges, _ = builtin_kg
    disease = _node(nodes, "OMIM:619340")
    assert disease["source"] == "OMIM" and disease["type"] == "disease" and disease["definition"] is None
    assert disease["description"].startswith("Annotated in HPO with ")
    assert {"OMIM", "ORPHA", "DECIPHER", "NCBI", "HPO", "ICD10CM", "CCSR"} <= set(nodes["source"])
    present = edges.filter(pl.col("x_id") == "OMIM:619340", pl.col("relation") == "disease_phenotype_positive")
    assert present.height > 0 and set(present["display_relation"]) == {"phenotype present"}
    assert set(present["y_type"]) == {"effect/phenotype"}
    absent = edges.filter(pl.col("relation") == "disease_phenotype_negative")
    assert set(absent["display_relation"]) == {"phenotype absent"}
    nat2 = _node(nodes, "10")
    assert nat2["name"] == "NAT2" and nat2["type"] == "gene/protein" and nat2["source"] == "NCBI"
    gene_edges = edges.filter(pl.col("x_id") == "10")
    assert {"phenotype_protein", "disease_protein"} <= set(gene_edges["relation"])


def test_builtin_icd10cm(builtin_kg):
    nodes, edges, _ = builtin_kg
    code = _node(nodes, "I50.9")
    assert code["name"] == "Heart failure, unspecified" and code["source"] == "ICD10CM"
    assert "Heart failure" in code["synonyms"]
    assert "Diseases of the circulatory system" in code["description"] and "CIR019" in code["description"]
    linked = set(edges.filter(pl.col("x_id") == "I50.9")["y_id"])
    assert {"I50", "CIR019"} <= linked
    assert _node(nodes, "I50")["name"] == "Heart failure"
    assert _node(nodes, "CIR019")["source"] == "CCSR"
    assert set(edges.filter(pl.col("x_id") == "I50.9")["relation"]) == {"disease_disease"}
    # The release lists billable codes only, so I50.21's parent is the derived category I50.
    assert set(edges.filter(pl.col("x_id") == "I50.21")["y_id"]) == {"I50", "CIR019"}
    assert nodes.filter(pl.col("source") == "ICD10CM").height > 38_000


def test_builtin_icd10cm_merges_encounter_codes(builtin_kg):
    """The 16 billing variants of a femur fracture are one condition, linked like any code."""
    nodes, edges, _ = builtin_kg
    fracture = _node(nodes, "S72.001")
    assert fracture["name"] == "Fracture of unspecified part of neck of right femur"
    assert "billed as 16 encounter codes S72.001A to S72.001S" in fracture["description"]
    assert nodes.filter(pl.col("id").is_in(["S72.001A", "S72.001S"])).height == 0
    assert not nodes.filter(pl.col("name").str.contains("(initial|subsequent) encounter|, sequela$")).height
    assert set(edges.filter(pl.col("x_id") == "S72.001")["y_id"]) == {"S72", "INJ043"}
    wound = _node(nodes, "S01.00")  # placeholder X dropped: S01.00XA -> S01.00
    assert wound["synonyms"] == ["Open wound of scalp"]


def test_icd_synonyms():
    assert icd_synonyms("Heart failure, unspecified") == ["Heart failure"]
    assert icd_synonyms("Sepsis, unspecified organism") == ["Sepsis"]
    assert icd_synonyms("Cardiac arrest, cause unspecified") == ["Cardiac arrest"]
    assert icd_synonyms("Pleural effusion, not elsewhere classified") == ["Pleural effusion"]
    assert icd_synonyms("Unspecified atrial fibrillation") == ["Atrial fibrillation"]
    assert icd_synonyms("Acute kidney failure with tubular necrosis") == []


def test_builtin_is_deterministic_and_capped(tmp_path):
    first = build_builtin_kg(tmp_path / "a", include=("hpo", "icd10cm"), max_icd_codes=200)
    second = build_builtin_kg(tmp_path / "b", include=["hpo", "icd10cm"], max_icd_codes=200)
    assert first["nodes"] == second["nodes"]
    for file in ("nodes.parquet", "edges.parquet"):
        assert pl.read_parquet(tmp_path / "a" / file).equals(pl.read_parquet(tmp_path / "b" / file))
    nodes, _ = load_kg(tmp_path / "a")
    codes = nodes.filter(pl.col("source") == "ICD10CM", pl.col("id").str.contains(r"\."))
    assert 150 < codes.height <= 200
    assert not list((tmp_path / "a").glob(".*tmp"))


def test_builtin_rejects_unknown_source(tmp_path):
    with pytest.raises(KGError, match="include"):
        build_builtin_kg(tmp_path, include=("hpo", "snomed"))


def test_primekg_fixture(tmp_path):
    stats = build_primekg(write_primekg_fixture(tmp_path / "primekg"), tmp_path / "kg")
    nodes, edges = load_kg(tmp_path / "kg")
    edges = edges.collect()
    assert nodes["index"].to_list() == sorted(NODES)
    assert edges.height == 2 * len(RELATIONS) == stats["edges"]
    assert edges.columns == KG_COLUMNS
    _assert_both_directions(edges)
    heart_failure = _node(nodes, "5252")
    assert heart_failure["index"] == 27165 and heart_failure["source"] == "MONDO"
    assert heart_failure["definition"] == DISEASE_TEXTS[27165][0]
    assert heart_failure["description"] == DISEASE_TEXTS[27165][1]
    stroke = _node(nodes, "5098")  # no MONDO definition: falls back to Orphanet's
    assert stroke["definition"] == DISEASE_TEXTS[27173][2]
    fibrillation = _node(nodes, "4981")  # description only from Mayo symptoms, which span lines
    assert fibrillation["definition"] is None and "\n" in fibrillation["description"]
    assert _node(nodes, "DB00695")["description"].startswith("Furosemide")
    assert _node(nodes, "1649")["source"] == "HPO" and _node(nodes, "1649")["synonyms"] == []
    assert stats["nodes_by_type"] == {"disease": 11, "drug": 5, "effect/phenotype": 9, "gene/protein": 5}


def test_primekg_parquet_variant(tmp_path):
    """kg.parquet in place of kg.csv: the same graph, every node and edge."""
    root = write_primekg_fixture(tmp_path / "primekg")
    build_primekg(root, tmp_path / "from_csv")
    pl.read_csv(root / "kg.csv", infer_schema=False).write_parquet(root / "kg.parquet")
    (root / "kg.csv").unlink()
    assert build_primekg(root, tmp_path / "from_parquet")["nodes"] == len(NODES)
    for name in ("nodes.parquet", "edges.parquet"):
        assert pl.read_parquet(tmp_path / "from_parquet" / name).equals(pl.read_parquet(tmp_path / "from_csv" / name))


def test_primekg_missing_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(KGError, match="kg.csv"):
        build_primekg(tmp_path / "empty", tmp_path / "kg")


def test_primekg_missing_column(tmp_path):
    root = write_primekg_fixture(tmp_path / "primekg")
    pl.read_csv(root / "kg.csv", infer_schema=False).drop("y_source").write_csv(root / "kg.csv")
    with pytest.raises(KGError, match=r"kg\.csv.*y_source"):
        build_primekg(root, tmp_path / "kg")
    root = write_primekg_fixture(tmp_path / "primekg2")
    pl.read_csv(root / "disease_features.csv", infer_schema=False).drop("node_index").write_csv(
        root / "disease_features.csv")
    with pytest.raises(KGError, match=r"disease_features\.csv.*node_index"):
        build_primekg(root, tmp_path / "kg2")


def test_validate_kg_rejects_broken_graphs(tmp_path):
    build_primekg(write_primekg_fixture(tmp_path / "primekg"), tmp_path / "kg")
    nodes, edges = load_kg(tmp_path / "kg")
    with pytest.raises(KGError, match="nodes.parquet.*index"):
        validate_kg(pl.concat([nodes, nodes.head(1)]).sort("index"), edges)
    with pytest.raises(KGError, match="edges.parquet.*x_index"):
        validate_kg(nodes.filter(pl.col("id") != "5252"), edges.collect())
    with pytest.raises(KGError, match="nodes.parquet.*synonyms"):
        validate_kg(nodes.drop("synonyms"), edges)
    with pytest.raises(KGError, match="edges.parquet.*x_index"):
        validate_kg(nodes, edges.with_columns(pl.col("x_index").cast(pl.Int32)))
    (tmp_path / "kg" / "edges.parquet").unlink()
    with pytest.raises(KGError, match="edges.parquet"):
        load_kg(tmp_path / "kg")


@pytest.fixture
def http_root(tmp_path):
    """Serve tmp_path/'served' on a loopback port, the only network the tests use."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_matches_local_build(tmp_path, http_root):
    served, base = http_root
    write_primekg_fixture(served)
    download_primekg(f"{base}/kg.csv", f"{base}/disease_features.csv", tmp_path / "raw", timeout=10)
    assert (tmp_path / "raw" / "kg.csv").read_bytes() == (served / "kg.csv").read_bytes()
    build_primekg(tmp_path / "raw", tmp_path / "from_download")
    (served / "drug_features.csv").unlink()
    build_primekg(served, tmp_path / "local")
    for file in ("nodes.parquet", "edges.parquet"):
        assert pl.read_parquet(tmp_path / "from_download" / file).equals(pl.read_parquet(tmp_path / "local" / file))


def test_download_rejects_wrong_header(tmp_path, http_root):
    served, base = http_root
    write_primekg_fixture(served)
    with open(served / "bad.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["relation", "x_index", "y_index"], ["indication", 1, 2]])
    with pytest.raises(KGError, match=r"kg\.csv.*x_id"):
        download_primekg(f"{base}/bad.csv", f"{base}/disease_features.csv", tmp_path / "raw", timeout=10)
    assert list((tmp_path / "raw").iterdir()) == []
    with pytest.raises(KGError, match=r"disease_features\.csv.*node_index"):
        download_primekg(f"{base}/kg.csv", f"{base}/kg.csv", tmp_path / "raw", timeout=10)


def test_ranked_triples_put_the_stays_own_nodes_then_clinical_specific_relations_first(tmp_path):
    """Sepsis (rank 1) and fever (rank 2) in one stay, heart failure alone in another, on the PrimeKG fixture."""
    from emerge_ehr.kg.retrieve import RetrieveSettings, rank_triples, sample_triples, stay_triples

    build_primekg(write_primekg_fixture(tmp_path / "primekg"), tmp_path / "kg")
    _, edges = load_kg(tmp_path / "kg")
    sepsis, fever, heart_failure = 27168, 84003, 27165
    ranked = pl.DataFrame({"stay_id": [1, 1, 2], "node_index": [sepsis, fever, heart_failure], "rank": [1, 2, 1]})
    triples = rank_triples(edges, ranked, 3)
    per_node = {node: group.sort("position").get_column("triple").to_list()
                for (_, node), group in triples.group_by("stay_id", "node_index")}
    assert per_node[sepsis] == [
        "(sepsis, phenotype present, Fever)",  # the stay's own fever, written once, under the better-ranked sepsis
        "(sepsis, indication, Ceftriaxone)",  # 2 indications < 4 phenotypes; ceftriaxone has 2 edges
        "(sepsis, indication, Norepinephrine)",  # ... norepinephrine 1
    ]  # the gene TNF comes last of all
    assert per_node[fever] == ["(Fever, phenotype present, pneumonia)"]  # not the link back to sepsis
    assert per_node[heart_failure] == [
        "(heart failure, parent-child, cardiovascular disorder)",  # one of its kind, a tail with 4 edges
        "(heart failure, indication, Furosemide)",  # one of its kind, 2 edges
        "(heart failure, phenotype present, Edema)",  # one of 3; edema and tachycardia have 3 edges: by name
    ]
    assert triples.equals(rank_triples(edges, ranked, 3))
    # `random` keeps the paper's seeded sample per node, the same for every stay that matches the node.
    sampled = stay_triples(edges, ranked, RetrieveSettings.from_config(DEFAULTS, max_triples=3, triples="random", seed=0))
    expected = sample_triples(edges, [heart_failure], 3, seed=0).get_column("triple").to_list()
    assert sampled.filter(pl.col("stay_id") == 2).sort("position").get_column("triple").to_list() == expected
    with pytest.raises(ValueError, match="retrieve.triples"):
        RetrieveSettings.from_config(DEFAULTS, triples="best")
