"""Note text of the synthetic stays: mentions of planted conditions among negations, family history and filler."""
from __future__ import annotations

import numpy as np

from emerge_ehr.data.synthetic.conditions import CONDITIONS, COND_INDEX, Condition, DAY, HOUR
from emerge_ehr.data.synthetic.population import Cohort



NEGATIONS = ("No evidence of {x}.", "Negative for {x}.", "r/o {x} - ruled out.", "{x} was ruled out.",
             "No signs of {x}.", "Low suspicion for {x}; not treated.")
DENIALS = ("Denies chest pain.", "Denies shortness of breath.", "Denies fever or chills.", "Negative for PE.",
           "No evidence of PE on CTA.", "Denies abdominal pain, nausea or vomiting.")
FAMILY = ("Mother had breast cancer.", "Family history of CAD.", "Father with {x}.", "Family history of {x}.",
          "Sister with {x}.", "Non-contributory.")
FILLER = ("Pt admitted from ED.", "Started on broad-spectrum abx.", "Cont. home meds.", "Tolerating PO.",
          "Foley in place, UOP adequate.", "IVF bolus given with good response.", "Pain controlled with PRN meds.",
          "PT/OT consulted.", "Lines: PIV x2.", "Electrolytes repleted as needed.", "Seen and examined with team.",
          "Family updated at bedside.", "Code status: full code.", "Ambulating with assistance.",
          "SQ heparin for DVT ppx.", "Skin intact.", "Lungs with scattered rhonchi.", "Afebrile overnight.",
          "BPs stable off pressors.", "Labs reviewed.", "Plan discussed with attending.", "NPO after midnight.")
NORMAL_FINDINGS = ("The cardiomediastinal silhouette is within normal limits.", "No pneumothorax.",
                   "No large pleural effusion.", "Osseous structures are unremarkable.",
                   "Lines and tubes are unchanged in position.", "Heart size is normal.")
SYMPTOMS = ("shortness of breath", "hypotension", "altered mental status", "fever", "chest pain", "weakness")


def _mention(r, cond: Condition, mentions: set) -> str:
    """A surface form of the patient's own condition, recorded as a ground-truth mention."""
    form = r.choice(cond.forms)
    mentions.add(form)
    return form


def _negations(r, present: np.ndarray, k: int) -> list[str]:
    """Negated mentions of absent conditions and denied symptoms."""
    absent = [c for i, c in enumerate(CONDITIONS) if not present[i]]
    out = [r.choice(NEGATIONS).format(x=r.choice(c.forms)) for c in r.sample(absent, min(k, len(absent)))]
    out += r.sample(DENIALS, r.randint(0, 2))
    return out


def _family(r) -> str:
    """A family-history sentence, which never counts as the patient's own condition."""
    return r.choice(FAMILY).format(x=r.choice(CONDITIONS).name)


def _radiology(r, age: int, sex: str, present: np.ndarray, mentions: set) -> str:
    """A chest x-ray / CT report; own conditions visible on imaging appear in findings and impression."""
    own = [c for i, c in enumerate(CONDITIONS) if present[i]]
    exam = "CT HEAD W/O CONTRAST" if present[COND_INDEX["stroke"]] and r.random() < 0.5 else r.choice(
        ("CHEST (PORTABLE AP)", "CHEST (PORTABLE AP)", "CHEST (PA AND LAT)", "CT CHEST W/CONTRAST"))
    history = [_mention(r, c, mentions) for c in own if r.random() < 0.3]
    indication = f"{age}-year-old {'man' if sex == 'M' else 'woman'} with {', '.join(history) or r.choice(SYMPTOMS)}"
    seen = [c for c in own if c.imaging and r.random() < 0.7]
    findings = [c.imaging.format(x=_mention(r, c, mentions)) for c in seen]
    findings += r.sample(NORMAL_FINDINGS, r.randint(1, 5))
    findings += [s for s in _negations(r, present, r.randint(0, 2)) if "Denies" not in s]
    r.shuffle(findings)
    impression = "; ".join(c.imaging.split(",")[0].format(x=_mention(r, c, mentions)) for c in seen[:2]) \
        or "No acute cardiopulmonary process."
    return (f"EXAMINATION:  {exam}\n\nINDICATION:  {indication} // eval for {r.choice(('pna', 'effusion', 'edema', 'interval change'))}\n\n"
            f"TECHNIQUE:  {'Portable AP' if 'PORTABLE' in exam else 'Standard'} views.\n\n"
            f"COMPARISON:  {r.choice(('None.', 'Prior study from ___.'))}\n\n"
            f"FINDINGS:\n\n{' '.join(findings)}\n\nIMPRESSION:\n\n{impression}\n")


