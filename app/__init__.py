"""The Gradio web chat, installed as `culture_rag.webapp` (see pyproject's package-dir)."""
