"""Ray Serve application: gateway and model backends (vLLM, torch), OpenAI and KServe v2."""
