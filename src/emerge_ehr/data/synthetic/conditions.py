"""Latent conditions of the synthetic patients and the vital-sign model they drive."""
from __future__ import annotations

from dataclasses import dataclass, field

HOUR = 3600
DAY = 86400




@dataclass(frozen=True)
class Condition:
    """A planted condition: how common, what it does to the vitals, the outcomes and the notes."""

    name: str
    chronic: bool  # chronic: fixed per patient; acute: drawn per admission
    prevalence: float
    forms: tuple[str, ...]  # note surface forms (full names and abbreviations)
    shifts: dict = field(default_factory=dict)  # variable -> mean shift of its charted values
    spread: dict = field(default_factory=dict)  # variable -> multiplier of its within-stay noise
    mortality: float = 0.0  # log-odds effect on in-hospital death
    readmission: float = 0.0  # log-odds effect on readmission
    imaging: str = ""  # radiology finding ("{x}" = surface form); empty if invisible on imaging


CONDITIONS: tuple[Condition, ...] = (
    Condition("sepsis", False, 0.18, ("sepsis", "septic shock", "sepsis"),
              {"heart_rate": 14, "temperature": 0.9, "systolic_bp": -12, "diastolic_bp": -6,
               "respiratory_rate": 4, "glucose": 15}, {"temperature": 1.5},
              mortality=0.9, readmission=0.3),
    Condition("pneumonia", False, 0.17, ("pneumonia", "PNA", "pneumonia"),
              {"respiratory_rate": 4, "spo2": -2.5, "fio2": 0.12, "temperature": 0.5, "heart_rate": 5},
              mortality=0.4, readmission=0.2,
              imaging="Right lower lobe consolidation, compatible with {x}."),
    Condition("congestive heart failure", True, 0.15, ("congestive heart failure", "CHF", "heart failure"),
              {"heart_rate": 4, "spo2": -1.2, "respiratory_rate": 2, "weight": 9},
              mortality=0.4, readmission=0.8,
              imaging="Pulmonary vascular congestion and small bilateral effusions, consistent with {x}."),
    Condition("chronic obstructive pulmonary disease", True, 0.12,
              ("COPD", "chronic obstructive pulmonary disease", "COPD"),
              {"spo2": -2.5, "respiratory_rate": 3, "fio2": 0.05, "ph": -0.02},
              mortality=0.3, readmission=0.6,
              imaging="Hyperinflated lungs with flattened diaphragms, consistent with {x}."),
    Condition("acute kidney injury", False, 0.15, ("acute kidney injury", "AKI", "AKI"),
              {}, mortality=0.9, readmission=0.4),
    Condition("atrial fibrillation", True, 0.14, ("atrial fibrillation", "afib", "AF", "AFib"),
              {"heart_rate": 16}, {"heart_rate": 2.5}, mortality=0.2, readmission=0.3),
    Condition("diabetes mellitus", True, 0.22, ("diabetes mellitus", "DM", "DM2", "diabetes"),
              {"glucose": 60}, {"glucose": 1.8}, mortality=0.1, readmission=0.4),
    Condition("diabetic ketoacidosis", False, 0.0, ("diabetic ketoacidosis", "DKA"),
              {"glucose": 230, "ph": -0.14, "respiratory_rate": 6, "heart_rate": 10}, {"glucose": 2.0},
              mortality=0.2, readmission=0.6),
    Condition("stroke", False, 0.08, ("stroke", "CVA", "cerebrovascular accident"),
              {"systolic_bp": 18, "diastolic_bp": 6, "gcs": -4.5}, mortality=1.0, readmission=0.2,
              imaging="Hypodensity in the left MCA territory consistent with acute {x}."),
    Condition("cirrhosis", True, 0.08, ("cirrhosis", "ESLD", "liver cirrhosis"),
              {}, mortality=1.3, readmission=0.9),
    Condition("metastatic cancer", True, 0.08, ("metastatic cancer", "metastatic disease", "stage IV cancer"),
              {}, mortality=1.8, readmission=0.8,
              imaging="Multiple pulmonary nodules, concerning for {x}."),
    Condition("acute respiratory failure", False, 0.14,
              ("acute respiratory failure", "ARF", "hypoxemic respiratory failure"),
              {"spo2": -3.5, "fio2": 0.25, "respiratory_rate": 5, "ph": -0.05, "gcs": -1.5},
              mortality=0.8, readmission=0.2,
              imaging="Diffuse bilateral airspace opacities in the setting of {x}; ETT in good position."),
)
COND_INDEX = {c.name: i for i, c in enumerate(CONDITIONS)}
# Conditions that leave no trace in the charted variables: only the notes reveal them.
NOTE_ONLY = tuple(c.name for c in CONDITIONS if not c.shifts)
DKA_GIVEN_DM = 0.12  # diabetic ketoacidosis only occurs in diabetics

# --------------------------------------------------------------------------------------------------
# Vital-sign model: normal, between-stay sd, within-stay sd, severity effect, decimals, clip range
# --------------------------------------------------------------------------------------------------
VITALS = {
    "heart_rate": (86.0, 9.0, 7.0, 4.5, 0, (25, 220)),
    "systolic_bp": (121.0, 13.0, 10.0, -5.5, 0, (50, 230)),
    "diastolic_bp": (61.0, 8.0, 7.0, -3.0, 0, (20, 130)),
    "respiratory_rate": (18.5, 3.0, 3.5, 1.5, 0, (4, 50)),
    "spo2": (97.4, 1.1, 1.4, -0.7, 0, (70, 100)),
    "temperature": (36.9, 0.3, 0.4, 0.15, 1, (33.0, 41.5)),
    "glucose": (132.0, 18.0, 30.0, 10.0, 0, (40, 900)),
    "ph": (7.39, 0.03, 0.04, -0.03, 2, (6.8, 7.7)),
    "fio2": (0.40, 0.08, 0.08, 0.07, 2, (0.21, 1.0)),
    "weight": (81.0, 19.0, 0.7, 0.0, 1, (35, 240)),
    "height": (170.0, 9.0, 0.6, 0.0, 0, (140, 205)),
}

