"""A small PrimeKG-format folder (kg.csv, disease_features.csv, drug_features.csv) for tests.

Ids and sources mimic real PrimeKG: MONDO ids without prefix ('5252'), HPO ids as bare integers ('1649'),
NCBI gene ids, DrugBank ids; every relation is written in both directions, as PrimeKG does.
"""

from __future__ import annotations

import csv
from pathlib import Path

KG_COLUMNS = ["relation", "display_relation", "x_index", "x_id", "x_type", "x_name", "x_source",
              "y_index", "y_id", "y_type", "y_name", "y_source"]

# index -> (id, type, name, source)
NODES: dict[int, tuple[str, str, str, str]] = {
    27165: ("5252", "disease", "heart failure", "MONDO"),
    27166: ("5002", "disease", "chronic obstructive pulmonary disease", "MONDO"),
    27167: ("2492", "disease", "acute kidney failure", "MONDO"),
    27168: ("100435", "disease", "sepsis", "MONDO"),
    27169: ("5249", "disease", "pneumonia", "MONDO"),
    27170: ("5155", "disease", "liver cirrhosis", "MONDO"),
    27171: ("4981", "disease", "atrial fibrillation", "MONDO"),
    27172: ("5148", "disease", "type 2 diabetes mellitus", "MONDO"),
    27173: ("5098", "disease", "stroke disorder", "MONDO"),
    27174: ("4995", "disease", "cardiovascular disorder", "MONDO"),
    35001: ("5044_13208", "disease", "hypertensive disorder", "MONDO_grouped"),
    84001: ("1649", "effect/phenotype", "Tachycardia", "HPO"),
    84002: ("12418", "effect/phenotype", "Hypoxemia", "HPO"),
    84003: ("1945", "effect/phenotype", "Fever", "HPO"),
    84004: ("2615", "effect/phenotype", "Hypotension", "HPO"),
    84005: ("1941", "effect/phenotype", "Acidosis", "HPO"),
    84006: ("3074", "effect/phenotype", "Hyperglycemia", "HPO"),
    84007: ("2789", "effect/phenotype", "Tachypnea", "HPO"),
    84008: ("2094", "effect/phenotype", "Dyspnea", "HPO"),
    84009: ("969", "effect/phenotype", "Edema", "HPO"),
    1201: ("4879", "gene/protein", "NPPB", "NCBI"),
    1202: ("3630", "gene/protein", "INS", "NCBI"),
    1203: ("7124", "gene/protein", "TNF", "NCBI"),
    1204: ("6557", "gene/protein", "SLC12A1", "NCBI"),
    1205: ("5564", "gene/protein", "PRKAB1", "NCBI"),
    14001: ("DB00695", "drug", "Furosemide", "DrugBank"),
    14002: ("DB00331", "drug", "Metformin", "DrugBank"),
    14003: ("DB01118", "drug", "Amiodarone", "DrugBank"),
    14004: ("DB01212", "drug", "Ceftriaxone", "DrugBank"),
    14005: ("DB00368", "drug", "Norepinephrine", "DrugBank"),
}

# (relation, display_relation, x_index, y_index), one direction each.
RELATIONS: list[tuple[str, str, int, int]] = [
    *[("disease_phenotype_positive", "phenotype present", d, p) for d, p in [
        (27165, 84001), (27165, 84008), (27165, 84009), (27166, 84002), (27166, 84007), (27166, 84008),
        (27167, 84005), (27167, 84009), (27168, 84003), (27168, 84004), (27168, 84001), (27168, 84007),
        (27169, 84003), (27169, 84002), (27169, 84007), (27170, 84009), (27171, 84001), (27172, 84006),
    ]],
    *[("disease_disease", "parent-child", p, c) for p, c in [
        (27174, 27165), (27174, 27171), (27174, 27173), (27174, 35001),
    ]],
    *[("indication", "indication", d, x) for d, x in [
        (14001, 27165), (14002, 27172), (14003, 27171), (14004, 27169), (14004, 27168), (14005, 27168),
    ]],
    ("drug_protein", "target", 14001, 1204),
    ("drug_protein", "target", 14002, 1205),
    *[("disease_protein", "associated with", d, g) for d, g in [(27165, 1201), (27172, 1202), (27168, 1203)]],
    ("phenotype_protein", "associated with", 84006, 1202),
]

