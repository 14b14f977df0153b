"""AWQ quants with llm-compressor: the shape preflight, the build and its checks, the file
checks."""
