from conftest import ROOT
from tal_core.config import Config
from tal_core.config_doc import BEGIN, END, reference


def test_reference_covers_every_key_and_readme_is_current():
    table = reference()
    for key in Config().flat():
        assert f"`{key}`" in table, key
    readme = (ROOT / "README.md").read_text()
    assert table in readme[readme.index(BEGIN):readme.index(END)], "run: python -m tal_core.config_doc --write README.md"
