//! An Ollama model folder: the GGUF (or base + adapter) and a `Modelfile`.