FEATURE_COLUMNS = ["node_index", "mondo_id", "mondo_name", "group_id_bert", "group_name_bert", "mondo_definition",
                   "umls_description", "orphanet_definition", "orphanet_prevalence", "orphanet_epidemiology",
                   "orphanet_clinical_description", "orphanet_management_and_treatment", "mayo_symptoms",
                   "mayo_causes", "mayo_risk_factors", "mayo_complications", "mayo_prevention", "mayo_see_doc"]

# node_index -> (mondo_definition, umls_description, orphanet_definition, mayo_symptoms)
DISEASE_TEXTS: dict[int, tuple[str, str, str, str]] = {
    27165: ("A heart disease in which the heart cannot pump enough blood, causing dyspnea and edema.",
            "Inability of the heart to pump blood at an adequate rate to meet tissue metabolic requirements.", "", ""),
    27166: ("A chronic, progressive lung disease with airflow limitation that is not fully reversible.",
            "A disease of chronic diffuse irreversible airflow obstruction.", "", ""),
    27167: ("Sudden loss of kidney function, with a rise in serum creatinine or a fall in urine output.",
            "", "", ""),
    27168: ("A systemic inflammatory response to infection, with organ dysfunction.",
            "Systemic inflammatory response syndrome with a proven or suspected infectious etiology.", "", ""),
    27169: ("An inflammation of the lung parenchyma, usually caused by infection.",
            "Inflammation of any part, segment or lobe of the lung parenchyma.", "", ""),
    27170: ("Late-stage liver fibrosis with nodular regeneration, usually from chronic liver disease.",
            "", "", "Symptoms include:\n- fatigue\n- easy bruising\n- swelling in the legs"),
    27171: ("", "", "", "Signs may include:\n- a fast, pounding heartbeat\n- shortness of breath"),
    27172: ("A type of diabetes mellitus characterized by insulin resistance, hyperglycemia, and obesity.",
            "A subclass of diabetes mellitus that is not insulin-responsive or dependent.", "", ""),
    27173: ("", "A sudden loss of neurological function caused by vascular injury to the brain.",
            "A rare cerebrovascular event, defined by an acute focal neurological deficit.", ""),
}

DRUG_COLUMNS = ["node_index", "description", "half_life", "indication", "mechanism_of_action"]
DRUG_TEXTS = {
    14001: ("Furosemide is a loop diuretic used to treat edema and hypertension.", "2 hours", "Edema", ""),
    14002: ("Metformin is a biguanide that lowers hepatic glucose production.", "6.2 hours", "Type 2 diabetes", ""),
}


def kg_rows() -> list[list]:
    """All kg.csv rows, each relation in both directions."""
    rows = []
    for relation, display, x, y in RELATIONS:
        for a, b in ((x, y), (y, x)):
            rows.append([relation, display, a, *NODES[a], b, *NODES[b]])
    return rows


def write_primekg_fixture(folder: Path) -> Path:
    """Write kg.csv, disease_features.csv and drug_features.csv into folder (created) and return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "kg.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(KG_COLUMNS)
        writer.writerows(kg_rows())
    with open(folder / "disease_features.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, FEATURE_COLUMNS)
        writer.writeheader()
        for index, (mondo_def, umls, orpha_def, symptoms) in DISEASE_TEXTS.items():
            node_id, _, name, _ = NODES[index]
            writer.writerow({"node_index": index, "mondo_id": node_id, "mondo_name": name, "group_id_bert": "",
                             "group_name_bert": "", "mondo_definition": mondo_def, "umls_description": umls,
                             "orphanet_definition": orpha_def, "mayo_symptoms": symptoms})
    with open(folder / "drug_features.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(DRUG_COLUMNS)
        writer.writerows([index, *texts] for index, texts in DRUG_TEXTS.items())
    return folder
