module vaultdistill/ollama_render

go 1.19
