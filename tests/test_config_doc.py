import yaml

from helpers import ROOT
from tal_core.config import Config
from tal_core.config_doc import BEGIN, END, base_yaml, entries, reference


def test_every_key_has_a_description():
    assert {f"{s}.{k}" for s, k, _, _ in entries()} == set(Config().flat())
    assert all(meaning for _, _, _, meaning in entries())


def test_base_yaml_and_readme_are_generated_from_the_fields():
    assert (ROOT / "configs" / "base.yaml").read_text() == base_yaml(), \
        "run: python -m tal_core.config_doc --write-base configs/base.yaml"
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert reference() in doc[doc.index(BEGIN):doc.index(END)], \
        "run: python -m tal_core.config_doc --write docs/configuration.md"


def test_base_yaml_holds_the_defaults():
    assert Config.model_validate(yaml.safe_load(base_yaml())) == Config()
