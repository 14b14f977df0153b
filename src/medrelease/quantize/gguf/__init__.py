"""GGUF quants with llama.cpp: types, conversion and quantization, split files, the importance
matrix, llama.cpp's tools, the child process every llama.cpp call runs in, and the file checks."""
