"""The peer benchmark environment (setup.sh, requirements.txt) and the adapters the benchmarks use."""
