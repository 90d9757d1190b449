"""Real local servers for backend tests: a llama.cpp OpenAI-compatible server, and an
Anthropic Messages API stand-in (the real endpoint is not reachable from tests)."""