def _discharge(r, age: int, sex: str, present: np.ndarray, died: bool, mentions: set) -> str:
    """A discharge summary: history, hospital course and discharge diagnoses of varied length."""
    own = [c for i, c in enumerate(CONDITIONS) if present[i]]
    chronic = [_mention(r, c, mentions) for c in own if c.chronic and r.random() < 0.8]
    course = []
    for c in own:
        if not c.chronic and r.random() < 0.85:
            form = _mention(r, c, mentions)
            course.append(f"# {form}: {r.choice(('treated and improved.', 'managed in the ICU.', 'resolved prior to discharge.', 'ongoing, see plan.'))}")
        course += r.sample(FILLER, r.randint(0, 4))
    course += _negations(r, present, r.randint(1, 3))
    diagnoses = [_mention(r, c, mentions) for c in own if r.random() < 0.75] or ["___"]
    disposition = "Expired" if died else r.choice(("Home", "Home With Service", "Extended Care"))
    return (f"Name:  ___                     Unit No:   ___\n\nAdmission Date:  ___              Discharge Date:   ___\n\n"
            f"Date of Birth:  ___             Sex:   {sex}\n\nService: MEDICINE\n\n"
            f"Allergies: \n{r.choice(('No Known Allergies / Adverse Drug Reactions', 'Penicillins', 'Sulfa (Sulfonamide Antibiotics)'))}\n\n"
            f"Chief Complaint:\n{r.choice(SYMPTOMS)}\n\n"
            f"History of Present Illness:\n{age} y/o {sex} with PMH {', '.join(chronic) or 'none'} who presents with "
            f"{r.choice(SYMPTOMS)}. {' '.join(_negations(r, present, 1) + r.sample(FILLER, r.randint(0, 6)))}\n\n"
            f"Past Medical History:\n" + "".join(f"- {c}\n" for c in chronic) +
            f"\nSocial History:\n___\n\nFamily History:\n{_family(r)}\n\n"
            f"Brief Hospital Course:\n{chr(10).join(course)}\n\n"
            f"Discharge Diagnoses:\n" + "".join(f"{d}\n" for d in diagnoses) +
            f"\nDischarge Disposition:\n{disposition}\n")


def _progress(r, present: np.ndarray, physician: bool, mentions: set) -> str:
    """A MIMIC-III nursing or physician progress note that mentions a few own conditions."""
    own = [c for i, c in enumerate(CONDITIONS) if present[i]]
    lines = [f"{_mention(r, c, mentions)} - {r.choice(('stable', 'improving', 'monitor', 'cont current tx'))}."
             for c in own if r.random() < 0.3]
    lines += r.sample(FILLER, r.randint(1, 8 if physician else 4)) + _negations(r, present, r.randint(0, 1))
    if physician and r.random() < 0.3:
        lines.append(f"FHx: {_family(r)}")
    r.shuffle(lines)
    head = "Assessment and Plan:" if physician else r.choice(("Neuro:", "CV:", "Resp:", "GI/GU:"))
    return head + "\n" + "\n".join(lines) + "\n"


def note_texts(rng, cohort: Cohort, layout: str) -> tuple[list[dict], list[set]]:
    """All notes (dicts) and, per admission, the surface forms of its own-condition mentions."""
    import random

    r = random.Random(int(rng.integers(2**62)))
    adm, st, pat = cohort.admissions, cohort.stays, cohort.patients
    stays_of = [[] for _ in adm["admittime"]]
    for s, a in enumerate(st["adm"]):
        stays_of[a].append(s)
    notes, mentions = [], [set() for _ in stays_of]
    for a in range(len(stays_of)):
        if r.random() < 0.15:  # admissions without any note
            continue
        p = adm["patient"][a]
        present, sex, age = adm["conds"][a], pat["gender"][p], int(adm["age"][a])
        for s in stays_of[a]:
            tin, tout = int(st["intime"][s]), int(st["outtime"][s])
            times = [tin + r.uniform(-6, 48) * HOUR] + [r.uniform(tin, tout) for _ in range(r.randint(0, 3))]
            for t in times:
                notes.append({"adm": a, "kind": "RR", "time": int(t), "store": int(t + r.uniform(0.3, 6) * HOUR),
                              "text": _radiology(r, age, sex, present, mentions[a])})
            if layout == "mimic3":
                for physician, gap in ((False, 12.0), (True, 24.0)):
                    t = tin + r.uniform(1, gap) * HOUR
                    while t < tout:
                        notes.append({"adm": a, "kind": "Physician " if physician else "Nursing", "time": int(t),
                                      "store": int(t + r.uniform(0.1, 2) * HOUR),
                                      "text": _progress(r, present, physician, mentions[a])})
                        t += r.uniform(0.6, 1.4) * gap * HOUR
        disch = int(adm["dischtime"][a])
        notes.append({"adm": a, "kind": "DS", "time": disch - disch % DAY, "store": disch + int(r.uniform(2, 48) * HOUR),
                      "text": _discharge(r, age, sex, present, bool(adm["died"][a]), mentions[a])})
    return notes, mentions


