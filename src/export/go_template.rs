//! A model's Jinja chat template translated to Ollama's Go-template syntax.
