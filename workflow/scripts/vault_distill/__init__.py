"""vault-distill: pure, importable functions behind the Snakemake scripts."""
